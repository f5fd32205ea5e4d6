"""``/docs`` and ``/openapi.json``: every operation documented with its JSON error answers."""

from __future__ import annotations

import httpx

from harness import RunningHub


async def test_docs_and_every_error_response_documented(
    hub: RunningHub, client: httpx.AsyncClient
) -> None:
    docs = await client.get(f"{hub.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await client.get(f"{hub.url}/openapi.json")).json()
    assert spec["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    operations = [
        (method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()
    ]
    assert len(operations) >= 8
    for method, path, op in operations:
        responses = op["responses"]
        assert "422" not in responses, (method, path)  # validation errors answer 400
        errors = {s: r for s, r in responses.items() if s[0] in "45"}
        if path.startswith("/api/"):
            assert "401" in errors, (method, path, sorted(responses))
        if op.get("parameters") or op.get("requestBody"):
            assert "400" in errors, (method, path, sorted(responses))
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
    health = spec["paths"]["/readyz"]["get"]["responses"]
    assert "503" in health


async def test_validation_errors_are_400_json(hub: RunningHub, client: httpx.AsyncClient) -> None:
    response = await client.post(f"{hub.url}/api/v1/publish/x", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"

"""A publish body in another hub's shape or sent as a form is refused with a hint, never stored."""

from __future__ import annotations

import httpx
import pytest

from harness import RunningHub


async def test_type_and_payload_fields_are_refused_with_a_hint(
    client: httpx.AsyncClient, hub: RunningHub
) -> None:
    body = {"type": "order_created", "payload": {"id": 7}}
    answer = await client.post(f"{hub.url}/api/v1/publish/shop", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "bad_request"
    assert "payload" in error["message"] and "type" in error["message"]
    assert '"event"' in error["message"] and '"data"' in error["message"]
    kept = await client.get(f"{hub.url}/api/v1/channels/shop/events")
    assert kept.json()["events"] == []


async def test_batch_items_refuse_unknown_fields_too(
    client: httpx.AsyncClient, hub: RunningHub
) -> None:
    items = [{"channel": "shop", "event": "a", "data": 1}, {"channel": "shop", "payload": 2}]
    answer = await client.post(f"{hub.url}/api/v1/publish", json=items)
    assert answer.status_code == 400 and "payload" in answer.json()["error"]["message"]
    good = await client.post(f"{hub.url}/api/v1/publish", json=items[:1])
    assert good.status_code == 200


@pytest.mark.parametrize(
    ("content_type", "hinted"),
    [
        ("application/x-www-form-urlencoded", True),  # what `curl -d` sends
        ("text/plain", True),
        ("application/json", False),
        ("application/merge-patch+json", False),
    ],
)
async def test_a_body_not_sent_as_json_is_refused_with_a_hint(
    client: httpx.AsyncClient, hub: RunningHub, content_type: str, hinted: bool
) -> None:
    headers = {"content-type": content_type}
    for path, body in (("publish/shop", b"[1]"), ("publish", b'{"data":1}')):
        answer = await client.post(f"{hub.url}/api/v1/{path}", content=body, headers=headers)
        assert answer.status_code == 400
        message = answer.json()["error"]["message"]
        assert ("Content-Type: application/json" in message) is hinted, message

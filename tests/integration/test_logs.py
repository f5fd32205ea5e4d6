"""Structured logs: JSON lines with the request id; tokens and payloads never logged."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx

from harness import open_stream, publish, start_hub_process

SECRET_TOKEN = "tok-SECRET-4f1d9"
PAYLOAD = "payload-MARKER-77c2"


def test_json_logs_carry_request_ids_and_no_secrets(tmp_path) -> None:
    env = {
        "SSEHUB_LOG_FORMAT": "json",
        "SSEHUB_JWT_SECRET": "x" * 32,
        "SSEHUB_ANONYMOUS_SUBSCRIBE": '["*"]',
        "SSEHUB_ANONYMOUS_PUBLISH": '["*"]',
    }
    hub = start_hub_process(tmp_path, env)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
            refused = await client.get(
                f"{hub.url}/api/v1/sse/stream/logs?access_token={SECRET_TOKEN}",
                headers={"X-Request-ID": "req-given-1"},
            )
            assert refused.status_code == 401
            assert refused.headers["x-request-id"] == "req-given-1"
            generated = await client.get(f"{hub.url}/healthz")
            assert len(generated.headers["x-request-id"]) == 32
            unsafe = await client.get(f"{hub.url}/healthz", headers={"X-Request-ID": "a b\tc"})
            assert unsafe.headers["x-request-id"] != "a b\tc"
            stream_url = f"{hub.url}/api/v1/sse/stream/logs"
            headers = {"X-Request-ID": "stream-3"}
            async with open_stream(client, stream_url, headers=headers) as reader:
                assert reader.response.headers["x-request-id"] == "stream-3"  # the direct path too
                await publish(client, hub.url, "logs", PAYLOAD, headers={"X-Request-ID": "pub-2"})
                await reader.wait_count(1)

    try:
        asyncio.run(scenario())
    finally:
        assert hub.terminate() == 0
    lines = [line for line in hub.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    access = [r for r in records if r["logger"] == "ssehub.access"]
    refused = next(r for r in access if r.get("request_id") == "req-given-1")
    assert refused["status"] == 401 and refused["path"] == "/api/v1/sse/stream/logs"
    assert any(r.get("request_id") == "pub-2" and r["method"] == "POST" for r in access)
    text = hub.log()
    assert SECRET_TOKEN not in text
    assert PAYLOAD not in text


TEXT_ACCESS = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ssehub\.access \[(?P<rid>[^\]]+)\] "
    r"(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3})$"
)


def test_text_access_lines_are_written_while_serving_and_all_by_exit(tmp_path) -> None:
    hub = start_hub_process(tmp_path, {"SSEHUB_OPEN_ACCESS": "true"})
    try:
        with httpx.Client(base_url=hub.url, timeout=10) as client:
            answer = client.get("/healthz", headers={"X-Request-ID": "text-1"})
            assert answer.status_code == 200
            # Written at the end of the loop turn, not held until exit.
            deadline = time.monotonic() + 10
            while "[text-1]" not in hub.log():
                assert time.monotonic() < deadline, hub.log()
                time.sleep(0.02)
            for n in range(50):
                client.post(
                    "/api/v1/publish/logs", json={"data": n}, headers={"X-Request-ID": f"p{n}"}
                )
    finally:
        assert hub.terminate() == 0
    access = [m for m in map(TEXT_ACCESS.match, hub.log().splitlines()) if m]
    first = next(m for m in access if m.group("rid") == "text-1")
    assert first.group("method", "path", "status") == ("GET", "/healthz", "200")
    published = [m.group("rid") for m in access if m.group("path") == "/api/v1/publish/logs"]
    assert published == [f"p{n}" for n in range(50)]

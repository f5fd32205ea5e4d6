"""Nothing a client sends stalls the hub: hostile patterns, large bodies, slow or silent sockets.

Each attack runs against a real server on loopback; /healthz (or a live stream) must keep
answering within a bounded wait while it lasts.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from harness import RunningHub, open_stream, publish, raw_exchange, running_hub, wait_until
from redis_support import delete_prefix, shared_redis_url, unique_prefix
from ssehub.hub import Hub
from ssehub.routes import publish as publish_routes
from ssehub.settings import Settings

HOSTILE = "user:u1:" + "*a" * 7 + "*b"  # 8 wildcards: within the default cap
NEAR_MISSES = ["user:u1:" + "a" * 51 + c for c in "cde"]  # 60 characters, no final `b`


def hub_settings(**options: object) -> Settings:
    return Settings(_env_file=None, **options)  # type: ignore[arg-type]


def quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


@pytest.mark.parametrize("backplane", ["memory", "redis"])
async def test_hostile_pattern_stalls_nobody(client: httpx.AsyncClient, backplane: str) -> None:
    options = {}
    if backplane == "redis":  # Redis matches the pattern too (PSUBSCRIBE), and so does the hub
        options = {"broker_url": shared_redis_url(), "redis_prefix": unique_prefix()}
    async with running_hub(hub_settings(**options)) as hub:
        hostile = f"{hub.url}/api/v1/sse/stream/{quoted(HOSTILE)}"
        watcher = f"{hub.url}/api/v1/sse/stream/{quoted('user:u1:*')}"
        async with open_stream(client, hostile) as trap, open_stream(client, watcher) as live:

            async def publish_all() -> None:
                for n, channel in enumerate(NEAR_MISSES):
                    await publish(client, hub.url, channel, n)

            publishing = asyncio.create_task(publish_all())
            # With a backtracking matcher each event held the loop for seconds.
            health = await client.get(f"{hub.url}/healthz", timeout=5)
            assert health.status_code == 200
            await asyncio.wait_for(publishing, 10)
            await live.wait_count(len(NEAR_MISSES), timeout=10)
            assert trap.data == []
    if options:
        delete_prefix(options["broker_url"], options["redis_prefix"])


async def test_patterns_with_too_many_wildcards_are_refused(client: httpx.AsyncClient) -> None:
    async with running_hub(hub_settings(max_pattern_wildcards=3)) as hub:
        pattern = quoted("a:*:*:*:*")
        for response in (
            await client.get(f"{hub.url}/api/v1/sse/stream/{pattern}"),
            await client.get(f"{hub.url}/api/v1/sse/stream?channel={pattern}"),
            await client.post(f"{hub.url}/api/v1/sse/tickets", json={"channels": ["a:*:*:*:*"]}),
        ):
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "invalid_channel" and "at most 3" in error["message"]
        async with open_stream(client, f"{hub.url}/api/v1/sse/stream/{quoted('a:*:*:*')}"):
            pass  # three are allowed


async def test_resume_beyond_the_channel_budget_gets_a_reset(client: httpx.AsyncClient) -> None:
    async with running_hub(hub_settings(max_resume_channels=100)) as hub:
        first = await publish(client, hub.url, "q:0", 0)
        items = [{"channel": f"r:{i}", "data": i} for i in range(300)]
        assert (await client.post(f"{hub.url}/api/v1/publish", json=items)).status_code == 200
        await publish(client, hub.url, "q:1", 1)
        resume = {"Last-Event-ID": first["id"]}
        base = f"{hub.url}/api/v1/sse/stream"
        async with open_stream(client, f"{base}/{quoted('q:*')}", headers=resume) as few:
            await few.wait_count(1)
            assert few.data == ["1"] and not few.of_type("reset")
        async with open_stream(client, f"{base}/{quoted('r:*')}", headers=resume) as many:
            await many.wait_for(lambda r: r.of_type("reset"))
            assert [e.event for e in many.events] == ["connected", "reset"]


def status_and_error(data: bytes) -> tuple[int, str]:
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(body)["error"]["code"]


async def test_publish_bodies_are_refused_by_size_before_parsing(
    client: httpx.AsyncClient,
) -> None:
    settings = hub_settings(max_publish_bytes=4096, max_batch_bytes=16384, max_batch_events=10)
    async with running_hub(settings) as hub:
        # Not even JSON: a body parsed first would get 400; refused by its size, 413.
        for path, size in (("/api/v1/publish/x", 5000), ("/api/v1/publish", 20000)):
            declared = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {size}\r\n\r\n"
            ).encode()
            answer = await raw_exchange(hub.url, declared + b"[" * size)
            assert status_and_error(answer) == (413, "payload_too_large")
        junk = b"[" * 5000
        chunked = (
            b"POST /api/v1/publish/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(junk), junk)
        )
        assert status_and_error(await raw_exchange(hub.url, chunked)) == (413, "payload_too_large")
        # The batch has its own, larger bound on bytes and one on events.
        batch = [{"channel": "x", "data": "a" * 1000}] * 5
        assert (await client.post(f"{hub.url}/api/v1/publish", json=batch)).status_code == 200
        for too_big in ([{"channel": "x", "data": "a" * 1000}] * 20, [{"channel": "x"}] * 11):
            refused = await client.post(f"{hub.url}/api/v1/publish", json=too_big)
            assert refused.status_code == 413, refused.text
            assert refused.json()["error"]["code"] == "payload_too_large"
        single = await client.post(f"{hub.url}/api/v1/publish/x", json={"data": "a" * 5000})
        assert single.status_code == 413


@pytest.fixture(params=[True, False], ids=["direct-streams", "asgi-streams"])
async def guarded(request: pytest.FixtureRequest) -> AsyncIterator[RunningHub]:
    """A hub with short read limits, on either server protocol (both carry the guard)."""
    settings = hub_settings(
        max_header_bytes=8192,
        header_timeout_seconds=0.5,
        body_timeout_seconds=1.0,
        fast_streams=request.param,
    )
    async with running_hub(settings) as hub:
        yield hub


async def test_oversized_head_gets_431(guarded: RunningHub) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert status_and_error(await raw_exchange(guarded.url, big)) == (431, "headers_too_large")
    fits = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Ok: " + b"a" * 4000
    assert (await raw_exchange(guarded.url, fits + b"\r\n\r\n")).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # connects and sends nothing
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",  # a head that never ends (slowloris)
    ],
    ids=["silent", "slow-head"],
)
async def test_a_head_that_never_ends_gets_408_and_is_closed(
    guarded: RunningHub, payload: bytes
) -> None:
    assert status_and_error(await raw_exchange(guarded.url, payload)) == (408, "request_timeout")


async def test_a_body_that_never_ends_is_dropped_and_freed(
    guarded: RunningHub, client: httpx.AsyncClient
) -> None:
    state = guarded.server.server_state
    head = (
        b"POST /api/v1/sse/tickets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    part = b"%x\r\n%s\r\n" % (4096, b" " * 4096)
    answers = await asyncio.gather(*(raw_exchange(guarded.url, head + part * 8) for _ in range(5)))
    for data in answers:
        assert status_and_error(data) == (408, "request_timeout")
    # Their request tasks ended: what they had read is no longer held.
    await wait_until(lambda: not state.tasks, timeout=10)
    assert (await client.get(f"{guarded.url}/healthz")).status_code == 200


async def test_streams_outlive_the_read_timeouts(
    guarded: RunningHub, client: httpx.AsyncClient
) -> None:
    async with open_stream(client, f"{guarded.url}/api/v1/sse/stream/calm") as reader:
        await asyncio.sleep(1.5)  # past both timeouts: a stream's request was read long ago
        await publish(client, guarded.url, "calm", "still here")
        await reader.wait_count(1)
        assert reader.data == ["still here"]


async def test_a_kept_alive_connection_outlives_the_head_timeout(guarded: RunningHub) -> None:
    url = urllib.parse.urlsplit(guarded.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        for idle in (0.0, 0.7):  # then idle past the head timeout, within uvicorn's keep-alive
            await asyncio.sleep(idle)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
    finally:
        writer.close()


async def test_a_batch_gives_the_loop_back_while_it_fans_out(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slice of 0 s: the batch yields before each of its events (5 ms in production).
    monkeypatch.setattr(publish_routes, "BATCH_SLICE_SECONDS", 0.0)
    turns = 0
    seen: list[int] = []  # loop turns counted when each event of the batch was dispatched
    dispatch = Hub.dispatch

    def recording(self: Hub, event: Any) -> None:
        if event.channel == "fan":
            seen.append(turns)
        dispatch(self, event)

    monkeypatch.setattr(Hub, "dispatch", recording)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async with running_hub(hub_settings()) as hub:
        counter = asyncio.create_task(count_turns())
        try:
            items = [{"channel": "fan", "data": i} for i in range(20)]
            answer = await client.post(f"{hub.url}/api/v1/publish", json=items)
        finally:
            counter.cancel()
        assert answer.status_code == 200
    assert len(seen) == 20
    assert len(set(seen)) == 20  # other work ran between every two events of the batch

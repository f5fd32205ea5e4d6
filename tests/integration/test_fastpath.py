"""The direct stream path (fastpath.py): streams written by the server protocol, no task each.

The stream tests of test_streams.py run on this path too (it is the default); these check what
is specific to it: no ASGI task outlives a stream's opening, a burst is coalesced into one chunk,
client departure and shutdown release the stream, and the setting turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import pytest

from harness import open_stream, publish, running_hub, wait_until
from ssehub.event import Event
from ssehub.fastpath import DirectStream
from ssehub.settings import Settings


def direct_streams(running) -> list[DirectStream]:  # type: ignore[no-untyped-def]
    """Streams of the test server written by the direct path."""
    return [c for c in running.server.server_state.connections if isinstance(c, DirectStream)]


async def test_open_streams_hold_no_asgi_task(hub, client) -> None:
    url = f"{hub.url}/api/v1/sse/stream/direct"
    async with contextlib.AsyncExitStack() as stack:
        readers = [await stack.enter_async_context(open_stream(client, url)) for _ in range(10)]
        await wait_until(lambda: not hub.server.server_state.tasks, 5)
        assert len(direct_streams(hub)) == 10
        sent = [str(i) for i in range(30)]
        for value in sent:
            await publish(client, hub.url, "direct", value)
        for reader in readers:
            await reader.wait_count(30)
            assert reader.data == sent


async def test_a_burst_is_written_as_one_chunk(hub, client) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/stream/burst") as reader:
        (stream,) = direct_streams(hub)
        writes: list[bytes] = []
        transport = stream.transport
        original = transport.write
        transport.write = lambda data: (writes.append(data), original(data))  # type: ignore[method-assign]
        items = [{"channel": "burst", "data": i} for i in range(50)]
        response = await client.post(f"{hub.url}/api/v1/publish", json=items)
        assert response.status_code == 200
        await reader.wait_count(50)
        assert reader.data == [str(i) for i in range(50)]
        assert len(writes) < 5  # the batch's 50 events in a handful of chunks, not 50 writes


async def test_client_departure_releases_the_stream(hub, client) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/stream/gone"):
        await wait_until(lambda: len(hub.hub.connections) == 1, 5)
    await wait_until(lambda: not hub.hub.connections, 5)
    assert hub.hub.stats.closed.get("client_gone") == 1
    assert hub.hub.subscriber_counts().get("gone") is None


async def test_close_all_ends_streams_with_the_last_chunk(hub, client) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/stream/bye") as reader:
        await publish(client, hub.url, "bye", "before")
        await reader.wait_count(1)
        hub.hub.close_all()
        await asyncio.wait_for(reader.closed.wait(), 5)
        assert reader.data == ["before"]
    await wait_until(lambda: not hub.hub.connections, 5)


async def test_slow_consumer_is_aborted_when_the_transport_backs_up(client) -> None:
    settings = Settings(_env_file=None, subscriber_buffer=5)  # type: ignore[call-arg]
    async with running_hub(settings) as running:
        url = f"{running.url}/api/v1/sse/stream/backlog"
        slow = await client.send(client.build_request("GET", url), stream=True)  # never read
        try:
            await wait_until(lambda: len(direct_streams(running)) == 1, 5)
            payload = "y" * 32_000
            for i in range(200):
                await publish(client, running.url, "backlog", f"{i}:{payload}")
                if running.hub.stats.closed.get("slow_consumer"):
                    break
            await wait_until(lambda: running.hub.stats.closed.get("slow_consumer") == 1, 5)
            await wait_until(lambda: not running.hub.connections, 5)
        finally:
            await slow.aclose()


@pytest.mark.parametrize("fast", [True, False])
async def test_the_setting_selects_the_path(client, fast: bool) -> None:
    settings = Settings(_env_file=None, fast_streams=fast)  # type: ignore[call-arg]
    async with (
        running_hub(settings) as running,
        open_stream(client, f"{running.url}/api/v1/sse/stream/s") as reader,
    ):
        await publish(client, running.url, "s", "x")
        await reader.wait_count(1)
        assert len(direct_streams(running)) == (1 if fast else 0)
        assert len(running.server.server_state.tasks) == (0 if fast else 1)


async def test_shutdown_does_not_wait_for_a_stuck_client(client) -> None:
    settings = Settings(_env_file=None, subscriber_buffer=100_000)  # type: ignore[call-arg]
    loop = asyncio.get_running_loop()
    serving = running_hub(settings)
    running = await serving.__aenter__()
    url = f"{running.url}/api/v1/sse/stream/stuck"
    slow = await client.send(client.build_request("GET", url), stream=True)  # never read
    try:
        await wait_until(lambda: len(direct_streams(running)) == 1, 5)
        (stream,) = direct_streams(running)
        payload = "z" * 32_000
        for i in range(1000):
            await publish(client, running.url, "stuck", f"{i}:{payload}")
            if stream.paused:
                break
        assert stream.paused
        start = loop.time()
        await serving.__aexit__(None, None, None)
        assert loop.time() - start < 5
    finally:
        await slow.aclose()


async def test_a_failing_write_aborts_only_its_stream(hub, client) -> None:
    url = f"{hub.url}/api/v1/sse/stream/shared"
    async with open_stream(client, url) as first, open_stream(client, url) as second:
        broken, healthy = sorted(direct_streams(hub), key=lambda s: s.conn.connected_at)

        def fail(data: bytes) -> None:
            raise RuntimeError("simulated write failure")

        broken.transport.write = fail  # type: ignore[method-assign]
        await publish(client, hub.url, "shared", "after")
        await asyncio.wait_for(first.closed.wait(), 5)
        await second.wait_count(1)
        assert second.data == ["after"]
        assert not healthy.conn.closed


def mixed_bursts() -> list[list[Event]]:
    """Bursts of events to two channels (types, retries, multi-line and large data), each
    published within one loop turn."""
    kinds = [None, "x", "y"]
    datas = ["v", "one\ntwo", "", "w" * 3000]
    return [
        [
            Event(channel="ab"[(turn + i) % 2], event=kinds[i % 3], data=datas[(turn * i) % 4],
                  retry=(None, 0, 5)[(turn + i) % 3])
            for i in range(1 + turn % 7)
        ]
        for turn in range(12)
    ]  # fmt: skip


async def stream_bytes(client, fast: bool) -> list[bytes]:  # type: ignore[no-untyped-def]
    """What three subscribers (two channels; one channel with a type filter; one channel)
    read of the same bursts, with the per-hub parts of the frames masked."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, fast_streams=fast, subscriber_buffer=8, heartbeat_seconds=0
    )
    paths = ["a?channel=b", "b?types=x,message", "a"]
    async with running_hub(settings) as running, contextlib.AsyncExitStack() as stack:
        readers = [
            await stack.enter_async_context(
                open_stream(client, f"{running.url}/api/v1/sse/stream/{path}")
            )
            for path in paths
        ]
        counts = [0, 0, 0]
        for burst in mixed_bursts():
            for event in burst:
                await running.hub.publish(event)  # the memory broker: no turn passes
                counts[0] += 1
                counts[1] += event.channel == "b" and event.event in (None, "x")
                counts[2] += event.channel == "a"
        for reader, count in zip(readers, counts, strict=True):
            await reader.wait_count(count)
        assert not running.hub.stats.closed
        masked = []
        for reader in readers:
            raw = re.sub(rb'"client_id":"[^"]*","timestamp":[0-9]+', b"C", bytes(reader.raw))
            masked.append(re.sub(rb"(?m)^id: [0-9a-z]+-", b"id: E-", raw))
        return masked


async def test_bursts_read_the_same_bytes_as_on_the_asgi_path(client) -> None:
    assert await stream_bytes(client, True) == await stream_bytes(client, False)

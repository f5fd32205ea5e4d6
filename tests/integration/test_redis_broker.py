"""Redis-only behaviour of the broker: reader catch-up, a flushed Redis, and a hub on Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from harness import open_stream, publish, running_hub
from redis_support import RedisKeys, RedisServer
from ssehub.brokers.redis import RedisBroker
from ssehub.channels import Selector
from ssehub.event import Event, make_event
from ssehub.settings import Settings

pytestmark = pytest.mark.redis


@pytest.fixture
async def private_redis() -> AsyncIterator[RedisServer]:
    """A redis-server of this test alone (it may be flushed or stopped)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop(save=False)


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_reader_catches_up_after_losing_its_connection(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[Event] = []
    broker = RedisBroker(private_redis.url, prefix="t:")
    await broker.start(got.append)
    try:
        await broker.listen("a")
        await broker.listen("p:*")
        first = [await broker.publish(make_event("a", None, str(i))) for i in range(5)]
        await wait_until(lambda: len(got) == 5)
        admin = redis.Redis(port=private_redis.port)
        caplog.set_level(logging.INFO, "ssehub.redis")
        admin.client_kill_filter(_type="pubsub")
        sent = [
            await broker.publish(make_event("a" if i % 2 else "p:1", None, str(i)))
            for i in range(5, 25)
        ]
        await wait_until(lambda: len(got) == 25)
        assert [e.id for e in got] == [e.id for e in first + sent]
        assert "caught up" in caplog.text
        live = await broker.publish(make_event("p:2", None, "live"))
        await wait_until(lambda: len(got) == 26)
        assert got[-1].id == live.id
    finally:
        await broker.close()


async def test_a_flushed_redis_starts_a_new_epoch(private_redis: RedisServer) -> None:
    got: list[Event] = []
    broker = RedisBroker(private_redis.url, prefix="t:")
    await broker.start(got.append)
    try:
        await broker.listen("a")
        old = await broker.publish(make_event("a", None, "old"))
        redis.Redis(port=private_redis.port).flushall()
        new = await broker.publish(make_event("a", None, "new"))
        assert new.id.split("-")[0] != old.id.split("-")[0]
        assert new.seq == 1
        assert (await broker.history(Selector.of(["a"]), old.id)).gap
        await wait_until(lambda: len(got) == 2)
        assert [e.data for e in got] == ["old", "new"]
    finally:
        await broker.close()


async def test_hub_on_redis_trims_history_to_the_configured_size(
    client: httpx.AsyncClient, redis_keys: RedisKeys
) -> None:
    url, prefix = redis_keys.url, redis_keys.prefix
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        broker_url=url,
        redis_prefix=prefix,
        history_size=5,
        open_access=True,
    )
    async with running_hub(settings) as hub:
        ids = [(await publish(client, hub.url, "trim:x", i))["id"] for i in range(8)]
        page = (await client.get(f"{hub.url}/api/v1/channels/trim:x/events")).json()
        assert [e["data"] for e in page["events"]] == [3, 4, 5, 6, 7]
        stream = f"{hub.url}/api/v1/sse/stream/trim:x"
        async with open_stream(client, stream, headers={"Last-Event-ID": ids[0]}) as r:
            await r.wait_count(1, event="reset")
        async with open_stream(client, stream, headers={"Last-Event-ID": ids[3]}) as r:
            await r.wait_count(4)
            assert r.data == ["4", "5", "6", "7"]
    assert redis.Redis.from_url(url).xlen(f"{prefix}s:trim:x") == 5


async def test_the_reader_survives_garbage_and_a_failing_handler(
    private_redis: RedisServer,
) -> None:
    got: list[Event] = []

    def handler(event: Event) -> None:
        got.append(event)
        if event.data == "boom":
            raise RuntimeError("a broken subscriber")

    broker = RedisBroker(private_redis.url, prefix="t:")
    await broker.start(handler)
    try:
        await broker.listen("a")
        redis.Redis(port=private_redis.port).publish("t:e:a", "not an event")
        await broker.publish(make_event("a", None, "boom"))
        after = await broker.publish(make_event("a", None, "after"))
        await wait_until(lambda: len(got) == 2)
        assert got[-1].id == after.id
    finally:
        await broker.close()


async def test_a_hub_started_before_redis_becomes_ready_when_it_appears(
    client: httpx.AsyncClient,
) -> None:
    server = RedisServer()  # its port is chosen, nothing listens yet
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        broker_url=server.url,
        open_access=True,
    )
    try:
        async with running_hub(settings) as hub:
            assert (await client.get(f"{hub.url}/readyz")).status_code == 503
            down = await client.post(f"{hub.url}/api/v1/publish/late", json={"data": 1})
            assert down.status_code == 503
            server.start()
            async with asyncio.timeout(10):
                while (await client.get(f"{hub.url}/readyz")).status_code != 200:
                    await asyncio.sleep(0.1)
            async with open_stream(client, f"{hub.url}/api/v1/sse/stream/late") as reader:
                await publish(client, hub.url, "late", 2)
                await reader.wait_count(1)
                assert reader.data == ["2"]
    finally:
        server.stop(save=False)


async def test_listen_after_unlisten_keeps_the_subscription(private_redis: RedisServer) -> None:
    got: list[Event] = []
    broker = RedisBroker(private_redis.url, prefix="t:")
    await broker.start(got.append)
    try:
        await broker.listen("c")
        await asyncio.gather(broker.unlisten("c"), broker.listen("c"))
        await broker.listen("gone")
        await broker.unlisten("gone")
        await broker.publish(make_event("gone", None, "not for us"))
        sent = await broker.publish(make_event("c", None, "x"))
        await wait_until(lambda: len(got) == 1)
        assert got[0].id == sent.id
    finally:
        await broker.close()


async def test_events_trimmed_during_an_outage_send_streams_through_a_resume(
    private_redis: RedisServer, client: httpx.AsyncClient
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, broker_url=private_redis.url, history_size=3, redis_prefix="gap:"
    )
    async with running_hub(settings) as hub:
        broker = hub.hub.broker
        url = f"{hub.url}/api/v1/sse/stream/g"
        async with open_stream(client, url) as reader:
            await publish(client, hub.url, "g", "seen")
            await reader.wait_count(1)
            # The reader was away while ten events came and history kept only three.
            seen_up_to = broker.live.delivered
            for i in range(10):
                await publish(client, hub.url, "g", str(i))
            await reader.wait_count(11)
            broker.live.delivered = seen_up_to
            await broker.live.catch_up({"g"})
            async with asyncio.timeout(5):
                await reader.closed.wait()
            last = reader.events[-1].id
        assert hub.hub.stats.closed.get("history_gap") == 1
        async with open_stream(client, url, headers={"Last-Event-ID": last}) as again:
            await publish(client, hub.url, "g", "after")
            await again.wait_count(1)
            assert again.data == ["after"]
        stale = reader.events[1].id
        async with open_stream(client, url, headers={"Last-Event-ID": stale}) as old:
            await old.wait_count(1, event="reset")


@pytest.fixture
async def short_lived(redis_keys: RedisKeys) -> AsyncIterator[RedisBroker]:
    """A broker on the shared Redis whose history lives 0.2 s (streams expire after 0.4 s)."""
    url, prefix = redis_keys.url, redis_keys.prefix
    broker = RedisBroker(url, prefix=prefix, history_ttl=0.2)
    await broker.start(lambda event: None)
    yield broker
    await broker.close()


async def wait_forgotten(broker: RedisBroker, channel: str) -> None:
    """Until Redis expired ``channel``'s stream whole (twice its retention after the last event)."""
    async with asyncio.timeout(10):
        while await broker.redis.exists(broker.stream_key(channel)):
            await asyncio.sleep(0.05)


async def test_a_channel_expired_whole_reports_a_gap_before_and_after_reuse(
    short_lived: RedisBroker,
) -> None:
    broker = short_lived
    before = await broker.head()
    await broker.publish(make_event("gone", "e", "expires unseen"))
    await wait_forgotten(broker, "gone")
    # Not published since: the stream is gone, but its newest seq is still known.
    assert (await broker.history(Selector.of(["gone"]), before)).gap
    await broker.publish(make_event("gone", "e", "new"))
    history = await broker.history(Selector.of(["gone"]), before)
    assert history.gap
    assert [e.data for e in history.events] == ["new"]
    # A resume from after the lost event is exact: no gap.
    newest = history.events[0]
    assert not (await broker.history(Selector.of(["gone"]), newest.id)).gap


async def test_a_pruned_channel_raises_the_forgotten_watermark(short_lived: RedisBroker) -> None:
    broker = short_lived
    before = await broker.head()
    lost = await broker.publish(make_event("old:1", "e", "expires unseen"))
    await wait_forgotten(broker, "old:1")
    await (
        broker.history_reader.prune_index()
    )  # the index forgets the channel: only the watermark is left
    assert await broker.redis.hget(broker.keys.newest, "old:1") is None
    assert int(await broker.redis.get(broker.keys.forgotten)) == lost.seq
    assert (await broker.history(Selector.of(["old:*"]), before)).gap
    assert (await broker.history(Selector.of(["old:1"]), before)).gap
    assert not (await broker.history(Selector.of(["old:*"]), lost.id)).gap
    # A channel never used before counts as forgotten too when first published to.
    fresh = await broker.publish(make_event("new:1", "e", "first"))
    history = await broker.history(Selector.of(["new:1"]), before)
    assert history.gap and [e.id for e in history.events] == [fresh.id]


async def test_history_after_redis_lost_its_scripts(private_redis: RedisServer) -> None:
    broker = RedisBroker(private_redis.url, prefix="t:")
    await broker.start(lambda event: None)
    try:
        start = await broker.head()
        sent = await broker.publish(make_event("a", None, "kept"))
        redis.Redis(port=private_redis.port).script_flush()  # as after a Redis restart
        history = await broker.history(Selector.of(["a"]), start)
        assert not history.gap and [e.id for e in history.events] == [sent.id]
        assert (await broker.history(Selector.of(["a"]), "other-1")).gap  # another epoch
    finally:
        await broker.close()

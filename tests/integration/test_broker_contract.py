"""The Broker contract, run alike against the memory and the Redis broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ssehub.brokers import MemoryBroker, format_id, parse_id
from ssehub.brokers.redis import RedisBroker
from ssehub.channels import Selector
from ssehub.event import Event, make_event

BrokerFactory = Callable[..., Any]


class Received:
    """Events the broker delivered, with a wait that times out."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_count(self, n: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.events) < n:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture(params=["memory", "redis"])
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    """Build started brokers of one kind with given history settings; closes them after."""
    started: list[Any] = []
    keys = request.getfixturevalue("redis_keys") if request.param == "redis" else None

    async def build(**options: Any) -> Any:
        received = Received()
        if request.param == "memory":
            broker: Any = MemoryBroker(**options)
        else:
            broker = RedisBroker(keys.url, prefix=keys.prefix, **options)
        await broker.start(received)
        broker.received = received
        started.append(broker)
        return broker

    yield build
    for broker in started:
        await broker.close()


async def put(broker: Any, channel: str, data: Any, **kw: Any) -> Event:
    return await broker.publish(make_event(channel, "e", data), **kw)


async def test_ids_increase_across_channels(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    events = [await put(broker, f"ch{i % 3}", i) for i in range(10)]
    positions = [parse_id(e.id) for e in events]
    assert all(p is not None and p[0] == broker.epoch for p in positions)
    seqs = [p[1] for p in positions if p]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    assert [e.seq for e in events] == seqs
    assert await broker.head() == events[-1].id


async def test_listened_channels_are_delivered_in_order(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    await broker.listen("a")
    await broker.listen("p:*")
    sent = [await put(broker, ["a", "p:1", "p:2"][i % 3], i) for i in range(30)]
    await broker.received.wait_count(30)
    got = [e for e in broker.received.events if e.channel in ("a", "p:1", "p:2")]
    assert [e.id for e in got] == [e.id for e in sent]
    assert [e.data for e in got] == [str(i) for i in range(30)]


async def test_history_after_an_id(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    sent = [await put(broker, "a" if i % 2 else "b", i) for i in range(10)]
    history = await broker.history(Selector.of(["a"]), sent[2].id)
    assert not history.gap
    assert [e.id for e in history.events] == [e.id for e in sent[3:] if e.channel == "a"]
    both = await broker.history(Selector.of(["a", "b"]), sent[2].id)
    assert [e.id for e in both.events] == [e.id for e in sent[3:]]
    pattern = await broker.history(Selector.of(["*"]), sent[0].id, limit=4)
    assert [e.id for e in pattern.events] == [e.id for e in sent[1:5]]
    assert [e.data for e in pattern.events] == ["1", "2", "3", "4"]
    caught_up = await broker.history(Selector.of(["a"]), sent[-1].id)
    assert caught_up.events == [] and not caught_up.gap


async def test_unknown_or_future_ids_are_gaps(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    last = await put(broker, "a", 1)
    for bad in ("nonsense", "zzzz-1", f"{broker.epoch}-{last.seq + 5}"):
        assert (await broker.history(Selector.of(["a"]), bad)).gap, bad


async def test_trimming_keeps_the_configured_size_and_reports_gaps(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker(history_size=3)
    sent = [await put(broker, "a", i) for i in range(6)]
    other = await put(broker, "b", "x")
    recent = await broker.recent(Selector.of(["a"]), limit=10)
    assert [e.id for e in recent] == [e.id for e in sent[-3:]]
    assert (await broker.history(Selector.of(["a"]), sent[0].id)).gap
    fine = await broker.history(Selector.of(["a"]), sent[2].id)
    assert not fine.gap
    assert [e.id for e in fine.events] == [e.id for e in sent[3:]]
    assert not (await broker.history(Selector.of(["b"]), sent[0].id)).gap
    assert (await broker.history(Selector.of(["a", "b"]), sent[1].id)).gap
    assert [e.id for e in await broker.recent(Selector.of(["b"]), limit=5)] == [other.id]


async def test_history_expires_by_age(make_broker: BrokerFactory) -> None:
    broker = await make_broker(history_ttl=1.0)
    first = await put(broker, "a", 1)
    await asyncio.sleep(0.6)
    second = await put(broker, "a", 2)
    await asyncio.sleep(0.5)
    history = await broker.history(Selector.of(["a"]), first.id)
    assert [e.id for e in history.events] == [second.id]
    old = await broker.history(Selector.of(["a"]), f"{broker.epoch}-0")
    assert old.gap


async def test_idempotency_key_returns_the_first_event(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    first = await put(broker, "a", 1, idempotency_key="k1")
    retried = make_event("a", "e", 1)
    again = await broker.publish(retried, idempotency_key="k1")
    other = await put(broker, "a", 2, idempotency_key="k2")
    assert again.id == first.id and again.channel == "a"
    assert again is not retried  # how the publisher tells a replay (counted and tracked once)
    assert other.id != first.id
    history = await broker.history(Selector.of(["a"]), f"{broker.epoch}-0")
    assert [e.data for e in history.events] == ["1", "2"]


async def test_recent_merges_channels_by_seq(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    sent = [await put(broker, f"r:{i % 2}", i) for i in range(8)]
    recent = await broker.recent(Selector.of(["r:*"]), limit=5)
    assert [e.id for e in recent] == [e.id for e in sent[-5:]]
    assert await broker.recent(Selector.of(["nothing"]), limit=5) == []


async def test_event_fields_survive_the_round_trip(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    await broker.listen("f")
    start = await broker.head()
    event = make_event("f", None, "line1\nline2", retry=1500)
    stored = await broker.publish(event)
    await broker.received.wait_count(1)
    live = broker.received.events[-1]
    (kept,) = (await broker.history(Selector.of(["f"]), start)).events
    for got in (live, kept):
        assert (got.id, got.channel, got.event, got.data, got.retry) == (
            stored.id,
            "f",
            None,
            "line1\nline2",
            1500,
        )
        assert got.frame == stored.frame


async def test_an_event_with_its_own_ttl_expires_alone(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    start = await broker.head()
    short = make_event("s", "token", "t")
    short.ttl = 0.3
    await broker.publish(short)
    kept = await put(broker, "s", "outcome")
    await asyncio.sleep(0.5)
    history = await broker.history(Selector.of(["s"]), start)
    assert [e.id for e in history.events] == [kept.id]
    assert history.gap
    assert not (await broker.history(Selector.of(["s"]), short.id)).gap


async def test_pattern_history_finds_exactly_the_matching_channels(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker()
    start = await broker.head()
    for channel in ("proj:1:stage:a", "proj:2:stage:a", "proj:1:other", "proj:10:stage:a"):
        await put(broker, channel, channel)
    by_prefix = await broker.history(Selector.of(["proj:1:*"]), start)
    assert [e.data for e in by_prefix.events] == ["proj:1:stage:a", "proj:1:other"]
    by_suffix = await broker.history(Selector.of(["*:stage:a", "proj:1:other"]), start)
    assert [e.data for e in by_suffix.events] == [
        "proj:1:stage:a",
        "proj:2:stage:a",
        "proj:1:other",
        "proj:10:stage:a",
    ]


async def test_a_resume_from_another_epoch_replays_every_kept_event(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker()
    sent = [await put(broker, "a" if i % 2 else "b", i) for i in range(6)]
    history = await broker.history(Selector.of(["a"]), "older-4")
    assert history.gap
    assert history.resume_from == f"{broker.epoch}-0"
    assert [e.id for e in history.events] == [e.id for e in sent if e.channel == "a"]
    pattern = await broker.history(Selector.of(["*"]), "older-4", limit=4)
    assert pattern.gap and [e.id for e in pattern.events] == [e.id for e in sent[:4]]
    same_epoch = await broker.history(Selector.of(["a"]), f"{broker.epoch}-99")
    assert same_epoch.gap and same_epoch.resume_from is None  # ahead of the head: no replay


async def test_past_the_channel_bound_the_least_recent_channel_is_forgotten(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker(max_channels=3)
    first = await put(broker, "a", "a1")
    await put(broker, "b", "b1")
    await put(broker, "c", "c1")
    await put(broker, "a", "a2")  # "a" is now the most recent: "b" goes first
    await put(broker, "d", "d1")
    assert await broker.recent(Selector.of(["b"]), limit=5) == []
    kept_now = await broker.recent(Selector.of(["*"]), limit=9)
    assert [e.data for e in kept_now] == ["a1", "c1", "a2", "d1"]
    # A resume that may cover the forgotten channel gets a reset, never a silent gap.
    assert (await broker.history(Selector.of(["b"]), first.id)).gap
    assert (await broker.history(Selector.of(["*"]), first.id)).gap
    assert (await broker.history(Selector.of(["a", "b"]), first.id)).gap
    kept = await broker.history(Selector.of(["a"]), first.id)
    assert not kept.gap and [e.data for e in kept.events] == ["a2"]
    again = await put(broker, "b", "b2")  # published again: its old events stay unvouched
    assert (await broker.history(Selector.of(["b"]), first.id)).gap
    since = await broker.history(Selector.of(["b"]), format_id(broker.epoch, again.seq - 1))
    assert not since.gap and [e.data for e in since.events] == ["b2"]


async def test_pattern_resume_reads_only_its_prefix_and_stays_within_budget(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker(max_resume_channels=50)
    first = await put(broker, "few:0", 0)
    for i in range(120):  # kept channels outside the resumed prefix cost it nothing
        await put(broker, f"many:{i}", i)
    last = await put(broker, "few:1", 1)
    few = await broker.history(Selector.of(["few:*"]), first.id)
    assert not few.gap and [e.id for e in few.events] == [last.id]
    # Past the budget: a reset (start at the head), never a silent partial replay.
    assert (await broker.history(Selector.of(["many:*"]), first.id)).gap
    assert (await broker.history(Selector.of(["*"]), first.id)).gap

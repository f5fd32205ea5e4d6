"""The RunStore contract, run alike against the memory and the Redis run state.

Each test drives a store the way the publish path does (``check``, the run id added, retention,
an id from the broker, ``observe``), so the run rules written in Python and in Lua must agree.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ssehub.brokers import Broker, MemoryBroker, format_id
from ssehub.brokers.redis import RedisBroker
from ssehub.channels import Selector
from ssehub.errors import BrokerUnavailable
from ssehub.event import Event, make_event
from ssehub.runstate import (
    MAX_ENDED_IDS,
    MemoryRunStore,
    RunClosed,
    RunState,
    RunStore,
    RunTimes,
)
from ssehub.runstate.redis import RedisRunStore

StoreFactory = Callable[..., Awaitable[RunStore]]
CHANNEL = "app:project:p1:stage:write"


@pytest.fixture(params=["memory", "redis", "memory-step", "redis-step"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Build run stores of one kind with given ``RunTimes``; closes them after. A ``-step``
    store is published to as ``Hub.publish`` does: its step run by a broker (on Redis, inside
    the broker's publish script)."""
    kind = request.param
    keys = request.getfixturevalue("redis_keys") if kind.startswith("redis") else None
    made: list[RunStore] = []
    brokers: list[Broker] = []

    async def build(**times: Any) -> RunStore:
        store: RunStore = (
            RedisRunStore(keys.url, prefix=keys.prefix, times=RunTimes(**times))
            if keys
            else MemoryRunStore(RunTimes(**times))
        )
        made.append(store)
        if kind.endswith("-step"):
            broker = RedisBroker(keys.url, prefix=keys.prefix) if keys else MemoryBroker()
            brokers.append(broker)
            BROKERS[id(store)] = broker
        return store

    yield build
    for store in made:
        BROKERS.pop(id(store), None)
        await store.close()
    for broker in brokers:
        await broker.close()


BROKERS: dict[int, Broker] = {}  # the broker each ``-step`` store is published through


class Path:
    """The publish path over one store: check, add the run id, retention, position, observe;
    or the store's step through its broker (a ``-step`` store)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.broker = BROKERS.get(id(store))
        self.seq = 0

    async def publish(self, kind: str, channel: str = CHANNEL, **data: Any) -> Event:
        """Publish a stage message; RunClosed when the store refuses it."""
        return await self.publish_event(make_event(channel, kind, {"type": kind, **data}))

    async def publish_event(self, event: Event) -> Event:
        if self.broker is not None:
            stored = await self.broker.publish(event, step=self.store)
            self.seq = stored.seq
            return stored
        run_id = await self.store.check(event)
        if run_id is not None:
            event.data = json.dumps({**json.loads(event.data), "run_id": run_id})
        self.store.set_retention(event)
        await self.observe(event)
        return event

    async def observe(self, event: Event, seq: int | None = None) -> Event:
        """Give ``event`` the next position (or ``seq``) and fold it in, as after a publish."""
        self.seq += 1
        event.seq = self.seq if seq is None else seq
        event.id = format_id("e", event.seq)
        await self.store.observe(event)
        return event

    async def run(self, channel: str = CHANNEL) -> RunState:
        run = await self.store.get(channel)
        assert run is not None
        return run


def run_id_of(event: Event) -> str:
    return str(json.loads(event.data)["run_id"])


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, polling; fails after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


# -- opening and joining a run ---------------------------------------------------------------


async def test_the_first_message_opens_a_run(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    assert await path.store.get(CHANNEL) is None
    first = await path.publish("token", content="a")
    run = await path.run()
    assert (run.run_id, run.status, run.project_id, run.stage) == (
        run_id_of(first),
        "running",
        "p1",
        "write",
    )
    assert not run.finished


async def test_a_first_message_naming_its_run_keeps_that_id(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    event = make_event(CHANNEL, "token", {"type": "token", "content": "a", "run_id": "r1"})
    assert await path.store.check(event) is None  # nothing to add
    await path.publish_event(event)
    assert (await path.run()).run_id == "r1"


@pytest.mark.parametrize("run_id", [None, "", 123])
async def test_messages_without_a_run_id_join_the_current_run(
    make_store: StoreFactory, run_id: Any
) -> None:
    path = Path(await make_store())
    first = await path.publish("token", content="a")
    event = make_event(CHANNEL, "token", {"type": "token", "content": "b", "run_id": run_id})
    assert await path.store.check(event) == run_id_of(first)


@pytest.mark.parametrize(
    ("channel", "kind", "data"),
    [
        (CHANNEL, "note", '{"type": "note"}'),  # not a stage message type
        ("app:project:p1", "token", '{"content": "a"}'),  # not a stage channel
        (CHANNEL, "token", "not json"),
        (CHANNEL, "token", "[1, 2]"),
        (CHANNEL, None, '{"content": "a"}'),
    ],
)
async def test_other_events_are_no_runs(
    make_store: StoreFactory, channel: str, kind: str | None, data: str
) -> None:
    path = Path(await make_store())
    event = Event(channel=channel, event=kind, data=data)
    assert await path.store.check(event) is None
    await path.observe(event)
    assert await path.store.get(channel) is None
    assert event.data == data


# -- ended runs --------------------------------------------------------------------------------


@pytest.mark.parametrize("end", [{"kind": "done"}, {"kind": "error", "error": "boom"}])
async def test_an_ended_run_refuses_its_messages(
    make_store: StoreFactory, end: dict[str, Any]
) -> None:
    path = Path(await make_store())
    first = await path.publish("token", content="a")
    await path.publish(**end)
    late = [
        {"kind": "token", "content": "x"},
        {"kind": "progress", "current": 1},
        {"kind": "done"},
        {"kind": "error", "error": "again"},
        {"kind": "stage_update", "status": "completed"},
        {"kind": "stage_update", "status": ["pending"]},  # not text: no start of work
        {"kind": "token", "content": "x", "run_id": run_id_of(first)},
    ]
    for message in late:
        with pytest.raises(RunClosed):
            await path.publish(**message)
    assert (await path.run()).status == ("done" if end["kind"] == "done" else "error")


@pytest.mark.parametrize("status", ["pending", "queued", "started", "running", "processing"])
@pytest.mark.parametrize("end", ["done", "error"])
async def test_a_stage_update_starting_work_opens_the_next_run(
    make_store: StoreFactory, status: str, end: str
) -> None:
    path = Path(await make_store())
    first = await path.publish("token", content="old")
    await path.publish(end, error="boom")
    update = await path.publish("stage_update", status=status, progress=0)
    run = await path.run()
    assert run.run_id == run_id_of(update) != run_id_of(first)
    assert (run.status, run.stage_status, run.full_text, run.error) == (
        "running",
        status,
        "",
        None,
    )
    assert run.ended == [run_id_of(first)]
    await path.publish("token", content="new")  # joins the new run
    with pytest.raises(RunClosed):
        await path.publish("token", content="x", run_id=run_id_of(first))


async def test_a_retry_reopens_its_own_run(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    first = await path.publish("token", content="a", run_id="r1")
    await path.publish("error", error="boom")
    retry = make_event(CHANNEL, "stage_update", {"status": "started", "run_id": "r1"})
    assert await path.store.check(retry) is None
    await path.publish_event(retry)
    run = await path.run()
    assert (run.run_id, run.status, run.ended, run.full_text) == ("r1", "running", [], "")
    assert run_id_of(first) == "r1"


async def test_a_cancelled_run_reopens_only_on_a_new_submission(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    await path.publish("token", content="a")
    await path.publish("error", error="cancelled")
    run = await path.run()
    assert (run.status, run.error) == ("cancelled", "cancelled")
    for status in ("started", "running", "processing"):
        with pytest.raises(RunClosed):
            await path.publish("stage_update", status=status)
    with pytest.raises(RunClosed):
        await path.publish("token", content="a worker that started anyway")
    await path.publish("stage_update", status="queued")
    assert (await path.run()).status == "running"


async def test_a_new_run_id_replaces_the_running_run(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    await path.publish("token", content="a", run_id="r1")
    replacing = make_event(CHANNEL, "token", {"content": "b", "run_id": "r2"})
    assert await path.store.check(replacing) is None
    await path.publish_event(replacing)
    run = await path.run()
    assert (run.run_id, run.full_text, run.ended) == ("r2", "b", ["r1"])
    with pytest.raises(RunClosed):
        await path.publish("token", content="late", run_id="r1")


async def test_only_the_latest_ended_run_ids_are_remembered(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    ids = [f"r{i}" for i in range(MAX_ENDED_IDS + 2)]
    for rid in ids:
        await path.publish("token", content=rid, run_id=rid)
    assert (await path.run()).ended == ids[1:-1]
    for rid in ids[1:-1]:
        with pytest.raises(RunClosed):
            await path.publish("token", content="late", run_id=rid)
    await path.publish("token", content="old but forgotten", run_id=ids[0])
    assert (await path.run()).run_id == ids[0]


async def test_a_message_that_skipped_the_check_does_not_change_an_ended_run(
    make_store: StoreFactory,
) -> None:
    path = Path(await make_store())
    await path.publish("token", content="a")
    done = await path.publish("done")
    await path.observe(make_event(CHANNEL, "token", {"content": "b"}))
    run = await path.run()
    assert (run.status, run.full_text, run.last_id) == ("done", "a", done.id)


async def test_a_message_without_run_id_that_skipped_the_check_joins_the_run(
    make_store: StoreFactory,
) -> None:
    # Regression: the Redis store opened a new run with an empty id here.
    path = Path(await make_store())
    first = await path.publish("token", content="a")
    await path.observe(make_event(CHANNEL, "token", {"content": "b"}))
    run = await path.run()
    assert (run.run_id, run.full_text, run.ended) == (run_id_of(first), "ab", [])


# -- what a late joiner is told --------------------------------------------------------------


async def test_the_snapshot_folds_the_run(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    await path.publish("stage_update", status="processing", progress=20, message="writing")
    await path.publish("progress", current=3, total=10, progress=30, item_name="ch3")
    for piece in ("Hel", "lo"):
        await path.publish("token", content=piece)
    last = await path.publish("token", content="!", full_text="Hello!")
    run = await path.run()
    snapshot = run.snapshot_event()
    data = json.loads(snapshot.data)
    assert snapshot.event == "snapshot" and snapshot.seq == last.seq
    expected = {
        "type": "snapshot",
        "stage": "write",
        "project_id": "p1",
        "status": "running",
        "stage_status": "processing",
        "progress": 30,
        "message": "writing",
        "current": 3,
        "total": 10,
        "item_name": "ch3",
        "error": None,
        "full_text": "Hello!",
        "last_event_id": last.id,
        "run_id": run.run_id,
    }
    assert {k: v for k, v in data.items() if k != "timestamp"} == expected
    await path.publish("token", content=" more")
    done = await path.publish("done", full_text="The end.")
    run = await path.run()
    assert (run.full_text, run.status) == ("The end.", "done")
    assert run.snapshot_event().seq == done.seq - 1  # before the outcome it replays with


async def test_a_stage_update_clears_what_it_leaves_out(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    await path.publish("stage_update", status="processing", progress=20, message="writing")
    await path.publish("stage_update", status="processing")
    run = await path.run()
    assert (run.stage_status, run.progress, run.message) == ("processing", None, None)


@pytest.mark.parametrize(("content", "text"), [(42, "42"), (None, ""), ("", ""), (1.5, "1.5")])
async def test_token_content_is_added_as_text(
    make_store: StoreFactory, content: Any, text: str
) -> None:
    # Regression: the Redis store dropped content that was not a JSON string.
    path = Path(await make_store())
    await path.publish("token", content="a")
    await path.publish("token", content=content)
    assert (await path.run()).full_text == "a" + text


@pytest.mark.parametrize(
    "value",
    [0.1234567890123456789, 2**53 + 1, [], {}, {"a": [1, {}]}, "é", True, -0.0, 1e300],
)
async def test_field_values_are_kept_exactly(make_store: StoreFactory, value: Any) -> None:
    # Regression: the Redis store re-encoded fields in Lua (floats to 14 digits, [] as {}).
    path = Path(await make_store())
    await path.publish("stage_update", status="processing", progress=value, message=value)
    await path.publish("progress", current=value, total=value, progress=value, item_name=value)
    run = await path.run()
    got = [run.progress, run.message, run.current, run.total, run.item_name]
    assert [json.dumps(v) for v in got] == [json.dumps(value)] * 5


@pytest.mark.parametrize(("error", "text"), [("boom", "boom"), (None, "None"), (7, "7")])
async def test_the_error_of_a_run_is_its_text(
    make_store: StoreFactory, error: Any, text: str
) -> None:
    # Regression: the Redis store wrote Lua's names ("nil") for what was not a string.
    path = Path(await make_store())
    await path.publish("token", content="a")
    await path.publish("error", error=error)
    run = await path.run()
    assert (run.status, run.error) == ("error", text)


async def test_events_folded_out_of_order_keep_the_newest_position(
    make_store: StoreFactory,
) -> None:
    # Regression: the memory store took the position of the last event folded in.
    path = Path(await make_store())
    first = await path.publish("token", content="a")
    await path.observe(make_event(CHANNEL, "token", {"content": "c"}), seq=first.seq + 5)
    await path.observe(make_event(CHANNEL, "token", {"content": "b"}), seq=first.seq + 3)
    run = await path.run()
    assert (run.last_seq, run.last_id) == (first.seq + 5, format_id("e", first.seq + 5))


async def test_snapshots_of_channels_and_project_patterns(make_store: StoreFactory) -> None:
    path = Path(await make_store())
    channels = [
        "app:project:p1:stage:b",
        "app:project:p1:stage:a",
        "app:project:p2:stage:a",
        "other:project:p1:stage:a",
    ]
    for channel in channels:
        await path.publish("token", channel=channel, content=channel)

    async def snapshot_channels(*names: str) -> list[str]:
        return [e.channel for e in await path.store.snapshots(Selector.of(names))]

    assert await snapshot_channels("app:project:p1:stage:*") == sorted(channels[:2])
    assert await snapshot_channels("app:project:p1:stage:a*", "app:project:p2:stage:a") == [
        "app:project:p1:stage:a",
        "app:project:p2:stage:a",
    ]
    assert await snapshot_channels("app:project:p1:stage:zzz", "app:project:p9:stage:*") == []
    # Only project-wide patterns are looked up (never a scan of every run).
    # Regression: the memory store answered every run any pattern covered.
    assert await snapshot_channels("app:project:*", "*:stage:a") == []


# -- retention ---------------------------------------------------------------------------------


async def test_retention_classes(make_store: StoreFactory) -> None:
    store = await make_store(token_ttl=60.0, outcome_ttl=3600.0)
    ttls = {}
    for kind in ("token", "stage_update", "progress", "done", "error", "note"):
        event = make_event(CHANNEL, kind, {})
        store.set_retention(event)
        ttls[kind] = event.ttl
    assert ttls == {
        "token": 60.0,
        "stage_update": 3600.0,
        "progress": None,
        "done": 3600.0,
        "error": 3600.0,
        "note": None,
    }
    preset = make_event(CHANNEL, "token", {})
    preset.ttl = 5.0
    store.set_retention(preset)
    elsewhere = make_event("app:chat", "token", {})
    store.set_retention(elsewhere)
    assert (preset.ttl, elsewhere.ttl) == (5.0, None)


async def test_run_state_is_forgotten_after_the_outcome_retention(
    make_store: StoreFactory,
) -> None:
    # Regression: the Redis store expired the state of a sub-second retention at once.
    path = Path(await make_store(outcome_ttl=0.9))
    first = await path.publish("token", content="a")
    await path.publish("done")
    assert (await path.run()).status == "done"
    with pytest.raises(RunClosed):
        await path.publish("token", content="late", run_id=run_id_of(first))

    async def forgotten() -> bool:
        return await path.store.get(CHANNEL) is None

    await until(forgotten)
    await path.publish("token", content="late", run_id=run_id_of(first))
    assert (await path.run()).full_text == "late"


async def test_ended_run_ids_are_kept_as_long_as_the_run(make_store: StoreFactory) -> None:
    # Regression: the Redis store let them expire while the run that replaced them went on.
    path = Path(await make_store(outcome_ttl=1.0))
    await path.publish("token", content="a", run_id="r1")
    loop = asyncio.get_running_loop()
    until_time = loop.time() + 1.6
    while loop.time() < until_time:
        await path.publish("token", content=".", run_id="r2")
        await asyncio.sleep(0.2)
    with pytest.raises(RunClosed):
        await path.publish("token", content="late", run_id="r1")


# -- silent publishers -----------------------------------------------------------------------


async def test_silent_runs_are_ended_through_publish(make_store: StoreFactory) -> None:
    path = Path(await make_store(publisher_timeout=0.3))
    await path.publish("token", content="a", channel="app:project:p1:stage:done")
    await path.publish("done", channel="app:project:p1:stage:done")
    await path.publish("token", content="b")
    published: list[Event] = []
    ended = asyncio.Event()

    async def publish(event: Event) -> Event:
        published.append(await path.publish_event(event))
        ended.set()
        return event

    await path.store.start(publish)
    await asyncio.wait_for(ended.wait(), 10)
    run = await path.run()
    assert (run.status, run.error) == ("error", "publisher_timeout")
    assert [(e.channel, e.event) for e in published] == [(CHANNEL, "error")]
    assert json.loads(published[0].data)["run_id"] == run.run_id


async def test_a_timeout_the_broker_refused_is_published_again(make_store: StoreFactory) -> None:
    # Regression: the Redis store dropped its claim on the run and never tried again.
    path = Path(await make_store(publisher_timeout=0.2))
    await path.publish("token", content="a")
    attempts: list[Event] = []
    ended = asyncio.Event()

    async def publish(event: Event) -> Event:
        attempts.append(event)
        if len(attempts) == 1:
            raise BrokerUnavailable("the broker is down")
        await path.publish_event(event)
        ended.set()
        return event

    await path.store.start(publish)
    await asyncio.wait_for(ended.wait(), 10)
    assert len(attempts) == 2
    assert (await path.run()).error == "publisher_timeout"

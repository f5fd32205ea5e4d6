"""A retried publish (its Idempotency-Key again) gets its first answer even once the run it
belongs to has ended: its first attempt was stored, so refusing the retry told a publisher whose
answer was lost that its ``done`` failed. A new message to an ended run is still refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from harness import running_hub, wait_until
from redis_support import RedisKeys
from ssehub.brokers import MemoryBroker
from ssehub.brokers.redis import RedisBroker
from ssehub.channels import Selector
from ssehub.event import make_event
from ssehub.hub import Hub
from ssehub.runs import MemoryRunStore, RunClosed
from ssehub.runstate.redis import RedisRunStore
from ssehub.runstate.rules import RunTimes
from ssehub.settings import Settings

CHANNEL = "ai_story:project:p1:stage:answer"


@pytest.fixture(params=["memory", "redis", "redis, run store apart"])
async def hub(request: pytest.FixtureRequest, redis_keys: RedisKeys) -> AsyncIterator[Hub]:
    """A hub with a run store: in memory; on Redis with the run step inside the publish
    script; on Redis with the run store under another prefix (its step around the publish)."""
    url, prefix = redis_keys.url, redis_keys.prefix
    if request.param == "memory":
        made = Hub(MemoryBroker(), heartbeat_seconds=0, runs=MemoryRunStore())
    else:
        runs_prefix = prefix if request.param == "redis" else prefix + "runs:"
        runs = RedisRunStore(url, prefix=runs_prefix)
        made = Hub(RedisBroker(url, prefix=prefix), heartbeat_seconds=0, runs=runs)
    try:
        yield made
    finally:
        assert made.runs is not None
        await made.runs.close()
        await made.broker.close()


async def test_a_retried_done_gets_its_first_id(hub: Hub) -> None:
    token = await hub.publish(make_event(CHANNEL, "token", {"content": "a"}), key="k1")
    done = await hub.publish(make_event(CHANNEL, "done", {}), key="k2")
    again = await hub.publish(make_event(CHANNEL, "done", {}), key="k2")
    assert (again.id, again.channel) == (done.id, done.channel)
    late = await hub.publish(make_event(CHANNEL, "token", {"content": "a"}), key="k1")
    assert late.id == token.id  # a retried token of the ended run: its first id too
    with pytest.raises(RunClosed):  # a new message to the ended run
        await hub.publish(make_event(CHANNEL, "token", {"content": "b"}), key="k3")


async def test_over_http_a_retried_done_is_answered_200(client: httpx.AsyncClient) -> None:
    url = f"/api/v1/publish/{CHANNEL}"
    async with running_hub(Settings(_env_file=None)) as running:  # type: ignore[call-arg]

        async def send(event: str, key: str) -> httpx.Response:
            body = {"event": event, "data": {}}
            return await client.post(running.url + url, json=body, headers={"Idempotency-Key": key})

        await send("token", "t1")
        first, retried = await send("done", "d1"), await send("done", "d1")
        late = await send("token", "t2")
    assert first.status_code == retried.status_code == 200
    assert retried.json() == first.json()
    assert late.status_code == 409


async def stored_ids(hub: Hub) -> list[str]:
    return [event.id for event in await hub.recent(Selector.of([CHANNEL]), limit=100)]


async def test_a_refused_first_attempt_is_refused_again_and_never_stored(hub: Hub) -> None:
    await hub.publish(make_event(CHANNEL, "done", {}), key="d1")
    kept = await stored_ids(hub)
    for _ in range(2):
        with pytest.raises(RunClosed):
            await hub.publish(make_event(CHANNEL, "token", {"content": "late"}), key="t9")
    assert await stored_ids(hub) == kept


async def test_a_retry_after_the_next_run_opened_is_answered_and_leaves_that_run_alone(
    hub: Hub,
) -> None:
    done = await hub.publish(make_event(CHANNEL, "done", {}), key="d1")
    opened = await hub.publish(make_event(CHANNEL, "stage_update", {"status": "pending"}), key="s1")
    assert hub.runs is not None
    second = await hub.runs.get(CHANNEL)
    assert second is not None and second.status == "running"
    kept = await stored_ids(hub)
    again = await hub.publish(make_event(CHANNEL, "done", {}), key="d1")
    assert (again.id, again.channel) == (done.id, done.channel)
    assert await stored_ids(hub) == kept  # no second copy
    run = await hub.runs.get(CHANNEL)
    assert run is not None and (run.status, run.run_id) == ("running", second.run_id)
    token = await hub.publish(make_event(CHANNEL, "token", {"content": "b"}), key="t2")
    assert token.id not in (done.id, opened.id)


async def test_a_retry_of_the_opening_message_of_an_ended_run_opens_nothing(hub: Hub) -> None:
    await hub.publish(make_event(CHANNEL, "done", {}), key="d1")
    opened = await hub.publish(make_event(CHANNEL, "stage_update", {"status": "pending"}), key="s1")
    await hub.publish(make_event(CHANNEL, "done", {}), key="d2")
    assert hub.runs is not None
    ended = await hub.runs.get(CHANNEL)
    assert ended is not None and ended.status == "done"
    kept = await stored_ids(hub)
    again = await hub.publish(make_event(CHANNEL, "stage_update", {"status": "pending"}), key="s1")
    assert again.id == opened.id
    assert await stored_ids(hub) == kept
    run = await hub.runs.get(CHANNEL)
    assert run is not None and (run.status, run.run_id) == ("done", ended.run_id)


@pytest.mark.parametrize("apart", [False, True], ids=["run step in the script", "run store apart"])
async def test_two_hubs_racing_a_retry_and_the_next_run_store_nothing_twice(
    redis_keys: RedisKeys, apart: bool
) -> None:
    """One hub retries a stored ``done`` while another opens the next run, at once, many
    times: every retry gets its first id, no ``done`` is stored twice, each next run stays
    open."""
    url, prefix = redis_keys.url, redis_keys.prefix
    hubs = []
    for _ in range(2):
        runs = RedisRunStore(url, prefix=prefix + "runs:" if apart else prefix)
        hubs.append(Hub(RedisBroker(url, prefix=prefix), heartbeat_seconds=0, runs=runs))
    one, two = hubs
    try:
        for round_ in range(20):
            done = await one.publish(make_event(CHANNEL, "done", {}), key=f"d{round_}")
            before = await stored_ids(one)
            again, opened = await asyncio.gather(
                one.publish(make_event(CHANNEL, "done", {}), key=f"d{round_}"),
                two.publish(make_event(CHANNEL, "stage_update", {"status": "pending"})),
            )
            assert (again.id, again.channel) == (done.id, done.channel)
            assert await stored_ids(two) == [*before, opened.id]
            assert one.runs is not None
            run = await one.runs.get(CHANNEL)
            assert run is not None and run.status == "running", round_
    finally:
        for made in hubs:
            assert made.runs is not None
            await made.runs.close()
            await made.broker.close()


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_retry_after_the_watchdog_ended_the_run_gets_its_first_id(
    redis_keys: RedisKeys, backend: str
) -> None:
    """A token stored just before its publisher went silent: once the watchdog ended the run,
    its retry gets its first id and a new token is refused."""
    times = RunTimes(publisher_timeout=0.2)
    if backend == "memory":
        made = Hub(MemoryBroker(), heartbeat_seconds=0, runs=MemoryRunStore(times))
    else:
        url, prefix = redis_keys.url, redis_keys.prefix
        runs = RedisRunStore(url, prefix=prefix, times=times)
        made = Hub(RedisBroker(url, prefix=prefix), heartbeat_seconds=0, runs=runs)
    assert made.runs is not None
    runs_ = made.runs
    await made.start()
    await runs_.start(made.publish)
    try:
        token = await made.publish(make_event(CHANNEL, "token", {"content": "a"}), key="t1")

        async def ended() -> bool:
            run = await runs_.get(CHANNEL)
            return run is not None and run.status == "error"

        await wait_until(ended)
        kept = await stored_ids(made)
        again = await made.publish(make_event(CHANNEL, "token", {"content": "a"}), key="t1")
        assert again.id == token.id
        with pytest.raises(RunClosed):
            await made.publish(make_event(CHANNEL, "token", {"content": "b"}), key="t2")
        assert await stored_ids(made) == kept
    finally:
        await runs_.close()
        await made.close()
        await made.broker.close()

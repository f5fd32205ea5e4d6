"""A stage message on Redis is one step: its run check, the append and the run's fold run in the
broker's publish script, atomically across hub processes and in one round trip."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from harness import HubProcess, running_hub, start_hub_process
from redis_support import RedisKeys, RedisServer, unique_prefix
from ssehub.brokers import MemoryBroker
from ssehub.brokers.redis import RedisBroker
from ssehub.channels import Selector
from ssehub.errors import BrokerUnavailable
from ssehub.event import Event, make_event
from ssehub.hub import Hub
from ssehub.runs import MemoryRunStore, RunClosed
from ssehub.runstate.redis import RedisRunStore
from ssehub.settings import Settings

pytestmark = pytest.mark.redis

CHANNEL = "ai_story:project:p1:stage:answer"


class Hubs:
    """Hubs on one Redis, each with its own clients as a hub process has."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.hubs: list[Hub] = []

    def hub(self, broker: RedisBroker | None = None) -> Hub:
        broker = broker or RedisBroker(self.url, prefix=self.prefix)
        hub = Hub(broker, heartbeat_seconds=0, runs=RedisRunStore(self.url, prefix=self.prefix))
        self.hubs.append(hub)
        return hub

    async def close(self) -> None:
        for hub in self.hubs:
            assert hub.runs is not None
            await hub.runs.close()
            await hub.broker.close()


@pytest.fixture
async def hubs(redis_keys: RedisKeys) -> AsyncIterator[Hubs]:
    made = Hubs(redis_keys.url, redis_keys.prefix)
    yield made
    await made.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop(save=False)


def token(content: str, **data: Any) -> Event:
    return make_event(CHANNEL, "token", {"content": content, **data})


async def kept(hub: Hub, channel: str = CHANNEL) -> list[Event]:
    """Every event history keeps of ``channel``."""
    return (await hub.history(Selector.of([channel]), f"{hub.broker.epoch}-0")).events


async def test_a_stage_message_is_one_round_trip(private_redis: RedisServer) -> None:
    hubs = Hubs(private_redis.url, unique_prefix())
    hub = hubs.hub()
    monitor_client = aioredis.Redis(port=private_redis.port, decode_responses=True)
    marker = aioredis.Redis(port=private_redis.port, decode_responses=True)
    try:
        await hub.publish(make_event(CHANNEL, "stage_update", {"status": "running"}))
        await marker.ping()  # connected before the monitor starts
        async with monitor_client.monitor() as monitor:
            await hub.publish(token("a", run_id="r1"), key="k1")  # as the SDK sends it
            await hub.publish(token("b"))  # no run id: stamped with r1
            await hub.publish(token("b"), key="k1")  # a replay
            await marker.echo("end of publishes")
            sent = []
            async with asyncio.timeout(10):
                while True:
                    command = await monitor.next_command()
                    if command["client_type"] == "lua":
                        continue  # run inside the script, not a round trip
                    if command["command"] == "ECHO end of publishes":
                        break
                    sent.append(command["command"].split()[0].lower())
        published = hub.metrics.registry.get_sample_value(
            "ssehub_events_published_total", {"family": "ai_story"}
        )
    finally:
        await monitor_client.aclose()
        await marker.aclose()
        await hubs.close()
    assert sent == ["evalsha"] * 3
    assert published == 3  # the replay is not counted again


async def test_a_message_held_until_its_run_ended_is_refused(hubs: Hubs) -> None:
    # Regression: the run check was its own round trip before the publish, so a message that
    # passed it could be stored after another process ended the run.
    held, release = asyncio.Event(), asyncio.Event()

    class HeldBroker(RedisBroker):
        async def publish(self, event: Event, **options: Any) -> Event:
            held.set()
            await release.wait()
            return await super().publish(event, **options)

    one, two = hubs.hub(), hubs.hub(HeldBroker(hubs.url, prefix=hubs.prefix))
    await one.publish(token("a", run_id="r1"))
    late = asyncio.create_task(two.publish(token("b", run_id="r1")))
    await asyncio.wait_for(held.wait(), 10)
    done = await one.publish(make_event(CHANNEL, "done", {"run_id": "r1"}))
    release.set()
    with pytest.raises(RunClosed):
        await late
    assert (await kept(one))[-1].id == done.id
    run = await one.runs.get(CHANNEL) if one.runs else None
    assert run is not None and (run.status, run.full_text) == ("done", "a")


async def refusals(hub: Hub) -> list[str]:
    """Why ``hub`` refuses a message continuing a run that ended, then one that was replaced."""
    reasons = []
    await hub.publish(token("a", run_id="r1"))
    await hub.publish(make_event(CHANNEL, "done", {"run_id": "r1"}))
    for late in (token("b"), None, token("b", run_id="r1")):
        if late is None:
            await hub.publish(token("c", run_id="r2"))  # a new run replaces r1
            continue
        with pytest.raises(RunClosed) as refused:
            await hub.publish(late)
        reasons.append(str(refused.value))
    return reasons


async def test_a_refusal_says_why_as_the_memory_store_does(hubs: Hubs) -> None:
    # Regression: the script's reason was read from the wrong place of its answer (empty 409).
    expected = await refusals(Hub(MemoryBroker(), heartbeat_seconds=0, runs=MemoryRunStore()))
    assert expected == [
        "the run r1 already ended (done); start a new run first",
        "run r1 already ended: a newer run replaced it",
    ]
    assert await refusals(hubs.hub()) == expected


async def test_concurrent_publishes_on_two_hubs_agree_with_the_run(hubs: Hubs) -> None:
    one, two = hubs.hub(), hubs.hub()
    await one.publish(make_event(CHANNEL, "stage_update", {"status": "running"}))
    accepted: set[str] = set()

    async def publish(hub: Hub, kind: str, data: dict[str, Any], key: str) -> Event:
        # A 503 (a cold pool's connections timing out on a busy machine) is retried with the
        # same key, as a publisher does: answered once stored, whatever the run did since.
        for _ in range(5):
            with contextlib.suppress(BrokerUnavailable):
                return await hub.publish(make_event(CHANNEL, kind, data), key=key)
        return await hub.publish(make_event(CHANNEL, kind, data), key=key)

    async def send(n: int) -> None:
        kind, data = ("done", {}) if n == 60 else ("token", {"content": f"{n} "})
        # Each message twice at once, one per hub, with one Idempotency-Key: stored once.
        results = await asyncio.gather(
            *(publish(hub, kind, data, f"t{n}") for hub in (one, two)), return_exceptions=True
        )
        stored = [r for r in results if isinstance(r, Event)]
        assert all(isinstance(r, Event | RunClosed) for r in results), results
        assert len({e.id for e in stored}) <= 1
        if stored and kind == "token":
            accepted.add(data["content"])

    order = list(range(120))
    random.Random(7).shuffle(order)
    await asyncio.gather(*(send(n) for n in order))
    events = await kept(one)
    kinds = [e.event for e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1  # nothing stored after the end
    tokens = [json.loads(e.data)["content"] for e in events if e.event == "token"]
    assert len(tokens) == len(set(tokens)) and set(tokens) == accepted  # each accepted once
    run = await one.runs.get(CHANNEL) if one.runs else None
    assert run is not None and run.status == "done"
    assert run.full_text == "".join(tokens)  # folded once each, in stored order
    assert {json.loads(e.data)["run_id"] for e in events} == {run.run_id}


@pytest.mark.parametrize("run_id", ['a"b\\c/é\n\x01\x1f\x7f\u2028', "r-1"])
async def test_a_stamped_run_id_is_the_same_text_everywhere(hubs: Hubs, run_id: str) -> None:
    hub = hubs.hub()
    await hub.publish(token("a", run_id=run_id))
    data = {"content": "b", "run_id": None, "n": [1.5, {"x": "é"}]}  # stamped in place
    stored = await hub.publish(make_event(CHANNEL, "token", data), key="k")
    replay = await hub.publish(make_event(CHANNEL, "token", data), key="k")
    history = (await kept(hub))[-1]
    assert stored.data == history.data == replay.data
    assert json.loads(stored.data) == {**data, "run_id": run_id}


async def test_a_run_store_on_another_broker_runs_its_step_around_the_publish(
    redis_keys: RedisKeys,
) -> None:
    runs = RedisRunStore(redis_keys.url, prefix=redis_keys.prefix)
    hub = Hub(MemoryBroker(), heartbeat_seconds=0, runs=runs)
    try:
        first = await hub.publish(token("a"))
        await hub.publish(make_event(CHANNEL, "done", {}))
        with pytest.raises(RunClosed):
            await hub.publish(token("late"))
        run = await runs.get(CHANNEL)
        assert run is not None and run.run_id == json.loads(first.data)["run_id"]
        assert (run.status, run.full_text) == ("done", "a")
    finally:
        await runs.close()


def broker_errors(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith('ssehub_broker_errors_total{operation="publish"}'):
            return float(line.split()[-1])
    return 0.0


async def test_redis_going_away_mid_run_leaves_no_half_applied_message(
    client: httpx.AsyncClient, private_redis: RedisServer
) -> None:
    settings = Settings(_env_file=None, broker_url=private_redis.url)  # type: ignore[call-arg]
    url = f"/api/v1/publish/{CHANNEL}"
    async with running_hub(settings) as hub:
        base = hub.url

        async def send(content: str, key: str) -> int:
            body = {"event": "token", "data": {"content": content, "run_id": "r1"}}
            answer = await client.post(base + url, json=body, headers={"Idempotency-Key": key})
            return answer.status_code

        assert await send("a", "k1") == 200
        private_redis.stop(save=True)  # the state written so far is kept
        assert await send("lost", "k2") == 503
        metrics = (await client.get(f"{base}/metrics")).text
        assert broker_errors(metrics) == 1
        private_redis.start()  # a new incarnation with an empty script cache
        assert await send("b", "k3") == 200
        assert await send("b", "k3") == 200  # a replay: folded once
        events = await kept(hub.hub)
        assert [json.loads(e.data)["content"] for e in events] == ["a", "b"]
        run = await hub.hub.runs.get(CHANNEL) if hub.hub.runs else None
        assert run is not None and run.full_text == "ab"


def start_hubs(tmp_path: Path, env: dict[str, str], count: int) -> list[HubProcess]:
    with ThreadPoolExecutor(count) as pool:  # at once: start-up is mostly imports
        return list(pool.map(lambda _: start_hub_process(tmp_path, env), range(count)))


@pytest.mark.slow
async def test_two_hub_processes_end_a_run_once(
    client: httpx.AsyncClient, redis_keys: RedisKeys, tmp_path: Path
) -> None:
    env = {
        "SSEHUB_BROKER_URL": redis_keys.url,
        "SSEHUB_REDIS_PREFIX": redis_keys.prefix,
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_PUBLISH_RATE_PER_IP": "0",
        "SSEHUB_PUBLISH_RATE_PER_USER": "0",
    }
    processes = await asyncio.to_thread(start_hubs, tmp_path, env, 2)
    try:
        bases = [p.url for p in processes]
        answers: dict[str, int] = {}

        async def send(n: int, kind: str = "token") -> None:
            body = {"event": kind, "data": {"content": f"{n} ", "run_id": "r1"}}
            answer = await client.post(f"{bases[n % 2]}/api/v1/publish/{CHANNEL}", json=body)
            answers[f"{n} "] = answer.status_code

        await send(0)
        await asyncio.gather(*(send(n, "done" if n == 40 else "token") for n in range(1, 80)))
        assert set(answers.values()) <= {200, 409}
        history = (await client.get(f"{bases[1]}/api/v1/channels/{CHANNEL}/events")).json()
        events = history["events"]
        assert events[-1]["event"] == "done"
        stored = [e["data"]["content"] for e in events if e["event"] == "token"]
        assert sorted(stored) == sorted(c for c, s in answers.items() if s == 200 and c != "40 ")
        assert all(s == 409 for c, s in answers.items() if c not in stored and c != "40 ")
    finally:
        for process in processes:
            process.kill()

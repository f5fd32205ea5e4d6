"""``Hub.publish`` is the one door of every publish: run lifecycle, broker, metrics, explicitly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import ssehub
from ssehub import messages
from ssehub.brokers import MemoryBroker, PublishStep
from ssehub.channels import Selector
from ssehub.errors import BrokerUnavailable
from ssehub.event import Event, make_event
from ssehub.hub import Hub
from ssehub.metrics import Metrics
from ssehub.runs import MemoryRuns, RunClosed, publish_event
from ssehub.transport import BrokerTransport

STAGE = messages.stage_channel("p1", "draft")


class DownBroker(MemoryBroker):
    """A memory broker whose every publish and read fails, as a broker that went away."""

    async def publish(
        self,
        event: Event,
        *,
        idempotency_key: str | None = None,
        step: PublishStep | None = None,
    ) -> Event:
        raise BrokerUnavailable("down")

    async def head(self) -> str:
        raise BrokerUnavailable("down")

    async def history(self, selector: Selector, after: str, *, limit: int | None = None) -> object:
        raise BrokerUnavailable("down")

    async def recent(self, selector: Selector, *, limit: int) -> list[Event]:
        raise BrokerUnavailable("down")


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub(MemoryBroker(), heartbeat_seconds=0, runs=MemoryRuns())
    await hub.start()
    yield hub
    await hub.close()


async def test_each_publish_is_counted_once_without_patching_the_broker(hub: Hub) -> None:
    first = await hub.publish(make_event("orders:1", "m", {"n": 1}), key="k")
    replay = await hub.publish(make_event("orders:1", "m", {"n": 1}), key="k")
    await hub.publish(make_event("orders:2", "m", {"n": 2}))
    assert replay.id == first.id
    assert sample(hub.metrics, "ssehub_events_published_total", family="orders") == 2
    assert "publish" not in vars(hub.broker)  # metrics are called, not patched in


async def test_a_retried_token_is_folded_into_its_run_once(hub: Hub) -> None:
    await hub.publish(make_event(STAGE, "stage_update", {"status": "running"}))
    for _ in range(2):  # an SDK retry after a lost answer: same Idempotency-Key
        await hub.publish(make_event(STAGE, "token", {"content": "a"}), key="token-1")
    run = await hub.runs.get(STAGE) if hub.runs else None
    assert run is not None and run.full_text == "a"
    family = STAGE.partition(":")[0]
    assert sample(hub.metrics, "ssehub_events_published_total", family=family) == 2


async def test_broker_failures_are_counted_by_operation() -> None:
    hub = Hub(DownBroker(), heartbeat_seconds=0)
    with pytest.raises(BrokerUnavailable):
        await hub.publish(make_event("orders:1", "m", "x"))
    for read in (
        hub.head(),
        hub.history(Selector.of(["c"]), "x-1"),
        hub.recent(Selector.of(["c"]), limit=1),
    ):
        with pytest.raises(BrokerUnavailable):
            await read
    for operation in ("publish", "head", "history", "recent"):
        assert sample(hub.metrics, "ssehub_broker_errors_total", operation=operation) == 1
    assert sample(hub.metrics, "ssehub_events_published_total", family="orders") == 0


async def test_the_door_runs_the_run_lifecycle(hub: Hub) -> None:
    started = await hub.publish(make_event(STAGE, "stage_update", {"status": "running"}))
    token = await hub.publish(make_event(STAGE, "token", {"content": "a"}))
    run = await hub.runs.get(STAGE) if hub.runs else None
    assert run is not None and run.full_text == "a"
    assert f'"run_id":"{run.run_id}"' in token.data  # stamped with its run's id
    assert started.seq < token.seq
    await hub.publish(make_event(STAGE, "done", {"full_text": "a"}))
    with pytest.raises(RunClosed):
        await hub.publish(make_event(STAGE, "token", {"content": "late"}))


async def test_publish_event_is_the_door_under_its_former_name(hub: Hub) -> None:
    await hub.publish(make_event(STAGE, "done", {"full_text": ""}))
    with pytest.raises(RunClosed):
        await publish_event(hub, make_event(STAGE, "token", {"content": "late"}))


async def test_an_in_process_transport_made_before_start_finds_the_hubs_loop() -> None:
    hub = Hub(MemoryBroker(), heartbeat_seconds=0)
    transport = BrokerTransport(hub)
    assert transport.loop is None
    await hub.start()
    try:
        assert transport.loop is asyncio.get_running_loop()
        await transport.asend("orders:1", "m", {"n": 1})
        assert sample(hub.metrics, "ssehub_events_published_total", family="orders") == 1
    finally:
        await hub.close()


def test_only_the_hub_hands_events_to_the_broker() -> None:
    package = Path(ssehub.__file__).resolve().parent
    callers = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "broker.publish(" in path.read_text() and "brokers" not in path.parts
    ]
    assert callers == ["hub.py"]

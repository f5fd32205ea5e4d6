"""The three backends of a hub, chosen by one reading of ``broker_url``: the broker, the run
state and the cluster state (memory for ``memory://``, Redis for ``redis://``)."""

from __future__ import annotations

from dataclasses import dataclass

from .brokers import Broker, memory_broker
from .brokers.redis import RedisBroker
from .clusterstate import ClusterState, MemoryClusterState
from .clusterstate.redis import RedisClusterState
from .runstate import MemoryRunStore, RunStore, RunTimes
from .runstate.redis import RedisRunStore
from .settings import Settings


@dataclass(frozen=True, slots=True)
class Backends:
    """What the hub's state lives in; one backplane for all three."""

    broker: Broker
    runs: RunStore
    cluster: ClusterState


def create_backends(
    settings: Settings, *, broker: Broker | None = None, cluster: ClusterState | None = None
) -> Backends:
    """The backends ``settings.broker_url`` names; ``broker``/``cluster`` replace theirs."""
    times = RunTimes(
        publisher_timeout=settings.publisher_timeout_seconds,
        token_ttl=settings.token_history_seconds,
        outcome_ttl=settings.outcome_history_seconds,
    )
    if settings.backplane == "redis":
        url, prefix = settings.broker_url, settings.redis_prefix
        return Backends(
            broker or RedisBroker.from_settings(settings),
            RedisRunStore(url, prefix=prefix, times=times),
            cluster or RedisClusterState(url, prefix=prefix),
        )
    return Backends(
        broker or memory_broker(settings),
        MemoryRunStore(times),
        cluster or MemoryClusterState(),
    )

"""Former home of the Redis cluster state, now :mod:`ssehub.clusterstate.redis`."""

from __future__ import annotations

from .clusterstate.redis import (
    ACQUIRE,
    KEEPALIVE_CHUNK,
    LEASE_SECONDS,
    NODE_TTL_SECONDS,
    TOKENS,
    RedisClusterState,
)
from .settings import REDIS_SCHEMES

__all__ = [
    "ACQUIRE",
    "KEEPALIVE_CHUNK",
    "LEASE_SECONDS",
    "NODE_TTL_SECONDS",
    "REDIS_SCHEMES",
    "TOKENS",
    "RedisClusterState",
]

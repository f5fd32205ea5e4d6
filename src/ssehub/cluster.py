"""Former home of the cluster state, now :mod:`ssehub.clusterstate` (its names import from here)."""

from __future__ import annotations

from .clusterstate import (
    GLOBAL_SCOPE,
    MAX_BUCKETS,
    ClientRecord,
    ClusterState,
    MemoryClusterState,
    user_scope,
)

__all__ = [
    "GLOBAL_SCOPE",
    "MAX_BUCKETS",
    "ClientRecord",
    "ClusterState",
    "MemoryClusterState",
    "user_scope",
]

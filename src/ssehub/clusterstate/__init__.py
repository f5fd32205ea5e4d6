"""Cluster state behind the ClusterState protocol: in this process or in Redis."""

from __future__ import annotations

from .base import GLOBAL_SCOPE, Bucket, ClientRecord, ClusterState, user_scope
from .memory import MAX_BUCKETS, MemoryClusterState

__all__ = [
    "GLOBAL_SCOPE",
    "MAX_BUCKETS",
    "Bucket",
    "ClientRecord",
    "ClusterState",
    "MemoryClusterState",
    "user_scope",
]

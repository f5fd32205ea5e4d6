"""Former home of the Redis run store, now :mod:`ssehub.runstate.redis`."""

from __future__ import annotations

from .runstate.redis import OBSERVE, RedisRunStore

RedisRuns = RedisRunStore  # its former name

__all__ = ["OBSERVE", "RedisRunStore", "RedisRuns"]

"""Where the Redis broker keeps things under its prefix, and the errors that mean Redis is away."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from ...channels import is_pattern
from ...errors import BrokerUnavailable

FAULTS = (RedisError, OSError, asyncio.TimeoutError)

_GLOB_ESCAPES = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def glob_escape(text: str) -> str:
    """Escape Redis glob characters so ``text`` matches only itself."""
    return text.translate(_GLOB_ESCAPES)


def unreachable() -> BrokerUnavailable:
    """The error a request gets while Redis does not answer."""
    return BrokerUnavailable("the Redis broker is unreachable; retry")


class Keys:
    """The broker's key and Pub/Sub names (the table in docs/redis.md)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.epoch = prefix + "epoch"
        self.seq = prefix + "seq"
        self.incarnation = prefix + "incarnation"  # run, restored, base: see CHECK_IN
        self.trimmed = prefix + "trimmed"  # channel → highest seq trimmed from its stream
        self.index = prefix + "channels"  # channel → expiry of its newest event
        self.names = prefix + "names"  # the same channels by name (ZRANGEBYLEX)
        self.newest = prefix + "newest"  # channel → seq of its newest event
        self.forgotten = prefix + "forgotten"  # highest seq of a channel forgotten whole
        self.live_prefix = prefix + "e:"
        self.control = prefix + "ctl"

    def stream(self, channel: str) -> str:
        """The stream holding ``channel``'s kept events."""
        return f"{self.prefix}s:{channel}"

    def idempotency(self, key: str | None) -> str:
        """Where an Idempotency-Key's first publish is remembered (a dummy key without one)."""
        return self.prefix + "idem:" + key if key else self.prefix + "idem"

    def live(self, name: str) -> str:
        """The Pub/Sub channel (or glob pattern) carrying ``name``'s live events."""
        if is_pattern(name):
            return glob_escape(self.live_prefix) + name
        return self.live_prefix + name

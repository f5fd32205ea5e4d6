"""The Redis backplane: a Stream per channel for history, Pub/Sub for live fan-out.

One Lua script per publish takes the next number of one global counter, appends the event to
its channel's stream with the entry id ``<seq>-0``, trims the stream to the configured size and
age (remembering the highest trimmed seq for gap detection), records the Idempotency-Key, and
PUBLISHes the event to ``<prefix>e:<channel>``. Each process has one reader: a Pub/Sub
connection SUBSCRIBEd to the channels and PSUBSCRIBEd to the patterns that have local
subscribers. Scripts run one at a time, so Pub/Sub order is seq order; after a lost connection
the reader re-subscribes and catches up from the streams. See docs/redis.md.

Modules: ``scripts`` (the Lua), ``keys`` (names), ``ids`` (epoch and check-in), ``history``
(reads), ``reader`` (the Pub/Sub reader with reconnect), ``broker`` (``RedisBroker``).
"""

from __future__ import annotations

from .broker import RedisBroker
from .history import HistoryReader
from .ids import EventIds
from .keys import FAULTS, Keys, glob_escape
from .reader import LiveReader

__all__ = [
    "FAULTS",
    "EventIds",
    "HistoryReader",
    "Keys",
    "LiveReader",
    "RedisBroker",
    "glob_escape",
]

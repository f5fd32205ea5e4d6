"""The DurableStore protocol: what the routes need from the storage of Durable Streams.

A stream is a row of metadata and a sequence of appends numbered 1, 2, 3… (a fork continues its
source's numbering after the fork point). Every append, with its producer state and closure, is
one transaction, so an acknowledged append is stored exactly once and an unacknowledged one not
at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from .producers import Decision, Producer

# (stream id, last seq of that stream's data in the chain or None for the stream's own tail)
Segment = tuple[int, int | None]


@dataclass(slots=True)
class StreamMeta:
    """The stored configuration and state of one stream."""

    id: int
    path: str
    content_type: str
    tail_seq: int
    closed: bool = False
    ttl_seconds: int | None = None
    expires_at: str | None = None
    expires_at_ts: float | None = None
    last_access: float = 0.0
    owner: str | None = None
    closed_by: str | None = None
    last_stream_seq: str | None = None
    forked_from: str | None = None
    fork_seq: int | None = None
    fork_sub_offset: int = 0
    segments: list[Segment] = field(default_factory=list)
    ref_count: int = 0
    soft_deleted: bool = False

    def expired(self, now: float | None = None) -> bool:
        """True past the absolute expiry or the sliding TTL window."""
        now = time.time() if now is None else now
        if self.expires_at_ts is not None and now >= self.expires_at_ts:
            return True
        return self.ttl_seconds is not None and now >= self.last_access + self.ttl_seconds


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A PUT: a new stream, or a fork of ``forked_from`` at ``fork_seq`` (+ ``fork_sub_offset``)."""

    path: str
    content_type: str | None
    ttl_seconds: int | None = None
    expires_at: str | None = None
    expires_at_ts: float | None = None
    closed: bool = False
    body: bytes = b""
    owner: str | None = None
    forked_from: str | None = None
    fork_seq: int | None = None
    fork_sub_offset: int = 0


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """A POST: ``data`` already framed for the stream's content type (empty: close only)."""

    path: str
    data: bytes
    content_type: str | None = None
    stream_seq: str | None = None
    producer: Producer | None = None
    close: bool = False


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of an append, with what the response headers need."""

    tail_seq: int
    closed: bool
    appended: bool  # False: a duplicate, or a close of an already closed stream
    decision: Decision | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One stored append: the offset after it is ``seq``."""

    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Stored appends after a position, with the stream's state when they were read."""

    chunks: list[Chunk]
    tail_seq: int
    closed: bool

    @property
    def next_seq(self) -> int | None:
        """The position after the last chunk returned (None when none was)."""
        return self.chunks[-1].seq if self.chunks else None

    def next_position(self, position: int) -> int:
        """Where a read from ``position`` goes on: after the last chunk, else no further than the
        tail."""
        return self.chunks[-1].seq if self.chunks else min(position, self.tail_seq)


class DurableStore(Protocol):
    """Storage of Durable Streams; SQLite and PostgreSQL implement it through SQLAlchemy."""

    async def start(self) -> None:
        """Connect (lazily) and create the tables when missing."""

    async def close(self) -> None:
        """Release connections."""

    async def create(self, request: CreateRequest) -> tuple[StreamMeta, bool]:
        """Create a stream (True) or confirm an identical one (False); 409/404/400 otherwise."""

    async def get(self, path: str) -> StreamMeta | None:
        """A live or soft-deleted stream; None when absent or expired."""

    async def append(self, request: AppendRequest) -> AppendResult:
        """Append and/or close atomically with the producer's state; raises the protocol errors."""

    async def read(self, meta: StreamMeta, after_seq: int, *, max_bytes: int) -> ReadResult:
        """Appends after ``after_seq`` through the fork chain, at least one, about ``max_bytes``."""

    async def touch(self, meta: StreamMeta) -> None:
        """Restart the sliding TTL window of a stream that has one."""

    async def delete(self, path: str) -> None:
        """Delete (or soft-delete while forks need its data); 404/410 when it cannot."""

    async def count_owned(self, owner: str) -> int:
        """Streams currently owned by ``owner`` (for the per-user limit)."""

    async def sweep(self, *, limit: int) -> int:
        """Delete up to ``limit`` expired streams; returns how many."""

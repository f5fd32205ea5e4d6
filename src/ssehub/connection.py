"""One open stream on this process: its selector, its bounded outgoing buffer and its counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .channels import Selector
from .event import Event

# Why a stream ended, as reported in stats and logs.
CLIENT_GONE = "client_gone"
SLOW_CONSUMER = "slow_consumer"
SHUTDOWN = "shutdown"
KICKED = "disconnected_by_admin"
IDLE = "idle_timeout"
HISTORY_GAP = "history_gap"

BURST_FACTOR = 10


class Connection:
    """A subscriber: the hub pushes pre-encoded frames, the stream's writer drains them.

    Pushing never blocks. Frames wait in a buffer of shared ``bytes`` (one reference each). A
    connection whose writer is stuck in a write while ``max_buffer`` frames wait is closed as a
    slow consumer and resumes from history when it reconnects. A burst that arrives while the
    writer is idle is taken whole at its next step, up to ``BURST_FACTOR`` times the buffer.
    While a resume is replayed, live events wait in ``pending`` and are flushed after it.
    """

    __slots__ = (
        "_abort",
        "_waiter",
        "buffer",
        "bytes_sent",
        "channel_names",
        "client_id",
        "close_reason",
        "closed",
        "connected_at",
        "info",
        "last_write",
        "max_buffer",
        "messages_sent",
        "oldest_at",
        "pending",
        "selector",
        "types",
        "user_id",
    )

    def __init__(
        self,
        *,
        client_id: str,
        selector: Selector,
        types: frozenset[str] | None = None,
        max_buffer: int = 100,
        user_id: str | None = None,
        info: dict[str, str] | None = None,
        holding: bool = False,
    ) -> None:
        self.client_id = client_id
        self.selector = selector
        self.channel_names = tuple(selector)
        self.types = types
        self.max_buffer = max_buffer
        self.user_id = user_id
        self.info = info or {}
        self.buffer: list[bytes] = []
        self.pending: list[Event] | None = [] if holding else None
        self.closed = False
        self.close_reason = ""
        self.connected_at = time.time()
        self.last_write = time.monotonic()
        self.messages_sent = 0
        self.bytes_sent = 0
        self.oldest_at = 0.0  # publish time of the first live event queued since the last write
        self._waiter: asyncio.Future[None] | None = None
        self._abort: Callable[[], None] | None = None

    def wants(self, event: Event) -> bool:
        """True when this connection's type filter lets ``event`` through."""
        return self.types is None or event.type in self.types

    def push(self, event: Event) -> None:
        """Queue one event's frame (or hold it while a resume is replayed)."""
        if self.closed or (self.types is not None and event.type not in self.types):
            return
        if self.pending is not None:
            if len(self.pending) >= self.max_buffer * BURST_FACTOR:
                self.close(SLOW_CONSUMER)
            else:
                self.pending.append(event)
            return
        queued = len(self.buffer)
        if queued >= self.max_buffer and (
            self._waiter is None or queued >= self.max_buffer * BURST_FACTOR
        ):
            self.close(SLOW_CONSUMER)
            return
        if not queued:
            self.oldest_at = event.published_at
        self.buffer.append(event.frame)
        self.messages_sent += 1
        self._wake()

    def push_raw(self, frame: bytes) -> None:
        """Queue a frame outside the event sequence (heartbeat, notice); dropped when busy."""
        if not self.closed and not self.buffer and self.pending is None:
            self.buffer.append(frame)
            self._wake()

    def go_live(self, replayed_upto: int) -> None:
        """End a resume: queue held events newer than the replay, then receive live."""
        held, self.pending = self.pending or [], None
        if self.closed:
            return
        for event in held:
            if event.seq > replayed_upto:
                self.buffer.append(event.frame)
                self.messages_sent += 1

    async def next_chunk(self) -> bytes | None:
        """Wait for queued frames and return them joined; None once the connection is closed."""
        while not self.buffer:
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = b"".join(self.buffer) if len(self.buffer) > 1 else self.buffer[0]
        self.buffer.clear()
        self.bytes_sent += len(chunk)
        return chunk

    def wrote(self) -> None:
        """Record a successful write (for the idle-client timeout)."""
        self.last_write = time.monotonic()

    def on_abort(self, abort: Callable[[], None]) -> None:
        """Register how to tear the transport down when the writer is stuck (slow consumer)."""
        self._abort = abort

    def close(self, reason: str) -> None:
        """End the stream; a slow consumer's unsent frames are dropped."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if reason in (SLOW_CONSUMER, IDLE):
            self.buffer.clear()
            self.pending = None
            if self._abort is not None:
                self._abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

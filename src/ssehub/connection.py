"""One open stream on this process: its selector, its bounded outgoing buffer and its counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

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
# The buffer of a connection with nothing queued. One queued frame is the buffer itself (the
# shared bytes of a broadcast: no list per stream and event); a list only from the second.
NOTHING = b""


class Writer(Protocol):
    """What writes a Connection's frames to its client: a coroutine or the server protocol."""

    @property
    def waiting(self) -> bool:
        """True while idle, ready for the next chunk; False while stuck in a write."""

    def wake(self) -> None:
        """Frames were queued or the connection closed: take a chunk soon."""

    def abort(self) -> None:
        """Tear the transport down at once (a slow or idle client)."""


class AwaitingWriter:
    """The writer of a coroutine that awaits each chunk (:meth:`Connection.next_chunk`)."""

    __slots__ = ("_future", "_on_abort")

    def __init__(self, on_abort: Callable[[], object] | None = None) -> None:
        self._future: asyncio.Future[None] | None = None
        self._on_abort = on_abort

    @property
    def waiting(self) -> bool:
        return self._future is not None

    async def wait(self) -> None:
        """Return once woken."""
        self._future = asyncio.get_running_loop().create_future()
        try:
            await self._future
        finally:
            self._future = None

    def wake(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def abort(self) -> None:
        if self._on_abort is not None:
            self._on_abort()


class Connection:
    """A subscriber: the hub pushes pre-encoded frames, the stream's writer takes them as chunks.

    Pushing never blocks. Frames wait in a buffer of shared ``bytes`` (one reference each) and
    wake the attached :class:`Writer`, which calls :meth:`take_chunk`. A connection whose writer
    is stuck in a write while ``max_buffer`` frames wait is closed as a slow consumer and
    resumes from history when it reconnects. A burst that arrives while the writer is idle is
    taken whole at its next step, up to ``BURST_FACTOR`` times the buffer. While a resume is
    replayed, live events wait in ``pending`` and are flushed after it.
    """

    __slots__ = (
        "buffer",
        "bytes_sent",
        "client_id",
        "close_reason",
        "connected_at",
        "ip",
        "last_write",
        "max_buffer",
        "messages_sent",
        "oldest_at",
        "pending",
        "selector",
        "types",
        "user_agent",
        "user_id",
        "writer",
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
    ) -> None:
        self.client_id = client_id
        self.selector = selector
        self.types = types
        self.max_buffer = max_buffer
        self.user_id = user_id
        info = info or {}
        self.ip = info.get("ip", "")
        self.user_agent = info.get("user_agent", "")
        self.buffer: bytes | list[bytes] = NOTHING
        self.pending: list[Event] | None = None
        self.close_reason = ""  # why it ended; empty while open
        self.connected_at = time.time()
        self.last_write = time.monotonic()
        self.messages_sent = 0
        self.bytes_sent = 0
        self.oldest_at = 0.0  # publish time of the first live event queued since the last chunk
        self.writer: Writer | None = None

    @property
    def closed(self) -> bool:
        """True once the stream ended (``close_reason`` says why)."""
        return bool(self.close_reason)

    @property
    def info(self) -> dict[str, str]:
        """The client's address and user agent (kept as two fields: a dict per stream costs)."""
        return {"ip": self.ip, "user_agent": self.user_agent}

    @property
    def channel_names(self) -> tuple[str, ...]:
        """The channels and patterns this connection listens to."""
        return self.selector.names

    def wants(self, event: Event) -> bool:
        """True when this connection's type filter lets ``event`` through."""
        return self.types is None or event.type in self.types

    # -- the writer seam -------------------------------------------------------------------------

    def attach(self, writer: Writer | None) -> None:
        """Hand the queued and future frames to ``writer`` (None: the writer is gone)."""
        self.writer = writer
        if writer is not None and (self.buffer or self.close_reason):
            writer.wake()

    def take_chunk(self) -> bytes | None:
        """The queued frames joined into one chunk (counted as sent), None when none wait.

        Read ``oldest_at`` first for the chunk's latency: taking a chunk starts a new window.
        """
        frames = self.take()
        if not frames:
            return None
        chunk = b"".join(frames) if isinstance(frames, list) else frames
        self.bytes_sent += len(chunk)
        return chunk

    def take(self) -> bytes | list[bytes]:
        """The queued frames as queued (one frame, or a list in order; NOTHING when none wait).

        For a writer that joins them itself, once for every stream with the same frames; it
        counts ``bytes_sent``. Read ``oldest_at`` first: taking starts a new latency window.
        """
        frames = self.buffer
        if frames:
            self.buffer = NOTHING
            self.oldest_at = 0.0
        return frames

    async def next_chunk(self) -> bytes | None:
        """Wait for queued frames and return them as one chunk; None once closed and drained.

        The caller becomes the connection's writer (an :class:`AwaitingWriter` unless one is
        attached already).
        """
        writer = self.writer
        if not isinstance(writer, AwaitingWriter):
            writer = AwaitingWriter()
            self.writer = writer
        while (chunk := self.take_chunk()) is None:
            if self.close_reason:
                return None
            await writer.wait()
        return chunk

    def wrote(self, now: float | None = None) -> None:
        """Record a successful write at ``now`` (monotonic; for the idle-client timeout)."""
        self.last_write = time.monotonic() if now is None else now

    # -- the hub's side --------------------------------------------------------------------------

    def push(self, event: Event) -> None:
        """Queue one event's frame (or hold it while a resume is replayed)."""
        if self.close_reason or (self.types is not None and event.type not in self.types):
            return
        if self.pending is not None:
            if len(self.pending) >= self.max_buffer * BURST_FACTOR:
                self.close(SLOW_CONSUMER)
            else:
                self.pending.append(event)
            return
        buffer = self.buffer
        writer = self.writer
        if buffer:
            queued = len(buffer) if isinstance(buffer, list) else 1
            if queued >= self.max_buffer and (
                writer is None or not writer.waiting or queued >= self.max_buffer * BURST_FACTOR
            ):
                self.close(SLOW_CONSUMER)
                return
            if isinstance(buffer, list):
                buffer.append(event.frame)
            else:
                self.buffer = [buffer, event.frame]
        elif self.max_buffer > 0:
            # One frame is the buffer itself: no list per push. The frame is encoded by the
            # first subscriber's push; the slot read spares every other one the property call.
            self.buffer = event._frame or event.frame
            self.oldest_at = event.published_at
        else:  # a buffer of no frames holds nothing, not even a burst
            self.close(SLOW_CONSUMER)
            return
        self.messages_sent += 1
        if writer is not None:
            writer.wake()

    def push_raw(self, frame: bytes) -> None:
        """Queue a frame outside the event sequence (heartbeat, notice); dropped when busy."""
        if not self.close_reason and not self.buffer and self.pending is None:
            self._append(frame)
            if self.writer is not None:
                self.writer.wake()

    def hold(self) -> None:
        """Hold live events until :meth:`go_live` (while the opening frames are read)."""
        self.pending = []

    def queue(self, frame: bytes, *, message: bool = False) -> None:
        """Queue an opening frame (``connected``, ``reset``, a snapshot; a replayed ``message``)."""
        self._append(frame)
        if message:
            self.messages_sent += 1

    def go_live(self, replayed_upto: int) -> None:
        """End a resume: queue held events newer than the replay, then receive live."""
        held, self.pending = self.pending or [], None
        if self.closed:
            return
        for event in held:
            if event.seq > replayed_upto:
                self._append(event.frame)
                self.messages_sent += 1

    @property
    def queued(self) -> list[bytes]:
        """The frames waiting to be taken, in order (a copy)."""
        buffer = self.buffer
        return list(buffer) if isinstance(buffer, list) else [buffer] if buffer else []

    def _append(self, frame: bytes) -> None:
        buffer = self.buffer
        if isinstance(buffer, list):
            buffer.append(frame)
        else:
            self.buffer = [buffer, frame] if buffer else frame

    def close(self, reason: str) -> None:
        """End the stream; a slow or idle consumer's unsent frames are dropped."""
        if self.close_reason:
            return
        self.close_reason = reason or CLIENT_GONE  # never empty: an empty reason means open
        writer = self.writer
        if reason in (SLOW_CONSUMER, IDLE):
            self.buffer = NOTHING
            self.pending = None
            if writer is not None:
                writer.abort()
        if writer is not None:
            writer.wake()

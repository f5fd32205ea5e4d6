"""The direct stream path: an SSE stream written from the hub's dispatch, with no task per stream.

``DirectStreamProtocol`` is uvicorn's httptools protocol (with the read limits of
:mod:`ssehub.httpguard`) plus one extension in every request's
scope. The stream routes run as usual (auth, admission, ``Hub.open``) and the response head goes
out through the middleware; then ``EventStreamResponse`` hands the opened Connection to
:meth:`DirectStreamProtocol.adopt`, the ASGI task ends and the protocol writes the Connection's
frames straight to its transport. A push only marks the stream dirty; one callback per loop
turn writes every dirty stream's queued frames in one chunk, so a burst of events costs one
write per stream and the chunk of a broadcast is framed once. When the transport's write
buffer passes its high-water mark the stream counts as stuck, and the Connection's
slow-consumer policy closes it as on the ASGI path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .connection import CLIENT_GONE, SHUTDOWN, Connection
from .httpguard import GuardedProtocol, ReadLimits
from .settings import Settings
from .stream import EXTENSION

log = logging.getLogger("ssehub.fastpath")

END = b"0\r\n\r\n"


def http_protocol(settings: Settings) -> Callable[..., asyncio.Protocol]:
    """The uvicorn ``http`` setting for ``settings``: the direct path or guarded httptools.

    A partial of a module-level class, so ``--workers N`` can hand it to its processes.
    """
    protocol = DirectStreamProtocol if settings.fast_streams else GuardedProtocol
    return functools.partial(protocol, limits=ReadLimits.from_settings(settings))


class _Flusher:
    """Writes the queued frames of every dirty stream once per loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[DirectStreamProtocol] = []

    def mark(self, stream: DirectStreamProtocol) -> None:
        if not self.dirty:
            self.loop.call_soon(self.flush)
        self.dirty.append(stream)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        framed: dict[bytes, bytes] = {}  # a broadcast chunk is framed once for all streams
        # Metrics get one update per app and turn (sum of bytes, oldest event), not per stream.
        written: dict[Any, list[float]] = {}
        for stream in dirty:
            stream.dirty = False
            try:
                size, oldest = stream.flush(framed)
            except Exception:  # one broken stream must not stop the flush of the others
                log.exception("writing a direct stream failed; aborting it")
                stream.transport.abort()
                continue
            if size and stream.metrics is not None:
                seen = written.get(stream.metrics)
                if seen is None:
                    written[stream.metrics] = [size, oldest]
                else:
                    seen[0] += size
                    if oldest and (not seen[1] or oldest < seen[1]):
                        seen[1] = oldest
        for metrics, (size, oldest) in written.items():
            metrics.wrote(int(size), oldest)


_flushers: dict[asyncio.AbstractEventLoop, _Flusher] = {}


def _flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        if len(_flushers) > 16:  # loops of finished test servers
            _flushers.clear()
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


class DirectStreamProtocol(GuardedProtocol):
    """uvicorn's HTTP protocol that can take over a started SSE stream (see module doc)."""

    # Slots: uvicorn's attributes fill the instance dict; one more would double its size.
    __slots__ = ("closer", "conn", "dirty", "metrics", "paused")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn: Connection | None = None
        self.closer: Callable[[], Awaitable[None]] | None = None
        self.metrics: Any = None
        self.dirty = False
        self.paused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {EXTENSION: {"adopt": self.adopt}}

    def adopt(
        self,
        conn: Connection,
        closer: Callable[[], Awaitable[None]],
        metrics: Any = None,
    ) -> bool:
        """Take over the current response, head already sent, as ``conn``'s stream.

        False if it cannot (then the ASGI task keeps writing it).
        """
        cycle = self.cycle
        if (
            cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
            or self.pipeline
            or self.transport.is_closing()
        ):
            return False
        # The ASGI task ends without sending more: uvicorn must see a finished response.
        cycle.response_complete = True
        self.cycle = None  # type: ignore[assignment]
        # Request state a stream never needs again (it is most of an idle stream's memory).
        self.scope = self.headers = self.parser = self.flow = self.pipeline = None  # type: ignore[assignment]
        self.conn, self.closer, self.metrics = conn, closer, metrics
        conn.on_abort(self.transport.abort)
        # The Connection wakes its writer through ``_waiter``; this protocol stands in for it.
        conn._waiter = self  # type: ignore[assignment]
        self.flush({})  # what hub.open queued
        return True

    # -- the writer the Connection wakes (future-like: ``done`` and ``set_result``) -------------

    def done(self) -> bool:
        return False

    def set_result(self, _: object) -> None:
        if not self.dirty:
            self.dirty = True
            _flusher(self.loop).mark(self)

    def flush(self, framed: dict[bytes, bytes]) -> tuple[int, float]:
        """Write what the Connection queued as one chunk, finish once it is closed.

        Returns the bytes written and the publish time of the oldest live event among them.
        """
        conn = self.conn
        # A transport already closed (stream ended, client gone) before connection_lost ran:
        # uvloop raises on write, which would abort the flush of every other dirty stream.
        if conn is None or self.paused or self.transport.is_closing():
            return 0, 0.0
        buffer = conn.buffer
        size, oldest = 0, 0.0
        if buffer:
            chunk = b"".join(buffer) if len(buffer) > 1 else buffer[0]
            buffer.clear()
            conn.bytes_sent += len(chunk)
            data = framed.get(chunk)
            if data is None:
                data = framed[chunk] = b"%x\r\n%b\r\n" % (len(chunk), chunk)
            size, oldest, conn.oldest_at = len(chunk), conn.oldest_at, 0.0
            self.transport.write(data)
            conn.wrote()
        if conn.closed and not self.transport.is_closing():
            self.transport.write(END)
            self.transport.close()
        return size, oldest

    # -- transport events ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.conn is None:
            super().data_received(data)
        # A client sends nothing more on a stream; whatever it sends is ignored.

    def pause_writing(self) -> None:
        if self.conn is None:
            super().pause_writing()
            return
        # Stuck in a write: from now the Connection's buffer fills and its policy applies.
        self.paused = True
        self.conn._waiter = None

    def resume_writing(self) -> None:
        if self.conn is None:
            super().resume_writing()
            return
        self.paused = False
        self.conn._waiter = self  # type: ignore[assignment]
        self.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        conn, closer = self.conn, self.closer
        if conn is None or closer is None:
            return
        self.closer = None
        conn._waiter = None
        conn.close(CLIENT_GONE)
        task = self.loop.create_task(_close(closer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def shutdown(self) -> None:
        if self.conn is None:
            super().shutdown()
        else:
            self.conn.close(SHUTDOWN)
            if self.paused:  # a stuck client would hold the shutdown until its grace ends
                self.transport.abort()


async def _close(closer: Callable[[], Awaitable[None]]) -> None:
    try:
        await closer()
    except Exception:
        log.exception("closing a direct stream failed")

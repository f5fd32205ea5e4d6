"""The direct stream path: an SSE stream written from the hub's dispatch, with no task per stream.

``DirectStreamProtocol`` is uvicorn's httptools protocol (with the read limits of
:mod:`ssehub.httpguard`) plus one extension in every request's scope. The stream routes run as
usual (auth, admission, ``Hub.open``) and the response head goes out through the middleware;
then ``EventStreamResponse`` hands the opened Connection to :meth:`DirectStreamProtocol.adopt`,
the ASGI task ends and a small :class:`DirectStream` takes the transport over as its protocol
and as the Connection's writer (the request's protocol object and its state are freed). A push
only marks the stream dirty; one callback per loop turn writes every dirty stream's queued
frames in one chunk, so a burst of events costs one write per stream and the chunk of a
broadcast is framed once. When the transport's write buffer passes its high-water mark the
stream counts as stuck, and the Connection's slow-consumer policy closes it as on the ASGI path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.utils import is_ssl

from .connection import CLIENT_GONE, NOTHING, SHUTDOWN, Connection
from .httpguard import ReadLimits
from .settings import Settings
from .stream import EXTENSION
from .wirepublish import WireProtocol

if TYPE_CHECKING:
    from uvicorn.server import ServerState

    from .metrics import Metrics

log = logging.getLogger("ssehub.fastpath")

END = b"0\r\n\r\n"

Closer = Callable[[], Awaitable[None]]


def http_protocol(settings: Settings) -> Callable[..., asyncio.Protocol]:
    """The uvicorn ``http`` setting for ``settings``: the direct stream path or not, both with
    the read limits and the wire publish (on when the app's ``fast_publish`` says so).

    A partial of a module-level class, so ``--workers N`` can hand it to its processes.
    """
    protocol = DirectStreamProtocol if settings.fast_streams else WireProtocol
    return functools.partial(protocol, limits=ReadLimits.from_settings(settings))


class _Flusher:
    """Writes the queued frames of every dirty stream of one server and app once per loop turn.

    Streams with the same frames queued (a broadcast, or a burst to every subscriber) share one
    chunk: joined and framed once, the same ``bytes`` written to each.
    """

    __slots__ = ("dirty", "loop", "metrics", "state")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, metrics: Metrics | None, state: ServerState
    ) -> None:
        self.loop = loop
        self.metrics = metrics
        self.state = state  # uvicorn's: its connections and tasks
        self.dirty: list[DirectStream] = []

    def mark(self, stream: DirectStream) -> None:
        if not self.dirty:
            self.loop.call_soon(self.flush)
        self.dirty.append(stream)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        self.write(dirty)

    def write(self, streams: list[DirectStream]) -> None:
        """Write what each stream's Connection queued as one chunk; finish the closed ones."""
        now = time.monotonic()
        total = 0
        oldest = 0.0  # publish time of the oldest live event written, for the latency metric
        last: bytes | list[bytes] = NOTHING  # the frames of the chunk below
        data = b""
        size = 0
        for stream in streams:
            stream.dirty = False
            transport = stream.transport
            # A transport already closed (stream ended, client gone) before connection_lost
            # ran: uvloop raises on write, which would abort the flush of every other stream.
            if stream.paused or transport.is_closing():
                continue
            conn = stream.conn
            try:
                # Connection.take inline: a call per stream was a sixth of the flush's own work.
                frames = conn.buffer
                if frames:
                    at = conn.oldest_at
                    conn.buffer = NOTHING
                    conn.oldest_at = 0.0
                    if frames is not last and frames != last:
                        chunk = b"".join(frames) if isinstance(frames, list) else frames
                        size = len(chunk)
                        data = b"%x\r\n%b\r\n" % (size, chunk)
                        last = frames
                    transport.write(data)
                    conn.bytes_sent += size
                    conn.last_write = now
                    total += size
                    if at and (not oldest or at < oldest):
                        oldest = at
                if conn.close_reason:
                    transport.write(END)
                    transport.close()
            except Exception:  # one broken stream must not stop the flush of the others
                log.exception("writing a direct stream failed; aborting it")
                transport.abort()
        if total and self.metrics is not None:  # one update per turn, not per stream
            self.metrics.wrote(total, oldest)


_flushers: dict[tuple[asyncio.AbstractEventLoop, Metrics | None, ServerState], _Flusher] = {}


def _flusher(
    loop: asyncio.AbstractEventLoop, metrics: Metrics | None, state: ServerState
) -> _Flusher:
    key = (loop, metrics, state)
    flusher = _flushers.get(key)
    if flusher is None:
        if len(_flushers) > 16:  # loops and apps of finished test servers
            _flushers.clear()
        flusher = _flushers[key] = _Flusher(loop, metrics, state)
    return flusher


def _ignore(data: bytes) -> None:
    """What a stream does with bytes its client sends."""


class DirectStream(asyncio.Protocol):
    """An adopted stream: the transport's protocol and its Connection's :class:`Writer`."""

    # What every stream of a server and app shares (metrics, uvicorn's state) is its flusher's.
    __slots__ = ("closer", "conn", "dirty", "flusher", "paused", "transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        conn: Connection,
        closer: Closer,
        metrics: Metrics | None,
        state: ServerState,
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.closer: Closer | None = closer  # None once run
        self.flusher = _flusher(asyncio.get_running_loop(), metrics, state)
        self.dirty = False
        self.paused = False

    # -- the Writer the Connection wakes ---------------------------------------------------------

    @property
    def waiting(self) -> bool:
        return not self.paused

    def wake(self) -> None:
        if not self.dirty and not self.paused:
            self.dirty = True
            flusher = self.flusher
            dirty = flusher.dirty
            if not dirty:
                flusher.loop.call_soon(flusher.flush)
            dirty.append(self)

    def abort(self) -> None:
        self.transport.abort()

    def flush(self) -> None:
        """Write what the Connection queued now (the opening frames), finish once it is closed."""
        self.flusher.write([self])

    # -- transport events ----------------------------------------------------------------------

    # A client sends nothing more on a stream; whatever it sends is ignored. A static method:
    # uvloop keeps its protocol's bound ``data_received``: one more object per stream.
    data_received = staticmethod(_ignore)

    def pause_writing(self) -> None:
        # Stuck in a write: from now the Connection's buffer fills and its policy applies.
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.flusher.state
        state.connections.discard(self)
        conn, closer = self.conn, self.closer
        if closer is None:
            return
        self.closer = None
        conn.attach(None)
        conn.close(CLIENT_GONE)
        tasks = state.tasks
        task = self.flusher.loop.create_task(_close(closer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: end the stream with its last chunk."""
        self.conn.close(SHUTDOWN)
        if self.paused:  # a stuck client would hold the shutdown until its grace ends
            self.transport.abort()


class DirectStreamProtocol(WireProtocol):
    """uvicorn's HTTP protocol (with the wire publish) that can hand a started SSE stream to a
    DirectStream."""

    __slots__ = ("extensions",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extensions: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """uvicorn's, with the addresses read as ``sockname`` and ``peername``.

        uvicorn asks for the ``socket``: uvloop then keeps a socket object and both addresses
        for as long as the connection lasts (about 0.4 KB of every idle stream).
        """
        self.connections.add(self)
        self.transport = transport
        self.flow = FlowControl(transport)
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))  # type: ignore[assignment]
        self.scheme = "https" if is_ssl(transport) else "http"
        self._watch_first_head()  # as GuardedProtocol

    def on_message_begin(self) -> None:
        super().on_message_begin()
        extensions = self.extensions
        if extensions is None:  # one per connection: streams only read it
            extensions = self.extensions = {EXTENSION: {"adopt": self.adopt}}
        self.scope["extensions"] = extensions

    def adopt(self, conn: Connection, closer: Closer, metrics: Metrics | None) -> bool:
        """Take over the current response, head already sent, as ``conn``'s stream.

        False if it cannot (then the ASGI task keeps writing it).
        """
        cycle = self.cycle
        transport = self.transport
        if (
            cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
            or self.pipeline
            or transport.is_closing()
        ):
            return False
        # The ASGI task ends without sending more: uvicorn must see a finished response.
        cycle.response_complete = True
        self._disarm()
        stream = DirectStream(transport, conn, closer, metrics, self.server_state)
        # uvicorn's shutdown reaches the stream instead of this protocol, which is then freed
        # with the request's state (most of an idle stream's memory otherwise).
        self.connections.discard(self)
        self.connections.add(stream)  # type: ignore[arg-type]  # uvicorn calls only shutdown()
        transport.set_protocol(stream)
        self.cycle = self.scope = self.parser = self.flow = None  # type: ignore[assignment]
        self.extensions = None
        stream.flush()  # what hub.open queued, before it wakes the stream
        conn.attach(stream)
        return True


def _address(info: object) -> tuple[str, int | None] | None:
    """An address as uvicorn puts it in the scope: (host, port), (path, None) or None."""
    if isinstance(info, (tuple, list)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    if isinstance(info, str) and info:
        return (info, None)
    return None


async def _close(closer: Closer) -> None:
    try:
        await closer()
    except Exception:
        log.exception("closing a direct stream failed")

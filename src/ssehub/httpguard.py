"""uvicorn's httptools protocol with the read limits a hub needs without a proxy in front.

Under httptools uvicorn bounds no request head and has no read timeout: a client could send a
16 MB header, open connections and trickle bytes (slowloris), or start a body and never end it
while the hub holds what came. :class:`GuardedProtocol` answers 431 to a head larger than
``max_header_bytes``, and 408 when a head or a body takes longer than its timeout; then it
closes the connection, and the request's task sees a gone client and frees what it read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .settings import Settings


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """How large a request head may be and how long its head and body may take to arrive."""

    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
        )


class HeadRefused(Exception):
    """Raised in a parser callback to stop parsing a request already answered with 431."""


class GuardedProtocol(HttpToolsProtocol):
    """httptools with a head size limit, a head timeout and a body timeout (see module doc)."""

    # Slots: uvicorn's attributes fill the instance dict; more of them would grow every one.
    __slots__ = ("begun", "head_bytes", "in_message", "limits", "reading_head", "timed", "timer")

    def __init__(self, *args: Any, limits: ReadLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or ReadLimits()
        self.reading_head = True
        self.in_message = False
        self.begun = 0  # requests begun on this connection
        self.head_bytes = 0
        self.timer: asyncio.TimerHandle | None = None
        self.timed: tuple[int, bool] | None = None  # (request, reading its head) timed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_first_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.reading_head and self.head_bytes > self.limits.max_header_bytes:
            self._refuse_head()  # a head still incomplete after this many bytes
            return
        # The timer of the part left unfinished, armed when it began; none between requests.
        # Timed here rather than in the parser callbacks: a request that came whole costs none.
        if self.in_message:
            part = (self.begun, self.reading_head)
            if part != self.timed:
                limits = self.limits
                self._arm(limits.header_timeout if part[1] else limits.body_timeout, part)
        elif self.begun and self.timer is not None:
            self._disarm()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # not after this protocol's own refusal
            super().send_400_response(msg)

    # -- parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.begun += 1
        self.in_message = True

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:  # a whole head that came in one piece
            self._refuse_head()
            raise HeadRefused  # stops the parser: no task is started for this request
        self.reading_head = False
        self.start_request()

    def on_message_complete(self) -> None:
        self.in_message = False
        self.reading_head, self.head_bytes = True, 0
        self.end_request()

    # -- where a subclass may take a request over --------------------------------------------------

    def start_request(self) -> None:
        """The head was read and passed the limits: uvicorn starts (or queues) its ASGI cycle."""
        HttpToolsProtocol.on_headers_complete(self)

    def end_request(self) -> None:
        """The whole request was read: uvicorn tells its cycle."""
        HttpToolsProtocol.on_message_complete(self)

    # -- refusing ---------------------------------------------------------------------------------

    def _watch_first_head(self) -> None:
        """Time the connection's first head from now: a client that connects and sends nothing."""
        self._arm(self.limits.header_timeout, (1, True))

    def _arm(self, seconds: float, part: tuple[int, bool]) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, self._timed_out)
        self.timed = part

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timed = None

    def _refuse_head(self) -> None:
        limit = self.limits.max_header_bytes
        self._refuse(431, "headers_too_large", f"the request head exceeds {limit} bytes")

    def _timed_out(self) -> None:
        self.timer, self.timed = None, None
        part, seconds = ("head", self.limits.header_timeout)
        if not self.reading_head:
            part, seconds = ("body", self.limits.body_timeout)
        self._refuse(408, "request_timeout", f"the request {part} took longer than {seconds:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` if no response has started, then close; the app sees a gone client."""
        self._disarm()
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        in_progress = cycle is not None and not cycle.response_complete
        # Answer only where nothing else answers: a new request's head with no response still
        # being written, or a body whose request has no response yet.
        if self.reading_head:
            answer = not in_progress
        else:
            answer = in_progress and not cycle.response_started
        if in_progress:
            cycle.disconnected = True  # its task's reads end now and its answer is dropped
            cycle.message_event.set()
        if answer:
            transport.write(_error_response(status, code, message))
        transport.close()


def _error_response(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with the hub's JSON error body."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )

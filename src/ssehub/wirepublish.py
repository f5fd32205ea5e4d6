"""A plain single-event publish answered in the server protocol, below ASGI.

``POST /api/v1/publish/{channel}`` is the hot path of AI workloads, and most of its cost was the
ASGI machinery around it (a scope per layer, a task, the receive/send messages, five middleware
layers). :class:`WireProtocol` (uvicorn's httptools protocol with the limits of
:mod:`ssehub.httpguard`) reads such a request itself and answers it with the route's own code
(:func:`~ssehub.routes.publish_shortcut.answer_publish`), the request id and the access line of
:class:`~ssehub.logs.RequestIdMiddleware`, and uvicorn's response framing. The publishes read
in one loop turn are answered together after its reads; on in-process backends each runs to
its end at once, with no task (one carries it on should it suspend), on Redis in a task each.

One decision, :meth:`WirePublisher.take`, admits only requests the application would answer
the same way. Every other request goes the ASGI way, and so does a taken one that turns out
unusual (a body ``plain_body`` refuses, a body that times out, a client that leaves mid-body):
uvicorn's cycle starts then with what was read of its body, so the application answers it.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections.abc import Coroutine, Generator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from .auth import JWTAuthenticator, OpenAccess, head_token
from .brokers.memory import MemoryBroker
from .clusterstate import MemoryClusterState
from .errors import HubError
from .httpguard import GuardedProtocol
from .hub import Hub
from .logs import REQUEST_ID_HEADER_BYTES, log_access, request_id, request_id_for
from .routes.publish import EventBody
from .routes.publish_shortcut import (
    PREFIX,
    Answer,
    PublishHead,
    answer_caller,
    answer_publish,
    plain_body,
    refused,
    request_head,
)
from .runstate import MemoryRunStore
from .tickets import WithTickets

PREFIX_BYTES = PREFIX.encode()
# Heads the application treats specially: a chunked body, 100-continue, an upgrade, proxies.
UNUSUAL = frozenset((b"transfer-encoding", b"expect", b"upgrade"))
FORWARDED = b"x-forwarded-"
# The heads of the two 500s: Starlette's ServerErrorMiddleware's when the application raises,
# uvicorn's own when the request's task is cancelled (the graceful shutdown's timeout).
APP_ERROR = b"content-length: 21\r\ncontent-type: text/plain; charset=utf-8\r\n"
CANCELLED = (
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n"
)
SERVER_ERROR = b"Internal Server Error"
CLOSE = b"connection: close\r\n"

# The backends whose awaits never suspend.
IN_PROCESS = (MemoryBroker, MemoryClusterState, MemoryRunStore)

Headers = list[tuple[bytes, bytes]]
NO_QUERY = QueryParams("")


class QuerylessRequest(Request):
    """A request without a query string, as every taken one is: nothing to parse for it."""

    @property
    def query_params(self) -> QueryParams:
        return NO_QUERY


class WireRequest:
    """A publish taken by the wire path: read, then answered."""

    __slots__ = (
        "body", "channel", "head", "keep_alive", "path", "reading", "rid", "scope", "started"
    )  # fmt: skip

    def __init__(
        self, scope: Any, path: str, head: PublishHead, rid: str, keep_alive: bool
    ) -> None:
        self.scope = scope  # its own: the connection's next request gets a new one
        self.path = path
        self.channel = path[len(PREFIX) :]
        self.head = head
        self.rid = rid
        self.keep_alive = keep_alive
        self.started = time.monotonic()
        self.reading = True  # False once the body is complete
        self.body: list[bytes] = []


class WirePublisher:
    """What the wire path of one application needs, and its decision and answer."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        state = app.state
        # What answering reads of the app's state (``Publishing``), kept: it is set for good
        # before the first request.
        self.hub, self.gate, self.metrics = state.hub, state.gate, state.metrics
        self.settings = settings = state.settings
        # A built-in authenticator names the caller from the head's credentials; another one
        # reads the request itself (the tickets' wrapper only looks at a query string).
        self.tokens = tokens = head_authenticator(state.authenticator)
        # The cookie a JWT authenticator reads, by its own settings (an application's may not
        # be the app's); None for OpenAccess, which reads no credentials at all.
        self.cookie = tokens.settings.token_cookie if isinstance(tokens, JWTAuthenticator) else None
        # BodyLimitMiddleware's bound on a single publish (413 unread above it).
        self.max_body = min(settings.max_publish_bytes, settings.max_request_bytes)
        self.cors = bool(settings.cors_origins)  # CORS answers requests with an Origin itself
        # What CORSMiddleware adds to the answer to a request without an Origin.
        self.cors_headers = [(b"vary", b"Origin")] if self.cors else []
        self.eager = in_process(app)

    def take(self, proto: WireProtocol) -> WireRequest | None:
        """The plain publish ``proto``'s request is, or None: the application answers it.

        Taken only where the ASGI path would see exactly this request: a POST to one channel,
        HTTP/1.1, no query string or escapes in the path, a JSON body framed by a
        Content-Length within the publish limit, no 100-continue, upgrade, proxy or (with CORS)
        Origin header, nothing before it still being answered on the connection.
        """
        url, parser, cycle = proto.url, proto.parser, proto.cycle
        if (
            not url.startswith(PREFIX_BYTES)
            or b"?" in url
            or b"%" in url
            or b"#" in url
            or not url.isascii()
            or b"/" in url[len(PREFIX_BYTES) :]
            or len(url) == len(PREFIX_BYTES)
            or parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or parser.should_upgrade()
            or proto.pipeline
            or (cycle is not None and not cycle.response_complete)
            or proto.flow.write_paused
        ):
            return None
        length = -1
        rid: str | None = None  # the first X-Request-ID, as RequestIdMiddleware reads it
        for name, value in proto.headers:
            if name == b"content-length":
                if length >= 0 or not value.isdigit():
                    return None
                length = int(value)
            elif name in UNUSUAL or name.startswith(FORWARDED) or (name == b"origin" and self.cors):
                return None
            elif name == REQUEST_ID_HEADER_BYTES and rid is None:
                rid = value.decode("latin-1")
        if not 0 < length <= self.max_body:
            return None
        scope: Any = proto.scope
        head = request_head(proto.headers)
        if head is None or not head.json:
            return None
        keep_alive = parser.should_keep_alive()
        path = url.decode("ascii")
        return WireRequest(scope, path, head, request_id_for(rid or ""), keep_alive)

    async def answer(self, proto: WireProtocol, request: WireRequest, body: EventBody) -> None:
        """Publish, write the answer, log the access line: as the middleware and route do."""
        token = request_id.set(request.rid)
        status = 0
        try:
            status, headers, content = await self.respond(request, body)
            headers.append((REQUEST_ID_HEADER_BYTES, request.rid.encode()))
            headers.extend(self.cors_headers)
            proto.write_answer(request, status, headers, content)
        except asyncio.CancelledError as exc:  # uvicorn answers its own 500, then closes
            status = 0
            proto.write_failure(exc, CANCELLED)
        except Exception as exc:
            status = 0  # as the access line of a request whose application raised
            proto.write_failure(exc, APP_ERROR if request.keep_alive else APP_ERROR + CLOSE)
        finally:
            duration_ms = round((time.monotonic() - request.started) * 1000, 1)
            log_access("POST", request.path, status, duration_ms)
            request_id.reset(token)

    async def respond(self, request: WireRequest, body: EventBody) -> Answer:
        """The route's answer: the caller named by the head's credentials, then the publish."""
        head, tokens = request.head, self.tokens
        if tokens is None:  # the authenticator reads the request
            scope = request.scope
            scope.update(method="POST", path=request.path, query_string=b"", app=self.app)
            scope["raw_path"] = request.path.encode()
            return await answer_publish(QuerylessRequest(scope), request.channel, body, head.key)
        try:
            cookie = self.cookie
            token = None if cookie is None else head_token(head.authorization, head.cookies, cookie)
            principal = tokens.principal_of(token)
        except HubError as exc:
            return refused(self, exc)
        client = request.scope["client"]
        ip = client[0] if client else ""
        return await answer_caller(self, principal, ip, request.channel, body, head.key)


def head_authenticator(authenticator: Any) -> JWTAuthenticator | OpenAccess | None:
    """The built-in authenticator ``authenticator`` is, or wraps as the tickets' wrapper, when
    it names the caller from the head's credentials alone, else None: another one, another
    wrapper, or a subclass with its own ``authenticate`` (it may read more of the request), gets
    the request."""
    inner = authenticator
    if type(authenticator) is WithTickets:  # streams' tickets only: the caller is its inner's
        inner = authenticator.inner
    for kind in (JWTAuthenticator, OpenAccess):
        if isinstance(inner, kind) and type(inner).authenticate is kind.authenticate:
            return inner
    return None


def in_process(app: Starlette) -> bool:
    """Whether a publish on ``app`` awaits only in-process work (memory backends, a built-in
    authenticator), which never suspends and needs no task (no ``asyncio.timeout``)."""
    state = app.state
    if head_authenticator(state.authenticator) is None:
        return False
    parts = (state.hub.broker, state.cluster, state.hub.runs)
    return all(part is None or isinstance(part, IN_PROCESS) for part in parts)


_publishers: weakref.WeakKeyDictionary[Config, WirePublisher | None] = weakref.WeakKeyDictionary()


def publisher_of(config: Config) -> WirePublisher | None:
    """The wire publisher of the hub ``config`` serves, or None (switched off, other app)."""
    try:
        return _publishers[config]
    except KeyError:
        pass
    app = config.loaded_app
    while isinstance(app, ProxyHeadersMiddleware):  # a no-op for the requests taken
        app = app.app
    publisher = None
    state: Any = getattr(app, "state", None)
    # Only the hub's own app: another app served by this protocol answers its routes itself.
    if (
        isinstance(app, Starlette)
        and isinstance(getattr(state, "hub", None), Hub)
        and getattr(state.settings, "fast_publish", False)
        and not config.root_path
        and config.limit_concurrency is None
    ):
        publisher = WirePublisher(app)
    _publishers[config] = publisher
    return publisher


class _Busy:
    """Stands for the publish being answered, so uvicorn queues a request pipelined behind it."""

    response_complete = False


BUSY: Any = _Busy()


class WireProtocol(GuardedProtocol):
    """uvicorn's HTTP protocol with read limits that answers plain publishes itself."""

    __slots__ = ("publisher", "wire")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.publisher = publisher_of(self.config)
        self.wire: WireRequest | None = None  # the publish being read or answered

    # -- reading ----------------------------------------------------------------------------------

    def start_request(self) -> None:
        publisher = self.publisher
        if publisher is not None:
            if self.wire is not None:
                self._queue()
                return
            self.wire = publisher.take(self)
            if self.wire is not None:
                return
        super().start_request()

    def on_body(self, body: bytes) -> None:
        wire = self.wire
        if wire is not None and wire.reading:
            wire.body.append(body)
        else:
            super().on_body(body)

    def end_request(self) -> None:
        wire = self.wire
        if wire is None or not wire.reading:
            super().end_request()
            return
        wire.reading = False
        raw = b"".join(wire.body)
        body = plain_body(raw)
        if body is None:
            self._hand_over(wire, raw, more_body=False)
            return
        assert self.publisher is not None
        answering = self.publisher.answer(self, wire, body)
        _answers(self.loop).add(self.loop, answering, self.publisher.eager, self.tasks)

    def _queue(self) -> None:
        """Let uvicorn queue this request behind the publish being answered, as a pipelined one."""
        previous, self.cycle = self.cycle, BUSY
        super().start_request()
        if self.cycle is BUSY:  # uvicorn took no request (an upgrade)
            self.cycle = previous

    def _hand_over(self, wire: WireRequest, raw: bytes, *, more_body: bool) -> None:
        """Start uvicorn's ASGI cycle for ``wire``, with the body read so far."""
        self.wire = None
        super().start_request()
        cycle = self.cycle
        if not wire.keep_alive:  # a graceful shutdown began while it was read
            cycle.keep_alive = False
        cycle.body += raw
        cycle.more_body = more_body
        cycle.message_event.set()

    def _read_so_far(self) -> None:
        """A taken request interrupted mid-body goes to the application, which answers it."""
        wire = self.wire
        if wire is not None and wire.reading and self.parser is not None:
            self._hand_over(wire, b"".join(wire.body), more_body=True)

    # -- answering ---------------------------------------------------------------------------------

    def write_answer(self, wire: WireRequest, status: int, headers: Headers, body: bytes) -> None:
        """Write a whole response as uvicorn's cycle would, then go on as after its response."""
        self.wire = None
        transport = self.transport
        if transport.is_closing():  # the client left: uvicorn drops the answer
            return
        content = self._head(status)
        for name, value in headers:
            content.extend((name, b": ", value, b"\r\n"))
        if not wire.keep_alive:
            content.append(b"connection: close\r\n")
        content.extend((b"\r\n", body))
        transport.write(b"".join(content))
        if not wire.keep_alive:
            transport.close()
        self.on_response_complete()

    def write_failure(self, exc: BaseException, head: bytes) -> None:
        """What uvicorn and Starlette do when the application raises: log, 500 with ``head``,
        close."""
        self.wire = None
        self.logger.error("Exception in ASGI application\n", exc_info=exc)
        transport = self.transport
        if transport.is_closing():
            return
        content = self._head(500)
        content.extend((head, b"\r\n", SERVER_ERROR))
        transport.write(b"".join(content))
        transport.close()

    def _head(self, status: int) -> list[bytes]:
        """The status line and uvicorn's default headers (``server``, ``date``), as its cycle
        starts every response."""
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend((name, b": ", value, b"\r\n"))
        return content

    # -- connection events ----------------------------------------------------------------------

    def _refuse(self, status: int, code: str, message: str) -> None:
        wire = self.wire
        if wire is not None and not wire.reading and self.reading_head:
            # A head timed out behind the publish being answered: as uvicorn with a cycle in
            # progress, no answer for it, and the publish's answer is dropped with the connection.
            self._disarm()
            self.transport.close()
            return
        self._read_so_far()
        super()._refuse(status, code, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self._read_so_far()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: a publish being read or answered finishes first."""
        cycle = self.cycle
        if self.wire is not None and (cycle is None or cycle.response_complete):
            self.wire.keep_alive = False
        else:
            super().shutdown()


Answering = Coroutine[Any, Any, None]


class _Answers:
    """The publishes of one loop turn, answered together once the turn's reads are done.

    Answering in the read callback would let each client send its next request at once, and
    the loop would then read one request per wake-up; together, the loop reads every ready
    connection per wake-up and writes every answer in one go, for less CPU per publish.
    """

    __slots__ = ("pending",)  # no reference to the loop: it keys the table of these

    def __init__(self) -> None:
        self.pending: list[tuple[Answering, bool, set[asyncio.Task[None]]]] = []

    def add(
        self,
        loop: asyncio.AbstractEventLoop,
        answering: Answering,
        eager: bool,
        tasks: set[asyncio.Task[None]],
    ) -> None:
        if not self.pending:
            loop.call_soon(self.run)
        self.pending.append((answering, eager, tasks))

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for answering, eager, tasks in pending:
            if eager:
                run_eagerly(answering, tasks)
            else:  # it may use asyncio.timeout, which needs a task
                task = asyncio.get_running_loop().create_task(answering)
                tasks.add(task)
                task.add_done_callback(tasks.discard)


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Answers] = weakref.WeakKeyDictionary()


def _answers(loop: asyncio.AbstractEventLoop) -> _Answers:
    answers = _turns.get(loop)
    if answers is None:
        answers = _turns[loop] = _Answers()
    return answers


def run_eagerly(coro: Answering, tasks: set[asyncio.Task[None]]) -> None:
    """Run ``coro`` now; only if it suspends does a task (kept in ``tasks``) carry it on.

    What Python 3.12's eager task factory does. Its own context copy keeps the context
    variables it sets (the request id) away from the caller's.
    """
    context = contextvars.copy_context()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration:
        return
    task = asyncio.get_running_loop().create_task(_Resumed(coro, yielded), context=context)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


_NOT_YET = object()


class _Resumed(Coroutine[Any, Any, None]):
    """The rest of a coroutine that ran up to its first suspension, as a task's coroutine.

    The task's first step gets what the coroutine waits for; a cancellation, even one before
    that first step, is thrown into the coroutine where it waits.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Answering, yielded: Any) -> None:
        self.coro = coro
        self.first: Any = yielded  # _NOT_YET once the task had it

    def send(self, value: Any) -> Any:
        first = self.first
        if first is _NOT_YET:
            return self.coro.send(value)
        self.first = _NOT_YET
        return first

    def throw(self, *exc: Any) -> Any:
        self.first = _NOT_YET
        return self.coro.throw(*exc)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("a task's coroutine: not awaited")

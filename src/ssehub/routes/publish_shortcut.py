"""The single-event publish without FastAPI's routing, dependency solving and body model.

``POST /api/v1/publish/{channel}`` is the hot path of AI workloads: every coalesced token
message of every answer is one. :class:`PublishShortcut` (and, below ASGI, the wire publish of
:mod:`ssehub.wirepublish`) answers it through the route's core, ``accept_publish``, with the
app's hub, gate, settings and authenticated caller, after reading the body with orjson and
checking it as :class:`PublishBody` would. A body the model would refuse or coerce (not a JSON
object, unknown fields, a ``retry`` that is not a plain non-negative integer, a long
``Idempotency-Key``, another content type...) goes to FastAPI unchanged, with the bytes already
read, so every refusal keeps its exact status and message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth import Principal
from ..errors import HubError
from ..gate import Gate, client_ip
from ..hub import Hub
from ..metrics import Metrics
from ..refusals import hub_error_response
from ..settings import Settings
from .publish import EventBody, PlainBody, PublishBody, accept_publish, router

PREFIX = f"{router.prefix}/publish/"
FIELDS = frozenset(PublishBody.model_fields)
MAX_IDEMPOTENCY_KEY = 200  # the route's ``Idempotency-Key`` bound (longer: FastAPI's 400)
JSON_TYPES = (b"application/json", b"application/json; charset=utf-8")
# orjson reads integers past 64 bits as floats where the route's parser keeps them exact.
LONG_NUMBER = re.compile(rb"[0-9]{19}")

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


def plain_body(raw: bytes) -> PlainBody | None:
    """The body's fields when ``PublishBody`` would take it as it is, else None."""
    if LONG_NUMBER.search(raw):
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict or not FIELDS.issuperset(value):
        return None
    event, retry = value.get("event"), value.get("retry")
    if event is not None and type(event) is not str:
        return None
    if retry is not None and (type(retry) is not int or retry < 0):
        return None
    return PlainBody(event, value.get("data"), retry)


def json_head(body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers a JSON response of ``body`` gets from Starlette."""
    return [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]


class PublishHead(NamedTuple):
    """What a publish's headers tell the shortcuts (credentials as the first ``Authorization``
    and every ``Cookie`` header, joined, as Starlette reads them)."""

    json: bool  # the body is JSON by its content type
    key: str | None  # the Idempotency-Key
    authorization: str | None
    cookies: str | None


def request_head(headers: Iterable[tuple[bytes, bytes]]) -> PublishHead | None:
    """The head of a publish, or None when it needs FastAPI (several content types or keys,
    a key over the bound)."""
    content_type = key = authorization = cookies = None
    for name, value in headers:
        if name == b"content-type":
            if content_type is not None:
                return None
            content_type = value
        elif name == b"idempotency-key":
            if key is not None or len(value) > MAX_IDEMPOTENCY_KEY:
                return None
            key = value
        elif name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"cookie":
            cookies = value if cookies is None else cookies + b"; " + value
    return PublishHead(
        content_type is not None and content_type.lower() in JSON_TYPES,
        None if key is None else key.decode("latin-1"),
        None if authorization is None else authorization.decode("latin-1"),
        None if cookies is None else cookies.decode("latin-1"),
    )


async def read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole body, and the messages it came in (to hand them on when FastAPI answers)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", messages  # the client left: FastAPI sees the same
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), messages


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that returns ``messages`` first, then reads on."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class PublishShortcut:
    """ASGI middleware answering a plain single-event publish (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        channel = path[len(PREFIX) :]
        head = request_head(scope["headers"])
        if not channel or "/" in channel or head is None or not head.json:
            await self.app(scope, receive, send)
            return
        raw, messages = await read_body(receive)
        body = plain_body(raw) if raw else None
        if body is None:
            await self.app(scope, replaying(messages, receive), send)
            return
        status, headers, answer = await answer_publish(
            Request(scope, receive), channel, body, head.key
        )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


async def answer_publish(
    request: Request, channel: str, body: EventBody, key: str | None
) -> Answer:
    """Status, headers and body of the route's answer to a plain publish (refusals counted)."""
    state: Any = request.app.state
    try:
        principal = await state.authenticator.authenticate(request)
    except HubError as exc:
        return refused(state, exc)
    return await answer_caller(state, principal, client_ip(request), channel, body, key)


class Publishing(Protocol):
    """What answering a publish reads: the app's state, or what the wire path kept of it."""

    hub: Hub
    gate: Gate
    settings: Settings
    metrics: Metrics


async def answer_caller(
    state: Publishing, principal: Principal, ip: str, channel: str, body: EventBody, key: str | None
) -> Answer:
    """``answer_publish`` for a caller already known, calling from ``ip``."""
    try:
        stored = await accept_publish(
            state.hub, state.gate, state.settings, principal, ip, channel, body, key
        )
    except HubError as exc:
        return refused(state, exc)
    answer = orjson.dumps({"id": stored.id, "channel": stored.channel})
    return 200, json_head(answer), answer


def refused(state: Publishing, exc: HubError) -> Answer:
    """The answer to a refused publish (counted)."""
    response = hub_error_response(state.metrics, exc)
    return exc.status, response.raw_headers, bytes(response.body)

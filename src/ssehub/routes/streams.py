"""SSE endpoints: channel streams and the per-client ``/connect`` stream.

``StreamShortcut`` serves GETs of these three endpoints straight from the ASGI scope with the
same handlers, skipping FastAPI's routing and dependency solving (most of the cost of opening a
stream); the routes stay registered for the OpenAPI document and apps built without it.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..auth import Principal, require_subscribe
from ..channels import BROADCAST, Selector, client_channel, validate_channel
from ..connection import Connection
from ..errors import BadRequest, HubError, Unavailable
from ..gate import Gate, client_ip
from ..hub import Hub
from ..refusals import hub_error_response
from ..settings import Settings
from ..stream import EventStreamResponse
from .deps import get_hub, get_settings, get_stream_principal

PREFIX = "/api/v1/sse"
router = APIRouter(prefix=PREFIX, tags=["streams"])

MAX_CHANNELS_PER_STREAM = 100

STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An SSE stream."},
    400: {"description": "Invalid channel, pattern or Last-Event-ID."},
    401: {"description": "Missing or invalid credentials, or a used/expired ticket."},
    403: {"description": "A channel outside the caller's rights."},
    429: {"description": "Too many streams of this user, or opened too fast (Retry-After)."},
    503: {"description": "The hub is shutting down or full (Retry-After)."},
}

ChannelsQuery = Annotated[
    list[str] | None, Query(alias="channel", description="More channels or patterns (repeatable).")
]
TypesQuery = Annotated[
    str | None, Query(description="Comma-separated event types to receive; others are skipped.")
]
LastIdQuery = Annotated[
    str | None,
    Query(
        alias="lastEventId",
        description="Resume after this id (the Last-Event-ID header wins when both are sent).",
    ),
]


def parse_types(types: str | None) -> frozenset[str] | None:
    """The ``?types=a,b`` filter as a set (None receives everything)."""
    if types is None:
        return None
    names = frozenset(t.strip() for t in types.split(",") if t.strip())
    return names or None


def resume_id(request: Request, query_id: str | None) -> str | None:
    """Last-Event-ID from the header (set by EventSource on reconnect) or the query."""
    value = request.headers.get("last-event-id") or query_id
    if value is not None and len(value) > 256:
        raise BadRequest("Last-Event-ID is too long")
    return value or None


async def open_stream(
    request: Request,
    *,
    hub: Hub,
    settings: Settings,
    principal: Principal,
    names: list[str],
    types: frozenset[str] | None,
    last_event_id: str | None,
    client_id: str | None = None,
) -> EventStreamResponse:
    """Check, register and start one SSE stream over ``names``."""
    if hub.closing:
        raise Unavailable("the hub is shutting down", headers={"Retry-After": "1"})
    if not names:
        raise BadRequest("name at least one channel")
    if len(names) > MAX_CHANNELS_PER_STREAM:
        raise BadRequest(f"at most {MAX_CHANNELS_PER_STREAM} channels per stream")
    own = {BROADCAST, client_channel(client_id)} if client_id else set()
    client_id = client_id or str(uuid.uuid4())
    for name in names:
        if name not in own:  # reserved names only as /connect adds them
            validate_channel(name, allow_pattern=True, max_wildcards=settings.max_pattern_wildcards)
            require_subscribe(principal, name)
    gate: Gate = request.app.state.gate
    # Interned: streams from one address or browser (a proxy's, a NAT's) share one string.
    ip = sys.intern(client_ip(request))
    await gate.check_rate("stream", principal, ip)
    conn = Connection(
        client_id=client_id,
        selector=Selector.of(names),
        types=types,
        max_buffer=settings.subscriber_buffer,
        user_id=principal.user_id,
        info={"ip": ip, "user_agent": sys.intern(request.headers.get("user-agent", ""))},
    )
    await gate.admit(conn, principal)
    try:
        await hub.open(conn, last_event_id)
    except BaseException:
        await hub.detach(conn)
        await gate.release(conn)
        raise
    await gate.announce(conn, "join")
    return EventStreamResponse(conn, closer=StreamCloser(gate, conn))


class StreamCloser:
    """What runs after a stream ends: unregister it from the gate's hub, release its slots,
    announce ``leave``.

    An object of two slots rather than a closure: every open stream holds one.
    """

    __slots__ = ("conn", "gate")

    def __init__(self, gate: Gate, conn: Connection) -> None:
        self.gate, self.conn = gate, conn

    async def __call__(self) -> None:
        await self.gate.hub.detach(self.conn)
        await self.gate.release(self.conn)
        await self.gate.announce(self.conn, "leave")


@dataclass(slots=True)
class StreamOptions:
    """What every SSE endpoint shares: ``?types=``, the resume id, the hub and its settings."""

    request: Request
    types: frozenset[str] | None
    last_event_id: str | None
    hub: Hub
    settings: Settings

    async def open(
        self, names: list[str], principal: Principal, *, client_id: str | None = None
    ) -> EventStreamResponse:
        """Open a stream over ``names`` (duplicates dropped) for ``principal``."""
        return await open_stream(
            self.request,
            hub=self.hub,
            settings=self.settings,
            principal=principal,
            names=list(dict.fromkeys(names)),
            types=self.types,
            last_event_id=self.last_event_id,
            client_id=client_id,
        )


async def stream_options(
    request: Request,
    types: TypesQuery = None,
    last_event_id: LastIdQuery = None,
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
) -> StreamOptions:
    """The dependency (async: FastAPI would run a class dependency in a worker thread)."""
    return StreamOptions(
        request, parse_types(types), resume_id(request, last_event_id), hub, settings
    )


@router.get("/stream/{channel}", responses=STREAM_RESPONSES, response_model=None)
async def stream_channel(
    channel: str,
    extra: ChannelsQuery = None,
    options: StreamOptions = Depends(stream_options),
    principal: Principal = Depends(get_stream_principal),
) -> EventStreamResponse:
    """Stream one channel or pattern (``project:1:stage:*``), plus any ``?channel=`` extras."""
    return await options.open([channel, *(extra or [])], principal)


@router.get("/stream", responses=STREAM_RESPONSES, response_model=None)
async def stream_channels(
    extra: ChannelsQuery = None,
    options: StreamOptions = Depends(stream_options),
    principal: Principal = Depends(get_stream_principal),
) -> EventStreamResponse:
    """Stream several channels and patterns named by repeated ``?channel=`` parameters."""
    return await options.open(extra or [], principal)


@router.get("/connect", responses=STREAM_RESPONSES, response_model=None)
async def connect(
    extra: ChannelsQuery = None,
    options: StreamOptions = Depends(stream_options),
    principal: Principal = Depends(get_stream_principal),
) -> EventStreamResponse:
    """A client stream: broadcasts, messages sent to its client id, and any ``?channel=``."""
    client_id = str(uuid.uuid4())
    names = [BROADCAST, client_channel(client_id), *(extra or [])]
    return await options.open(names, principal, client_id=client_id)


class StreamShortcut:
    """ASGI middleware answering ``GET`` of the three stream endpoints above (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "GET" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        rest = path[len(PREFIX) :]
        channel = rest[len("/stream/") :] if rest.startswith("/stream/") else None
        if channel is not None and (not channel or "/" in channel):
            channel = None  # not a route: FastAPI answers 404
        if channel is None and rest not in ("/stream", "/connect"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        state = request.app.state
        query = request.query_params
        try:
            options = await stream_options(
                request, query.get("types"), query.get("lastEventId"), state.hub, state.settings
            )
            principal = await state.authenticator.authenticate_stream(request)
            extra = query.getlist("channel") or None
            if channel is not None:
                response = await stream_channel(channel, extra, options, principal)
            elif rest == "/stream":
                response = await stream_channels(extra, options, principal)
            else:
                response = await connect(extra, options, principal)
        except HubError as exc:
            response = hub_error_response(state.metrics, exc)  # type: ignore[assignment]
        await response(scope, receive, send)

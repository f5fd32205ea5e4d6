"""The ASGI application factory: routes, JSON errors, and a lifespan that runs the hub."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator
from types import FrameType

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .auth import Authenticator, authenticator_from_settings
from .backends import create_backends
from .brokers import Broker
from .chat import ChatService
from .clusterstate import ClusterState
from .durable import DurableStreams, mount_durable_streams
from .errors import HubError, error_response
from .gate import Gate
from .hub import Hub
from .observability import install_observability
from .refusals import hub_error_response
from .routes import (
    admin,
    apidocs,
    conversations,
    health,
    presence,
    projects,
    publish,
    streams,
    tickets,
    ui,
)
from .routes.protocols import mount as mount_protocols
from .settings import Settings
from .startup import log_broker
from .stream import AbortedStreamFilter
from .tasks import create_task_manager
from .tickets import WithTickets

log = logging.getLogger("ssehub")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


# FastAPI reads a body of another content type as form or bytes: `curl -d` sends a form.
NOT_JSON_HINT = " (the body was not read as JSON: send it with Content-Type: application/json)"


def json_content_type(value: str | None) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (also when there is none)."""
    if not value:
        return True
    kind, _, subtype = value.partition(";")[0].strip().lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the JSON error shape with the right status."""

    async def hub_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HubError)
        return hub_error_response(request.app.state.metrics, exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        loc = tuple(first.get("loc", ()))
        where = ".".join(str(p) for p in loc)
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        if loc == ("body",) and not json_content_type(request.headers.get("content-type")):
            message += NOT_JSON_HINT
        return error_response(400, "bad_request", f"{where}: {message}")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    app.add_exception_handler(HubError, hub_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def chain_sigterm(hub: Hub) -> None:
    """On SIGTERM, end every stream at once so clients reconnect, then let the server stop."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(hub.close_all)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def create_app(
    settings: Settings | None = None,
    *,
    broker: Broker | None = None,
    authenticator: Authenticator | None = None,
    cluster: ClusterState | None = None,
) -> FastAPI:
    """Build the hub's ASGI app; the lifespan starts and stops broker and hub."""
    settings = settings or Settings()
    backends = create_backends(settings, broker=broker, cluster=cluster)
    cluster, runs = backends.cluster, backends.runs
    hub = Hub(
        backends.broker,
        heartbeat_seconds=settings.heartbeat_seconds,
        retry_ms=settings.retry_ms,
        idle_timeout_seconds=settings.client_timeout_seconds,
        max_resume_events=settings.max_resume_events,
        runs=runs,
    )
    gate = Gate(settings, cluster, hub)
    chat = ChatService.from_settings(settings, hub, gate)
    tasks = create_task_manager(hub, settings, cluster)
    durable = DurableStreams(settings, hub)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("uvicorn.error").addFilter(AbortedStreamFilter())
        await cluster.start()
        await hub.start()
        await runs.start(hub.publish)
        await gate.start()
        await chat.start()
        await durable.start()
        chain_sigterm(hub)
        await log_broker(settings, hub.broker)
        try:
            yield
        finally:
            await durable.close()
            await chat.close()
            await gate.close()
            await tasks.close()
            await runs.close()
            await hub.close()
            await cluster.close()

    app = FastAPI(
        title="ssehub",
        version=__version__,
        description="Real-time push hub for AI applications over Server-Sent Events.",
        lifespan=lifespan,
        docs_url=None,  # served from packaged assets by routes.apidocs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.hub = hub
    app.state.authenticator = WithTickets(
        authenticator or authenticator_from_settings(settings), cluster
    )
    app.state.cluster = cluster
    app.state.gate = gate
    app.state.chat = chat
    app.state.tasks = tasks
    install_error_handlers(app)
    install_observability(app)
    for module in (streams, publish, health, tickets, admin, presence, conversations, projects):
        app.include_router(module.router)
    mount_protocols(app)  # the AI SDK's useChat and AG-UI over chat and runs
    mount_durable_streams(app, durable)
    ui.mount(app)
    apidocs.mount(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and ``ssehub serve --workers N``."""
    app = create_app()
    settle_heap()
    return app


# Young objects per collection of a serving process (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def settle_heap() -> None:
    """Tune the cycle collector of a serving process (not of tests that build many apps).

    A hub holds many long-lived small objects per stream; every collection of the oldest
    generation walks them all while no stream is served. Freezing what start-up allocated and
    collecting young objects less often keeps those pauses rare; garbage cycles are still freed.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)

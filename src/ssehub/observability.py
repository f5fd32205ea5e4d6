"""Wire metrics, request ids, the body limit, CORS and the documented OpenAPI into an app."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from .bodylimit import BodyLimitMiddleware
from .durable.headers import DS_EXPOSED_HEADERS, DS_REQUEST_HEADERS
from .logs import RequestIdMiddleware
from .openapi import install_openapi
from .routes import metrics, publish
from .routes.publish_shortcut import PublishShortcut
from .routes.streams import StreamShortcut

# What a browser page on an allowed origin may send to, and read from, the hub.
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Last-Event-ID",
    "Idempotency-Key",
    "X-Request-ID",
    *DS_REQUEST_HEADERS,
]
CORS_EXPOSED_HEADERS = ["X-Client-Id", "X-Request-ID", "Retry-After", *DS_EXPOSED_HEADERS]


def install_cors(app: FastAPI) -> None:
    """Answer preflights and tag responses for ``settings.cors_origins`` (outermost layer)."""
    origins = app.state.settings.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=True,  # EventSource withCredentials, the token cookie
            allow_methods=["GET", "POST", "DELETE", "PUT", "HEAD"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )


def install_observability(app: FastAPI) -> None:
    """``GET /metrics``, ``X-Request-ID`` on every response, error bodies in ``/openapi.json``."""
    app.state.metrics = app.state.hub.metrics
    app.add_middleware(StreamShortcut)  # innermost: request ids and the body limit still apply
    app.add_middleware(PublishShortcut)
    settings = app.state.settings
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        routes={
            f"{publish.router.prefix}/publish": settings.max_batch_bytes,
            f"{publish.router.prefix}/publish/*": settings.max_publish_bytes,
        },
    )
    app.add_middleware(RequestIdMiddleware)
    install_cors(app)
    app.include_router(metrics.router)
    install_openapi(app)

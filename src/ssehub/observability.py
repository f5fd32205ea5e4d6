"""Wire metrics, request ids, the request body limit and the documented OpenAPI into an app."""

from __future__ import annotations

from fastapi import FastAPI

from .bodylimit import BodyLimitMiddleware
from .logs import RequestIdMiddleware
from .openapi import install_openapi
from .routes import metrics
from .routes.streams import StreamShortcut


def install_observability(app: FastAPI) -> None:
    """``GET /metrics``, ``X-Request-ID`` on every response, error bodies in ``/openapi.json``."""
    app.state.metrics = app.state.hub.metrics
    app.add_middleware(StreamShortcut)  # innermost: request ids and the body limit still apply
    app.add_middleware(BodyLimitMiddleware, max_bytes=app.state.settings.max_request_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(metrics.router)
    install_openapi(app)

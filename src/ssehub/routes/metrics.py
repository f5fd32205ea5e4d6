"""``GET /metrics``: Prometheus text of this process (of every process in multi-process mode)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(request: Request) -> Response:
    """Connections, events, latency, refusals and AI run figures in Prometheus format."""
    # A plain ``def``: multi-process mode reads files, so this runs in the thread pool.
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)

"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..brokers.base import HealthChecker
from ..hub import Hub
from .deps import get_hub

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, str]:
    """The process answers; ``node`` names which one (as in ``/stats`` and client records)."""
    return {"status": "ok", "node": request.app.state.gate.node}


@router.get("/readyz", responses={503: {"description": "Broker down or shutting down."}})
async def readyz(hub: Hub = Depends(get_hub)) -> JSONResponse:
    """Ready to accept streams and publishes: broker reachable and not shutting down."""
    broker_ok = await hub.broker.healthy() if isinstance(hub.broker, HealthChecker) else True
    ready = broker_ok and not hub.closing
    body = {"status": "ready" if ready else "not_ready", "broker": "ok" if broker_ok else "down"}
    return JSONResponse(body, status_code=200 if ready else 503)

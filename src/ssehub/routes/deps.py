"""Dependencies shared by the routes: the hub, settings and the caller.

All are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop
per dependency per request (it was a third of the cost of opening a stream).
"""

from __future__ import annotations

from fastapi import Request
from starlette.requests import HTTPConnection

from ..auth import Principal
from ..cluster import ClusterState
from ..gate import Gate
from ..hub import Hub
from ..settings import Settings


async def get_hub(request: HTTPConnection) -> Hub:
    """The Hub of this app."""
    return request.app.state.hub  # type: ignore[no-any-return]


async def get_settings(request: HTTPConnection) -> Settings:
    """The Settings of this app."""
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_principal(request: Request) -> Principal:
    """The authenticated caller (raises Unauthorized)."""
    return await request.app.state.authenticator.authenticate(request)  # type: ignore[no-any-return]


async def get_stream_principal(request: Request) -> Principal:
    """The caller of a stream GET, who may show a ``?ticket=`` instead of a token."""
    return await request.app.state.authenticator.authenticate_stream(request)  # type: ignore[no-any-return]


async def get_cluster(request: HTTPConnection) -> ClusterState:
    """The cross-process state of this app."""
    return request.app.state.cluster  # type: ignore[no-any-return]


async def get_gate(request: HTTPConnection) -> Gate:
    """Admission control (limits, client registry, presence) of this app."""
    return request.app.state.gate  # type: ignore[no-any-return]

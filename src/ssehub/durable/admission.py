"""Live reads (protocol SSE, the EventSource view) take a stream slot like any other stream.

A read holds a global slot and its user's (or address's) slot while it lasts, kept alive in the
cluster with the gate's other non-hub holders, and gives them back however its response ends.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from ..auth import Principal
from ..channels import Selector
from ..connection import Connection
from ..gate import Gate, client_ip

Release = Callable[[], Awaitable[None]]


async def admit_reader(request: Request, principal: Principal, name: str) -> Release:
    """Rate-check and admit a live read of ``name`` (429/503 as for streams); its release."""
    gate: Gate = request.app.state.gate
    ip = client_ip(request)
    await gate.check_rate("stream", principal, ip)
    conn = Connection(
        client_id=str(uuid.uuid4()),
        selector=Selector.of([name]),
        user_id=principal.user_id,
        info={"ip": ip, "user_agent": request.headers.get("user-agent", "")},
    )
    await gate.admit(conn, principal)
    gate.held.add(conn.client_id)  # renewed with the gate's keepalive while the read lasts
    released = False

    async def release() -> None:
        nonlocal released
        if not released:
            released = True
            gate.held.discard(conn.client_id)
            await gate.release(conn)

    return release


def releasing(response: StreamingResponse, release: Release) -> StreamingResponse:
    """``response`` giving the read's slots back when its body ends, fails or is cut."""
    frames = response.body_iterator

    async def body() -> AsyncIterator[bytes | str | memoryview]:
        try:
            async for frame in frames:
                yield frame
        finally:
            await release()

    response.body_iterator = body()
    response.background = BackgroundTask(release)  # also when the body never started
    return response

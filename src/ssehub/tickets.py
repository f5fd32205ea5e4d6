"""Stream tickets: short-lived, single-use credentials bound to channels, for stream URLs.

A browser's EventSource cannot send headers, and a long-lived JWT in a URL ends up in logs. A
ticket is issued for a normal token (``POST /api/v1/sse/tickets``), lives seconds, opens one
stream (``?ticket=``) and grants only the channels it was issued for.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import HTTPConnection

from .auth import Authenticator, Principal, invalid_token
from .cluster import ClusterState


async def issue_ticket(
    cluster: ClusterState, principal: Principal, channels: list[str], ttl: float
) -> str:
    """Store a ticket granting ``principal``'s user ``channels`` for ``ttl`` seconds."""
    ticket = secrets.token_urlsafe(24)
    grant = {
        "user_id": principal.user_id,
        "channels": channels,
        "authenticated": principal.authenticated,
    }
    await cluster.put_ticket(ticket, grant, ttl)
    return ticket


def principal_of_grant(grant: dict[str, Any]) -> Principal:
    """The caller a ticket stands for: its user, reading only the ticket's channels.

    A ticket issued under anonymous rights stays anonymous (no chat, 401 where a token counts).
    """
    return Principal(
        user_id=grant.get("user_id"),
        subscribe=tuple(grant.get("channels", ())),
        authenticated=bool(grant.get("authenticated", True)),
        ticket=True,
    )


class WithTickets:
    """An authenticator that accepts ``?ticket=`` on streams and otherwise defers to ``inner``."""

    def __init__(self, inner: Authenticator, cluster: ClusterState) -> None:
        self.inner = inner
        self.cluster = cluster

    async def authenticate(self, request: HTTPConnection) -> Principal:
        """The caller of a request that is not a stream: a ticket is refused, never consumed."""
        if request.scope.get("query_string") and "ticket" in request.query_params:
            raise invalid_token("a stream ticket opens only a stream (GET), not this request")
        return await self.inner.authenticate(request)

    async def authenticate_stream(self, request: HTTPConnection) -> Principal:
        """The caller of a stream GET: its ``?ticket=`` when it sends one, else its token."""
        ticket = request.query_params.get("ticket")
        if ticket is None:
            return await self.inner.authenticate(request)
        grant = await self.cluster.take_ticket(ticket[:100])
        if grant is None:
            raise invalid_token("unknown, used or expired ticket")
        return principal_of_grant(grant)

"""``POST /api/v1/sse/tickets``: trade a token for a single-use stream ticket."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ..auth import Principal, require_subscribe
from ..channels import validate_channel
from ..cluster import ClusterState
from ..gate import Gate, client_ip
from ..settings import Settings
from ..tickets import issue_ticket
from .deps import get_cluster, get_gate, get_principal, get_settings

router = APIRouter(prefix="/api/v1/sse", tags=["streams"])


class TicketRequest(BaseModel):
    """The channels (or patterns) the ticket may open."""

    channels: list[str] = Field(min_length=1, max_length=100)


class Ticket(BaseModel):
    """A single-use ticket: append ``?ticket=<ticket>`` to a stream URL within ``expires_in``."""

    ticket: str
    expires_in: float
    channels: list[str]


@router.post(
    "/tickets",
    status_code=201,
    responses={
        400: {"description": "Invalid channel."},
        401: {"description": "Missing or invalid token."},
        403: {"description": "A channel outside the caller's rights."},
        429: {"description": "Tickets requested too fast by this user or address (Retry-After)."},
    },
)
async def create_ticket(
    request: Request,
    body: TicketRequest,
    settings: Settings = Depends(get_settings),
    cluster: ClusterState = Depends(get_cluster),
    gate: Gate = Depends(get_gate),
    principal: Principal = Depends(get_principal),
) -> Ticket:
    """Issue a short-lived ticket that opens one stream over exactly these channels."""
    channels = list(dict.fromkeys(body.channels))
    for name in channels:
        validate_channel(name, allow_pattern=True, max_wildcards=settings.max_pattern_wildcards)
        require_subscribe(principal, name)
    await gate.check_rate("ticket", principal, client_ip(request))
    ttl = settings.ticket_ttl_seconds
    ticket = await issue_ticket(cluster, principal, channels, ttl)
    return Ticket(ticket=ticket, expires_in=ttl, channels=channels)

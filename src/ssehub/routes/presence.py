"""``GET /api/v1/channels/{channel}/presence``: who is subscribed to a channel right now."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ..auth import Principal, require_subscribe
from ..channels import matches, validate_channel
from ..cluster import ClusterState
from .deps import get_cluster, get_principal

router = APIRouter(prefix="/api/v1", tags=["presence"])


class PresentClient(BaseModel):
    """One stream subscribed to the channel."""

    client_id: str
    user_id: str | None
    connected_at: float


class Presence(BaseModel):
    """Users (distinct, sorted) and streams currently subscribed to a channel."""

    channel: str
    users: list[str]
    clients: list[PresentClient]


@router.get(
    "/channels/{channel}/presence",
    responses={
        400: {"description": "Invalid channel name."},
        401: {"description": "Missing or invalid token."},
        403: {"description": "No right to subscribe to the channel."},
    },
)
async def presence(
    channel: str,
    cluster: ClusterState = Depends(get_cluster),
    principal: Principal = Depends(get_principal),
) -> Presence:
    """Streams of every hub process whose channels or patterns cover ``channel``."""
    validate_channel(channel)
    require_subscribe(principal, channel)
    present = [
        r
        for r in await cluster.list_clients()
        if any(matches(name, channel) for name in r["channels"])
    ]
    present.sort(key=lambda r: r["connected_at"])
    return Presence(
        channel=channel,
        users=sorted({r["user_id"] for r in present if r["user_id"] is not None}),
        clients=[
            PresentClient(
                client_id=r["client_id"], user_id=r["user_id"], connected_at=r["connected_at"]
            )
            for r in present
        ],
    )

"""The admin API under ``/api/v1/sse``: broadcast, send, disconnect, stats, clients.

Sending and disconnecting go through the broker (``$client:<id>`` and ``$control``), so they
reach the client on whichever hub process holds it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..auth import Principal, require_admin
from ..channels import BROADCAST, CONTROL, DISCONNECT_EVENT, client_channel
from ..cluster import ClientRecord, ClusterState
from ..connection import SLOW_CONSUMER
from ..errors import NotFound
from ..event import Event, make_event, require_data_size
from ..gate import Gate
from ..hub import Hub
from ..settings import Settings
from .deps import get_cluster, get_gate, get_hub, get_principal, get_settings

router = APIRouter(prefix="/api/v1/sse", tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid token."},
    403: {"description": "Not an admin (nor the owner of the client)."},
    404: {"description": "No such client."},
}


class Message(BaseModel):
    """An event for clients: ``data`` is any JSON (a string is sent as it is)."""

    event: str | None = Field(None, description="SSE event type; `message` when omitted.")
    data: Any = Field(None, description="Payload.")


class Done(BaseModel):
    """Outcome of a command, with the id of the event it published."""

    message: str
    id: str | None = None


class ClientInfo(BaseModel):
    """One open stream (client info); counters only from the process holding it."""

    id: str
    user_id: str | None
    ip: str
    user_agent: str
    channels: list[str]
    connected_since: str
    uptime_seconds: float
    message_count: int | None
    bytes: int | None
    node: str


def sized_event(settings: Settings, channel: str, body: Message) -> Event:
    """The event for ``body`` on ``channel``, or 413 when its data is too large."""
    event = make_event(channel, body.event, body.data)
    require_data_size(event, settings.max_event_bytes)
    return event


async def owned_client(cluster: ClusterState, principal: Principal, client_id: str) -> ClientRecord:
    """The record of ``client_id`` if the caller is an admin or the client's user, else 404/403."""
    record = await cluster.locate_client(client_id)
    if record is None:
        raise NotFound(f"no client {client_id!r} is connected")
    if not (principal.admin or (principal.user_id and principal.user_id == record["user_id"])):
        require_admin(principal)
    return record


def client_info(record: ClientRecord, hub: Hub) -> ClientInfo:
    """Registry record plus the live counters when this process holds the stream."""
    conn = hub.connections.get(record["client_id"])
    since = record["connected_at"]
    return ClientInfo(
        id=record["client_id"],
        user_id=record["user_id"],
        ip=record["ip"],
        user_agent=record["user_agent"],
        channels=record["channels"],
        connected_since=datetime.fromtimestamp(since, UTC).isoformat(),
        uptime_seconds=round(time.time() - since, 3),
        message_count=conn.messages_sent if conn else None,
        bytes=conn.bytes_sent if conn else None,
        node=record["node"],
    )


@router.post("/broadcast", responses=ERRORS)
async def broadcast(
    body: Message,
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> Done:
    """Send an event to every `/connect` client stream (admin)."""
    require_admin(principal)
    stored = await hub.publish(sized_event(settings, BROADCAST, body))
    return Done(message="broadcast sent", id=stored.id)


@router.post("/send/{client_id}", responses=ERRORS)
async def send(
    client_id: str,
    body: Message,
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    cluster: ClusterState = Depends(get_cluster),
    principal: Principal = Depends(get_principal),
) -> Done:
    """Send an event to one `/connect` client (admin, or the user owning that client)."""
    record = await owned_client(cluster, principal, client_id)
    channel = client_channel(client_id)
    if channel not in record["channels"]:
        raise NotFound(f"client {client_id!r} is a channel stream, not a /connect client")
    stored = await hub.publish(sized_event(settings, channel, body))
    return Done(message="message sent", id=stored.id)


@router.post("/disconnect/{client_id}", responses=ERRORS)
async def disconnect(
    client_id: str,
    hub: Hub = Depends(get_hub),
    cluster: ClusterState = Depends(get_cluster),
    principal: Principal = Depends(get_principal),
) -> Done:
    """Close one stream, on whichever process holds it (admin, or its user)."""
    await owned_client(cluster, principal, client_id)
    await hub.publish(Event(channel=CONTROL, event=DISCONNECT_EVENT, data=client_id))
    return Done(message="disconnected")


@router.get("/stats", responses=ERRORS)
async def stats(
    hub: Hub = Depends(get_hub),
    gate: Gate = Depends(get_gate),
    cluster: ClusterState = Depends(get_cluster),
    principal: Principal = Depends(get_principal),
) -> dict[str, Any]:
    """Hub statistics; connection counts are cluster-wide, the rest this process's."""
    require_admin(principal)
    s = hub.stats
    live = list(hub.connections.values())
    subscribers = hub.subscriber_counts()
    channels = {
        name: {"subscribers": subscribers.get(name, 0), "publishes": gate.publishes.get(name, 0)}
        for name in sorted({*subscribers, *gate.publishes})
    }
    return {
        "statistics": {
            "active_connections": await cluster.active_connections(),
            "local_connections": len(live),
            "total_connections": s.total_connections,
            "total_messages": s.closed_messages + sum(c.messages_sent for c in live),
            "total_bytes": s.closed_bytes + sum(c.bytes_sent for c in live),
            "publishes": sum(gate.publishes.values()),
            "reconnects": s.resumes + s.resets,
            "slow_consumer_disconnects": s.closed.get(SLOW_CONSUMER, 0),
            "disconnects": dict(s.closed),
            "uptime_seconds": round(time.time() - s.started_at, 3),
            "node": gate.node,
            "channels": channels,
        }
    }


@router.get("/clients", responses=ERRORS)
async def clients(
    hub: Hub = Depends(get_hub),
    cluster: ClusterState = Depends(get_cluster),
    principal: Principal = Depends(get_principal),
) -> dict[str, list[ClientInfo]]:
    """Every open stream of the cluster (admin)."""
    require_admin(principal)
    records = sorted(await cluster.list_clients(), key=lambda r: r["connected_at"])
    return {"clients": [client_info(r, hub) for r in records]}


@router.get("/clients/{client_id}", responses=ERRORS)
async def client(
    client_id: str,
    hub: Hub = Depends(get_hub),
    cluster: ClusterState = Depends(get_cluster),
    principal: Principal = Depends(get_principal),
) -> ClientInfo:
    """One open stream (admin, or its user)."""
    return client_info(await owned_client(cluster, principal, client_id), hub)

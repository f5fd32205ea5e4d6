"""The reference peer: seed 000's design (FastAPI + sse-starlette + one asyncio.Queue per stream).

Run with the same uvicorn settings as ssehub (uvloop, httptools). It keeps the seed's shape: a
dict of channel → set of queues, an EventSourceResponse over a generator that checks
``request.is_disconnected()`` and waits on its queue with a 30 s timeout (then a heartbeat).
Events go straight to the queues (the memory case; the seed routes them through Redis pub/sub).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

app = FastAPI(title="seed-000 peer")
active: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}


async def broadcast(channel: str, data: dict[str, Any]) -> None:
    """Put one event on every queue of ``channel`` (the seed's ``_broadcast_to_channel``)."""
    for queue in active.get(channel, ()):
        await queue.put(data)


async def subscribe(channel: str, request: Request) -> AsyncGenerator[dict[str, str], None]:
    """The seed's ``SSEManager.subscribe``: register a queue, yield until the client goes."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    active.setdefault(channel, set()).add(queue)
    try:
        yield {
            "event": "connected",
            "data": json.dumps({"timestamp": datetime.now(UTC).isoformat()}),
        }
        while True:
            if await request.is_disconnected():
                break
            try:
                data = await asyncio.wait_for(queue.get(), timeout=30.0)
                yield {"event": data.get("event") or "message", "data": data["data"]}
            except TimeoutError:
                yield {
                    "event": "heartbeat",
                    "data": json.dumps({"timestamp": datetime.now(UTC).isoformat()}),
                }
    finally:
        subs = active.get(channel)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del active[channel]


@app.get("/sse/{channel}")
async def stream(request: Request, channel: str) -> EventSourceResponse:
    """One channel's event stream."""
    return EventSourceResponse(subscribe(channel, request))


@app.post("/publish")
async def publish(request: Request) -> dict[str, int]:
    """Publish a batch ``[{"channel", "event"?, "data"}]``; strings are sent as they are."""
    items = await request.json()
    for item in items:
        data = item.get("data")
        text = data if isinstance(data, str) else json.dumps(data)
        await broadcast(item["channel"], {"event": item.get("event"), "data": text})
    return {"published": len(items)}


class PublishBody(BaseModel):
    """The seed's single-event body: an event type and any JSON data."""

    event: str | None = None
    data: Any = None


@app.post("/api/v1/publish/{channel}")
async def publish_one(channel: str, body: PublishBody) -> dict[str, str]:
    """Publish one event to ``channel`` (what SDK publishers call, one message per request)."""
    data = body.data
    text = data if isinstance(data, str) else json.dumps(data)
    await broadcast(channel, {"event": body.event, "data": text})
    return {"channel": channel, "status": "published"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}

"""A minimal FastAPI publish route: a pydantic body in, a pydantic model out, nothing else."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="minimal FastAPI publish")
sequence = itertools.count(1)


class PublishBody(BaseModel):
    """One event."""

    event: str | None = None
    data: Any = None


class Published(BaseModel):
    """Where it went."""

    id: str
    channel: str


@app.post("/api/v1/publish/{channel}")
async def publish(channel: str, body: PublishBody) -> Published:
    """Accept one event and answer with an id."""
    return Published(id=f"0-{next(sequence)}", channel=channel)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}

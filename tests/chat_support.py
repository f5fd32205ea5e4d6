"""Helpers of the chat tests: databases (SQLite file, PostgreSQL schema) and a chat hub."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from fake_openai import FakeOpenAI
from harness import RunningHub, running_hub
from ssehub.parser import ServerSentEvent
from ssehub.settings import Settings

POSTGRES_URL = os.environ.get(
    "SSEHUB_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
FINAL = ("ai_response_complete", "conversation_error")


@contextlib.asynccontextmanager
async def database(kind: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Settings of a fresh store: a SQLite file, or a throwaway PostgreSQL schema."""
    if kind == "sqlite":
        yield {"database_url": f"sqlite+aiosqlite:///{tmp_path}/chat.db"}
        return
    dsn = POSTGRES_URL.replace("+asyncpg", "")
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL does not answer at {POSTGRES_URL}: {exc!r}")
    schema = f"ssehub_test_{uuid.uuid4().hex[:12]}"
    try:
        yield {"database_url": POSTGRES_URL, "database_schema": schema}
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def chat_settings(db: dict[str, Any], fake: FakeOpenAI | None = None, **overrides: Any) -> Settings:
    """Settings of a hub answering with ``fake`` (or the demo provider at full speed)."""
    values: dict[str, Any] = {
        "llm_provider": "openai" if fake else "demo",
        "llm_base_url": fake.base_url if fake else None,
        "llm_api_key": "test-key",
        "llm_max_retries": 0,
        "llm_timeout_seconds": 2.0,
        "demo_pace_seconds": 0.0,
        **db,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def chat_hub(
    db: dict[str, Any], fake: FakeOpenAI | None = None, **overrides: Any
) -> AsyncIterator[RunningHub]:
    """A hub on a free port with a chat store and provider."""
    async with running_hub(chat_settings(db, fake, **overrides)) as hub:
        yield hub


async def create_conversation(
    client: httpx.AsyncClient, base: str, headers: dict[str, str] | None = None, **body: Any
) -> str:
    """Create a conversation and return its id."""
    response = await client.post(f"{base}/api/v1/conversations", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def send(
    client: httpx.AsyncClient, base: str, cid: str, content: str, **kw: Any
) -> dict[str, Any]:
    """POST a message, asserting 202."""
    url = f"{base}/api/v1/conversations/{cid}/messages"
    response = await client.post(url, json={"content": content}, **kw)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


async def messages(client: httpx.AsyncClient, base: str, cid: str, **kw: Any) -> list[Any]:
    """The stored messages of a conversation."""
    response = await client.get(f"{base}/api/v1/conversations/{cid}", **kw)
    assert response.status_code == 200, response.text
    return response.json()["messages"]  # type: ignore[no-any-return]


def payloads(events: list[ServerSentEvent], name: str) -> list[dict[str, Any]]:
    """Decoded data of the events named ``name``."""
    return [orjson.loads(e.data) for e in events if e.event == name]


def turn_events(events: list[ServerSentEvent]) -> list[str]:
    """Event names other than the stream's own ``connected``."""
    return [e.event for e in events if e.event != "connected"]


def stream_url(base: str, cid: str) -> str:
    """The SSE stream of conversation ``cid`` on the hub at ``base``."""
    return f"{base}/api/v1/conversations/{cid}/stream"

"""Helpers of the Durable Streams tests: the pinned npm packages, stores and hub processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from chat_support import POSTGRES_URL
from harness import HubProcess, start_hub_process
from npm_support import npm_packages
from redis_support import delete_prefix, shared_redis_url, unique_prefix

JS_DIR = Path(__file__).resolve().parent / "js"
MOUNT = "/ds"


def node_modules() -> Path:
    """``npm install`` of the locked packages once per lock file (skips loudly without Node)."""
    return npm_packages(
        JS_DIR, "install", "--no-save", needed_by="the Durable Streams client and conformance tests"
    )


def node(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a Node script of the test tree; returns its stdout (raises on failure)."""
    node_modules()
    done = subprocess.run(
        ["node", script, *args],
        cwd=JS_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def postgres_schema() -> Iterator[str]:
    """A throwaway PostgreSQL schema (skips loudly when PostgreSQL does not answer)."""
    dsn = POSTGRES_URL.replace("+asyncpg", "")
    schema = f"ssehub_ds_{uuid.uuid4().hex[:12]}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run(sql: str) -> None:  # in a thread: callers may be inside an event loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, execute(sql)).result()

    try:
        run("SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"NO POSTGRESQL at {POSTGRES_URL}: {exc!r}")
    try:
        yield schema
    finally:
        run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def hub_env(**values: str) -> dict[str, str]:
    """Environment of a test hub process: open access, CORS for any origin, short long-polls."""
    return {
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_CORS_ORIGINS": '["*"]',
        "SSEHUB_DS_LONG_POLL_SECONDS": "2",
        # Longer than the clients' idle keep-alive: no reuse of a socket the hub just closed.
        "SSEHUB_KEEP_ALIVE_SECONDS": "30",
        # The suite appends 10 MiB at once; the 1 MiB default answers 413 before reading the
        # body, which Node's fetch reports as a network error instead of the 413 the suite allows.
        "SSEHUB_MAX_REQUEST_BYTES": str(16 * 1024 * 1024),
        "SSEHUB_LOG_LEVEL": "warning",
        **values,
    }


@contextlib.contextmanager
def sqlite_hub(tmp_path: Path, **env: str) -> Iterator[HubProcess]:
    """``ssehub serve`` on the embedded store (a SQLite file) and the memory broker."""
    db = f"sqlite+aiosqlite:///{tmp_path}/ds.db"
    process = start_hub_process(tmp_path, hub_env(SSEHUB_DATABASE_URL=db, **env), start_timeout=60)
    try:
        yield process
    finally:
        process.kill()


@contextlib.contextmanager
def shared_store_env() -> Iterator[dict[str, str]]:
    """Settings of processes sharing one PostgreSQL schema and one Redis prefix."""
    redis_url = shared_redis_url()
    prefix = unique_prefix()
    for schema in postgres_schema():
        try:
            yield {
                "SSEHUB_DATABASE_URL": POSTGRES_URL,
                "SSEHUB_DATABASE_SCHEMA": schema,
                "SSEHUB_BROKER_URL": redis_url,
                "SSEHUB_REDIS_PREFIX": prefix,
            }
        finally:
            delete_prefix(redis_url, prefix)

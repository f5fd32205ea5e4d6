"""Shared fixtures: an HTTP client and a hub served on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import RunningHub, running_hub
from ssehub.settings import Settings


@pytest.fixture
def settings() -> Settings:
    """Settings for a test hub: memory broker, no .env file."""
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with generous pool limits and no read timeout for streams."""
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), limits=limits) as c:
        yield c


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[RunningHub]:
    """A hub with the fixture's settings, served on a free loopback port."""
    async with running_hub(settings) as running:
        yield running

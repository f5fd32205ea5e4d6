"""Shared fixtures: an HTTP client, a hub served on a free loopback port, Redis keys of one test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from harness import RunningHub, running_hub
from redis_support import RedisKeys, delete_prefix, shared_redis_url, unique_prefix
from ssehub.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow run first, so parallel workers (``make test``) finish together."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture
def redis_keys() -> Iterator[RedisKeys]:
    """The shared test Redis and a key prefix of this test alone; its keys are deleted after."""
    keys = RedisKeys(shared_redis_url(), unique_prefix())
    yield keys
    delete_prefix(keys.url, keys.prefix)

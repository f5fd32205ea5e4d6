"""Redis clients on a bounded, blocking connection pool, shared by every Redis-backed part."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry


def pooled_client(
    url: str, *, max_connections: int = 64, retries: int = 1, **options: Any
) -> aioredis.Redis:
    """A client whose bursts wait for one of ``max_connections`` instead of opening hundreds."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), retries),
        **options,
    )
    return aioredis.Redis.from_pool(pool)

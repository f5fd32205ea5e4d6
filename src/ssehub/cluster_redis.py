"""ClusterState on Redis: the facts every hub process of one backplane shares.

Slots and client records are leases: sorted sets scored by expiry time, refreshed by each
process's ``keepalive``, so what a killed process held expires by itself after ``lease``
seconds. Atomic steps (acquire, token bucket) are Lua scripts timed by the Redis clock.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .cluster import ClientRecord
from .errors import BrokerUnavailable

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
log = logging.getLogger("ssehub.cluster")

LEASE_SECONDS = 35.0  # > 3 keepalive intervals of the gate

ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisClusterState:
    """Tickets, slots, rate buckets and the client registry in Redis under one key prefix."""

    def __init__(self, url: str, *, prefix: str = "ssehub:", lease: float = LEASE_SECONDS):
        self.prefix = prefix + "cl:"
        self.lease = lease
        self.redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            retry=Retry(NoBackoff(), 1),
        )
        self._acquire = self.redis.register_script(ACQUIRE)
        self._token = self.redis.register_script(TOKEN)
        self._clients = self.prefix + "clients"
        self._expiry = self.prefix + "client-expiry"
        self._held: dict[str, set[str]] = {}  # holder → scopes this process acquired for it

    @classmethod
    def from_settings(cls, settings: Any) -> RedisClusterState:
        return cls(settings.broker_url, prefix=getattr(settings, "redis_prefix", "ssehub:"))

    async def start(self) -> None:
        """Connections are made on first use."""

    async def close(self) -> None:
        await self.redis.aclose()

    def _slot_key(self, scope: str) -> str:
        return f"{self.prefix}slot:{scope}"

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (aioredis.RedisError, OSError) as exc:
            raise BrokerUnavailable("the Redis cluster state is unreachable; retry") from exc

    async def _forget(self, coro: Any) -> None:
        """Release something; when Redis is away, its lease expires instead."""
        try:
            await coro
        except (aioredis.RedisError, OSError):
            log.warning("redis unreachable: a slot or client record will expire by its lease")

    # -- tickets -------------------------------------------------------------------------------

    async def put_ticket(self, ticket: str, grant: dict[str, Any], ttl: float) -> None:
        key = f"{self.prefix}ticket:{ticket}"
        await self._call(self.redis.set(key, orjson.dumps(grant), px=max(1, int(ttl * 1000))))

    async def take_ticket(self, ticket: str) -> dict[str, Any] | None:
        raw = await self._call(self.redis.getdel(f"{self.prefix}ticket:{ticket}"))
        return orjson.loads(raw) if raw else None  # type: ignore[no-any-return]

    # -- slots and rate buckets ----------------------------------------------------------------

    async def acquire_slot(self, scope: str, holder: str, limit: int) -> bool:
        now = time.time()
        args = [repr(now), holder, limit, repr(now + self.lease), int(self.lease * 2000)]
        added = await self._call(self._acquire(keys=[self._slot_key(scope)], args=args))
        if added:
            self._held.setdefault(holder, set()).add(scope)
        return bool(added)

    async def release_slot(self, scope: str, holder: str) -> None:
        scopes = self._held.get(holder)
        if scopes is not None:
            scopes.discard(scope)
            if not scopes:
                del self._held[holder]
        await self._forget(self.redis.zrem(self._slot_key(scope), holder))

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        wait = await self._call(
            self._token(keys=[f"{self.prefix}bucket:{key}"], args=[repr(rate), burst])
        )
        return float(wait)

    # -- client registry -----------------------------------------------------------------------

    async def register_client(self, record: ClientRecord) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._clients, record["client_id"], orjson.dumps(record))
            pipe.zadd(self._expiry, {record["client_id"]: time.time() + self.lease})
            await self._call(pipe.execute())

    async def unregister_client(self, client_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._clients, client_id)
            pipe.zrem(self._expiry, client_id)
            await self._forget(pipe.execute())

    async def locate_client(self, client_id: str) -> ClientRecord | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(self._expiry, client_id)
            pipe.hget(self._clients, client_id)
            expiry, raw = await self._call(pipe.execute())
        if raw is None or expiry is None or expiry < time.time():
            return None
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def list_clients(self) -> list[ClientRecord]:
        ids = await self._live_ids()
        if not ids:
            return []
        raws = await self._call(self.redis.hmget(self._clients, ids))
        return [orjson.loads(raw) for raw in raws if raw]

    async def active_connections(self) -> int:
        return len(await self._live_ids())

    async def _live_ids(self) -> list[str]:
        """Ids of unexpired client records; expired ones (a dead process's) are dropped."""
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self._expiry, "-inf", repr(now))
            pipe.zrangebyscore(self._expiry, repr(now), "+inf")
            dead, live = await self._call(pipe.execute())
        if dead:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._clients, *dead)
                pipe.zrem(self._expiry, *dead)
                await self._call(pipe.execute())
        return list(live)

    async def keepalive(self, client_ids: list[str]) -> None:
        """Extend the leases of this process's streams: slots and client records."""
        if not client_ids:
            return
        until = time.time() + self.lease
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in client_ids:
                pipe.zadd(self._expiry, {cid: until}, xx=True)
                for scope in self._held.get(cid, ()):
                    pipe.zadd(self._slot_key(scope), {cid: until}, xx=True)
            await self._call(pipe.execute())

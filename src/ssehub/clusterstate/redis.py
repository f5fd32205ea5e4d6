"""Cluster state in Redis: the facts every hub process of one backplane shares.

Slots and client records are leases: sorted sets scored by expiry time, refreshed by each
process's ``keepalive``, so what a killed process held expires by itself after ``lease``
seconds. Slots are also tagged with their process, which keeps a short-lived liveness key:
a scope at its limit first drops the slots of dead processes, so a user whose streams were on a
killed process can reconnect at once. Atomic steps are Lua scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from ..background import stop_task
from ..errors import BrokerUnavailable
from ..redis_client import pooled_client
from .base import Bucket, ClientRecord

log = logging.getLogger("ssehub.cluster")

LEASE_SECONDS = 35.0  # > 3 keepalive intervals of the gate

KEEPALIVE_CHUNK = 1000  # lease renewals per round trip

NODE_TTL_SECONDS = 5.0  # a process silent this long counts as dead for slot limits

ACQUIRE = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= limit then
  local alive = {}
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local node = string.match(member, '^([^|]+)|')
    if node then
      if alive[node] == nil then alive[node] = redis.call('EXISTS', ARGV[6] .. node) == 1 end
      if not alive[node] then redis.call('ZREM', KEYS[1], member) end
    end
  end
  if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Several buckets, all or none: KEYS are the buckets, ARGV (rate, burst, cost) per bucket.
TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local levels, waits, short = {}, {}, false
for i, key in ipairs(KEYS) do
  local rate, burst, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local state = redis.call('HMGET', key, 'tokens', 'stamp')
  local tokens = tonumber(state[1]) or burst
  local stamp = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
  local need = math.min(cost, burst)
  local wait = 0
  if tokens < need then wait = (need - tokens) / rate; short = true end
  levels[i], waits[i] = tokens, tostring(wait)
end
for i, key in ipairs(KEYS) do
  local rate, burst, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local tokens = levels[i]
  if not short then tokens = tokens - cost end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'stamp', tostring(now))
  redis.call('PEXPIRE', key, math.ceil((burst - math.min(tokens, 0)) / rate * 1000) + 1000)
end
return waits
"""


class RedisClusterState:
    """Tickets, slots, rate buckets and the client registry in Redis under one key prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ssehub:",
        lease: float = LEASE_SECONDS,
        node_ttl: float = NODE_TTL_SECONDS,
    ) -> None:
        self.prefix = prefix + "cl:"
        self.lease = lease
        self.node = secrets.token_hex(6)
        self.node_ttl = node_ttl
        self._node_key = f"{self.prefix}node:{self.node}"
        self._beat: asyncio.Task[None] | None = None
        self.redis = pooled_client(url, decode_responses=True)
        self._acquire = self.redis.register_script(ACQUIRE)
        self._tokens = self.redis.register_script(TOKENS)
        self._clients = self.prefix + "clients"
        self._expiry = self.prefix + "client-expiry"
        self._held: dict[str, set[str]] = {}  # holder → scopes this process acquired for it

    @classmethod
    def from_settings(cls, settings: Any) -> RedisClusterState:
        """The cluster state on ``settings.broker_url`` under the hub's key prefix."""
        return cls(settings.broker_url, prefix=getattr(settings, "redis_prefix", "ssehub:"))

    async def start(self) -> None:
        """Start announcing that this process is alive."""
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self._announce()
        self._beat = asyncio.create_task(self._beat_forever(), name="ssehub-cluster-beat")

    async def close(self) -> None:
        await stop_task(self._beat)
        with contextlib.suppress(aioredis.RedisError, OSError):
            await self.redis.delete(self._node_key)
        await self.redis.aclose()

    async def _announce(self) -> None:
        await self.redis.set(self._node_key, "1", px=int(self.node_ttl * 1000))

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.node_ttl / 4)
            with contextlib.suppress(aioredis.RedisError, OSError):
                await self._announce()

    def _member(self, holder: str) -> str:
        return f"{self.node}|{holder}"

    def _slot_key(self, scope: str) -> str:
        return f"{self.prefix}slot:{scope}"

    async def _required(self, coro: Any) -> Any:
        try:
            return await coro
        except (aioredis.RedisError, OSError) as exc:
            raise BrokerUnavailable("the Redis cluster state is unreachable; retry") from exc

    async def _best_effort(self, coro: Any) -> None:
        """Release something; when Redis is away, its lease expires instead."""
        try:
            await coro
        except (aioredis.RedisError, OSError):
            log.warning("redis unreachable: a slot or client record will expire by its lease")

    # -- tickets -------------------------------------------------------------------------------

    async def put_ticket(self, ticket: str, grant: dict[str, Any], ttl: float) -> None:
        key = f"{self.prefix}ticket:{ticket}"
        await self._required(self.redis.set(key, orjson.dumps(grant), px=max(1, int(ttl * 1000))))

    async def take_ticket(self, ticket: str) -> dict[str, Any] | None:
        raw = await self._required(self.redis.getdel(f"{self.prefix}ticket:{ticket}"))
        grant: dict[str, Any] | None = orjson.loads(raw) if raw else None
        return grant

    # -- slots and rate buckets ----------------------------------------------------------------

    async def acquire_slot(self, scope: str, holder: str, limit: int) -> bool:
        now = time.time()
        args: list[str | int] = [
            repr(now),
            self._member(holder),
            limit,
            repr(now + self.lease),
            int(self.lease * 2000),
            f"{self.prefix}node:",
        ]
        added = await self._required(self._acquire(keys=[self._slot_key(scope)], args=args))
        if added:
            self._held.setdefault(holder, set()).add(scope)
        return bool(added)

    async def release_slot(self, scope: str, holder: str) -> None:
        scopes = self._held.get(holder)
        if scopes is not None:
            scopes.discard(scope)
            if not scopes:
                del self._held[holder]
        await self._best_effort(self.redis.zrem(self._slot_key(scope), self._member(holder)))

    async def take_tokens(self, buckets: Sequence[Bucket]) -> list[float]:
        keys = [f"{self.prefix}bucket:{key}" for key, _, _, _ in buckets]
        args = [arg for _, rate, burst, cost in buckets for arg in (repr(rate), burst, cost)]
        waits = await self._required(self._tokens(keys=keys, args=args))
        return [float(wait) for wait in waits]

    # -- client registry -----------------------------------------------------------------------

    async def register_client(self, record: ClientRecord) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._clients, record["client_id"], orjson.dumps(record))
            pipe.zadd(self._expiry, {record["client_id"]: time.time() + self.lease})
            await self._required(pipe.execute())

    async def unregister_client(self, client_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._clients, client_id)
            pipe.zrem(self._expiry, client_id)
            await self._best_effort(pipe.execute())

    async def locate_client(self, client_id: str) -> ClientRecord | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(self._expiry, client_id)
            pipe.hget(self._clients, client_id)
            expiry, raw = await self._required(pipe.execute())
        if raw is None or expiry is None or expiry < time.time():
            return None
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def list_clients(self) -> list[ClientRecord]:
        ids = await self._live_ids()
        if not ids:
            return []
        raws = await self._required(self.redis.hmget(self._clients, ids))
        return [orjson.loads(raw) for raw in raws if raw]

    async def active_connections(self) -> int:
        return len(await self._live_ids())

    async def _live_ids(self) -> list[str]:
        """Ids of unexpired client records; expired ones (a dead process's) are dropped."""
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(self._expiry, "-inf", repr(now))
            pipe.zrangebyscore(self._expiry, repr(now), "+inf")
            dead, live = await self._required(pipe.execute())
        if dead:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._clients, *dead)
                pipe.zrem(self._expiry, *dead)
                await self._required(pipe.execute())
        return list(live)

    async def keepalive(self, client_ids: list[str]) -> None:
        """Extend the leases of this process's streams: slots and client records.

        One ZADD per key and chunk of members, sent in pipelines of about ``KEEPALIVE_CHUNK``
        members: 20k streams cost a few dozen commands, not 40,000, and no single step holds
        the event loop or Redis for long.
        """
        if not client_ids:
            return
        until = time.time() + self.lease
        by_key: dict[str, list[str]] = {self._expiry: list(client_ids)}
        for cid in client_ids:
            for scope in self._held.get(cid, ()):
                by_key.setdefault(self._slot_key(scope), []).append(self._member(cid))
        pipe = self.redis.pipeline(transaction=False)
        queued = 0
        for key, members in by_key.items():
            for start in range(0, len(members), KEEPALIVE_CHUNK):
                chunk = members[start : start + KEEPALIVE_CHUNK]
                pipe.zadd(key, dict.fromkeys(chunk, until), xx=True)
                queued += len(chunk)
                if queued >= KEEPALIVE_CHUNK:
                    await self._required(pipe.execute())
                    queued = 0
        if queued:
            await self._required(pipe.execute())

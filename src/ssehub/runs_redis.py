"""Run state in Redis, shared by every hub process on one Redis broker.

Per run: a hash ``{prefix}run:{channel}`` (status, stage/progress fields, last id, run id), a
string ``{prefix}runtext:{channel}`` (APPENDed tokens) and the list ``{prefix}runended:{channel}``
of the ids of the runs it replaced (the latest few); active runs sit in the sorted set
``{prefix}runs:active`` by last activity. One Lua script folds an event in atomically, so
processes agree on when a run ended; a silent run is ended by whichever process ZREMs it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from redis.exceptions import RedisError

from . import messages
from .channels import Selector
from .errors import BrokerUnavailable
from .event import Event
from .redis_client import pooled_client
from .runs import MAX_ENDED_IDS, MemoryRuns, RunState, decode, end_silent_run, resolve_run

log = logging.getLogger("ssehub.runs")

FIELDS = ("stage_status", "progress", "message", "current", "total", "item_name", "error")

OBSERVE = """
local kind = ARGV[1]
local data = cjson.decode(ARGV[7])
local status = redis.call('HGET', KEYS[1], 'status')
local current = redis.call('HGET', KEYS[1], 'run_id')
local finished = status and status ~= 'running'
local open = false
if not status or current ~= ARGV[9] then
  open = true
elseif finished and kind == 'stage_update' then
  local s = data['status']
  open = s == 'pending' or s == 'queued'
  if status ~= 'cancelled' then
    open = open or s == 'started' or s == 'running' or s == 'processing'
  end
end
if open then
  if current and current ~= ARGV[9] then
    redis.call('RPUSH', KEYS[5], current)
    redis.call('LTRIM', KEYS[5], -tonumber(ARGV[11]), -1)
    redis.call('EXPIRE', KEYS[5], ARGV[10])
  end
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'status', 'running', 'project', ARGV[5], 'stage', ARGV[6],
             'run_id', ARGV[9], 'last_seq', '0')
  redis.call('SADD', KEYS[4], ARGV[8])
  redis.call('EXPIRE', KEYS[4], ARGV[10])
elseif finished then
  return 0
end
if tonumber(ARGV[2]) > tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0') then
  redis.call('HSET', KEYS[1], 'last_seq', ARGV[2], 'last_id', ARGV[3])
end
redis.call('HSET', KEYS[1], 'touched', ARGV[4])
local function put(field, value)
  if value == nil or value == cjson.null then
    redis.call('HDEL', KEYS[1], field)
  else
    redis.call('HSET', KEYS[1], field, cjson.encode(value))
  end
end
if kind == 'token' then
  if type(data['full_text']) == 'string' then
    redis.call('SET', KEYS[2], data['full_text'])
  elseif type(data['content']) == 'string' then
    redis.call('APPEND', KEYS[2], data['content'])
  end
elseif kind == 'stage_update' then
  put('stage_status', data['status']); put('progress', data['progress'])
  put('message', data['message'])
elseif kind == 'progress' then
  put('current', data['current']); put('total', data['total'])
  put('progress', data['progress']); put('item_name', data['item_name'])
elseif kind == 'done' then
  redis.call('HSET', KEYS[1], 'status', 'done')
  if type(data['full_text']) == 'string' then redis.call('SET', KEYS[2], data['full_text']) end
elseif kind == 'error' then
  local e = data['error']
  redis.call('HSET', KEYS[1], 'status', e == 'cancelled' and 'cancelled' or 'error')
  put('error', tostring(e))
end
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[8])
else
  redis.call('ZREM', KEYS[3], ARGV[8])
end
redis.call('EXPIRE', KEYS[1], ARGV[10])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[10]) end
return 1
"""


class RedisRuns(MemoryRuns):
    """The RunStore over Redis; retention rules and the watchdog loop are MemoryRuns'."""

    def __init__(self, url: str, *, prefix: str = "ssehub:", **kw: Any) -> None:
        super().__init__(**kw)
        self.redis = pooled_client(url)
        self.prefix = prefix
        self._observe = self.redis.register_script(OBSERVE)

    def _keys(self, channel: str) -> list[str]:
        return [f"{self.prefix}run:{channel}", f"{self.prefix}runtext:{channel}"]

    def _ended_key(self, channel: str) -> str:
        return f"{self.prefix}runended:{channel}"

    def _project_key(self, prefix: str, project: str) -> str:
        """The set of a project's run channels (what a project-wide stream snapshots)."""
        return f"{self.prefix}runs:project:{prefix}:{project}"

    @property
    def _active(self) -> str:
        return f"{self.prefix}runs:active"

    async def get(self, channel: str) -> RunState | None:
        run_key, text_key = self._keys(channel)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                fields, text = await pipe.hgetall(run_key).get(text_key).execute()
        except RedisError as exc:
            raise BrokerUnavailable(f"run state unavailable: {exc}") from exc
        if not fields:
            return None
        raw = {k.decode(): v.decode() for k, v in fields.items()}
        run = RunState(
            channel=channel,
            project_id=raw.get("project", ""),
            stage=raw.get("stage", ""),
            run_id=raw.get("run_id", ""),
            status=raw.get("status", "running"),
            last_seq=int(raw.get("last_seq") or 0),
            last_id=raw.get("last_id", ""),
        )
        for name in FIELDS:
            if name in raw:
                setattr(run, name, orjson.loads(raw[name]))
        run.parts = [text.decode()] if text else []
        return run

    async def check(self, event: Event) -> str | None:
        data = decode(event)
        if data is None:
            return None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self._keys(event.channel)[0], "status", "run_id")
                pipe.lrange(self._ended_key(event.channel), 0, -1)
                (status, current), ended = await pipe.execute()
        except RedisError as exc:
            raise BrokerUnavailable(f"run state unavailable: {exc}") from exc
        rid = resolve_run(
            status.decode() if status is not None else None,
            current.decode() if current is not None else "",
            [e.decode() for e in ended],
            event.event or "",
            data,
        )
        return None if data.get("run_id") == rid else rid

    async def observe(self, event: Event) -> None:
        data = decode(event)
        if data is None:
            return
        prefix, project, stage = messages.parse_stage_channel(event.channel)  # type: ignore[misc]
        keep = int(self.outcome_ttl or 86400)
        args = [
            event.event,
            event.seq,
            event.id,
            repr(time.time()),
            project,
            stage,
            orjson.dumps(data).decode(),
            event.channel,
            str(data.get("run_id") or ""),
            keep,
            MAX_ENDED_IDS,
        ]
        try:
            keys = [
                *self._keys(event.channel),
                self._active,
                self._project_key(prefix, project),
                self._ended_key(event.channel),
            ]
            await self._observe(keys=keys, args=args)
        except RedisError:
            # The event is published; only the snapshot state lags. Never fail the publish.
            log.warning("could not record run state of %s", event.channel, exc_info=True)

    async def snapshots(self, selector: Selector) -> list[Event]:
        channels = {c for c in selector.channels if messages.parse_stage_channel(c) is not None}
        for pattern in selector.patterns:
            # Only project-wide patterns are looked up (in the project's set, never a SCAN).
            parsed = messages.parse_stage_channel(pattern)
            if parsed is None or "*" in parsed[0] + parsed[1]:
                continue
            members = await self.redis.smembers(self._project_key(parsed[0], parsed[1]))
            channels.update(m.decode() for m in members if selector.covers(m.decode()))
        runs = [await self.get(channel) for channel in sorted(channels)]
        return [run.snapshot_event() for run in runs if run is not None and run.last_id]

    async def start(self, publish: Any) -> None:
        self.loop = asyncio.get_running_loop()
        if self.publisher_timeout > 0:
            self._watchdog = asyncio.create_task(self._watch_redis(publish), name="ssehub-runs")

    async def close(self) -> None:
        await super().close()
        await self.redis.aclose()

    async def _watch_redis(self, publish: Any) -> None:
        timeout = self.publisher_timeout
        interval = max(0.05, min(1.0, timeout / 4))
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(RedisError):
                silent = await self.redis.zrangebyscore(self._active, "-inf", time.time() - timeout)
                for raw in silent:
                    if not await self.redis.zrem(self._active, raw):
                        continue  # another hub process claimed it
                    run = await self.get(raw.decode())
                    if run is not None and not run.finished:
                        await end_silent_run(publish, run)

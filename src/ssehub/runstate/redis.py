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
from typing import cast

import orjson
from redis.exceptions import RedisError

from ..background import stop_task
from ..channels import Selector
from ..errors import BrokerUnavailable
from ..event import Event
from ..redis_client import pooled_client
from .base import MAX_ENDED_IDS, Publish, RunState, end_silent_run, new_run_id
from .rules import RunTimes, StageMessage, resolve_run, run_id_to_add, stage_channel

log = logging.getLogger("ssehub.runs")

FIELDS = ("stage_status", "progress", "message", "current", "total", "item_name", "error")

# ``opens_run`` and the fold of ``MemoryRunStore.observe`` as one atomic step; what the message
# says was read in Python (``StageMessage``), so this script never parses the event.
OBSERVE = """
local rid = ARGV[1]
local status = redis.call('HGET', KEYS[1], 'status')
local current = redis.call('HGET', KEYS[1], 'run_id')
local open = not status or (rid ~= '' and rid ~= current)
if not open and status ~= 'running' then
  if not string.find(' ' .. ARGV[3] .. ' ', ' ' .. status .. ' ', 1, true) then return 0 end
  open = true
end
if open then
  if rid == '' then rid = ARGV[2] end
  if current and current ~= rid then
    redis.call('RPUSH', KEYS[5], current)
    redis.call('LTRIM', KEYS[5], -tonumber(ARGV[11]), -1)
  end
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'status', 'running', 'project', ARGV[7], 'stage', ARGV[8],
             'run_id', rid, 'last_seq', '0')
  redis.call('SADD', KEYS[4], ARGV[9])
  redis.call('PEXPIRE', KEYS[4], ARGV[10])
end
if tonumber(ARGV[4]) > tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0') then
  redis.call('HSET', KEYS[1], 'last_seq', ARGV[4], 'last_id', ARGV[5])
end
redis.call('HSET', KEYS[1], 'touched', ARGV[6])
for i = 16, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if ARGV[13] == '1' then
  redis.call('SET', KEYS[2], ARGV[14])
elseif ARGV[12] ~= '' then
  redis.call('APPEND', KEYS[2], ARGV[12])
end
if ARGV[15] ~= '' then redis.call('HSET', KEYS[1], 'status', ARGV[15]) end
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[9])
else
  redis.call('ZREM', KEYS[3], ARGV[9])
end
redis.call('PEXPIRE', KEYS[1], ARGV[10])
redis.call('PEXPIRE', KEYS[5], ARGV[10])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[10]) end
return 1
"""


class RedisRunStore:
    """The RunStore over Redis: every process of one backplane sees the same runs."""

    def __init__(self, url: str, *, prefix: str = "ssehub:", times: RunTimes | None = None) -> None:
        self.times = times or RunTimes()
        self.redis = pooled_client(url, decode_responses=True)
        self.prefix = prefix
        self.loop: asyncio.AbstractEventLoop | None = None
        self._observe = self.redis.register_script(OBSERVE)
        self._watchdog: asyncio.Task[None] | None = None

    # -- keys ----------------------------------------------------------------------------------

    def _run_key(self, channel: str) -> str:
        return f"{self.prefix}run:{channel}"

    def _text_key(self, channel: str) -> str:
        return f"{self.prefix}runtext:{channel}"

    def _ended_key(self, channel: str) -> str:
        return f"{self.prefix}runended:{channel}"

    def _project_key(self, prefix: str, project: str) -> str:
        """The set of a project's run channels (what a project-wide stream snapshots)."""
        return f"{self.prefix}runs:project:{prefix}:{project}"

    @property
    def _active(self) -> str:
        return f"{self.prefix}runs:active"

    # -- RunStore ------------------------------------------------------------------------------

    def set_retention(self, event: Event) -> None:
        self.times.set_retention(event)

    async def get(self, channel: str) -> RunState | None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._run_key(channel))
                pipe.get(self._text_key(channel))
                pipe.lrange(self._ended_key(channel), 0, -1)
                fields, text, ended = await pipe.execute()
        except RedisError as exc:
            raise BrokerUnavailable(f"run state unavailable: {exc}") from exc
        if not fields:
            return None
        raw: dict[str, str] = fields
        run = RunState(
            channel=channel,
            project_id=raw.get("project", ""),
            stage=raw.get("stage", ""),
            run_id=raw.get("run_id", ""),
            status=raw.get("status", "running"),
            last_seq=int(raw.get("last_seq") or 0),
            last_id=raw.get("last_id", ""),
            ended=list(ended),
        )
        for name in FIELDS:
            if name in raw:
                setattr(run, name, orjson.loads(raw[name]))
        run.parts = [text] if text else []
        return run

    async def check(self, event: Event) -> str | None:
        message = StageMessage.read(event)
        if message is None:
            return None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self._run_key(event.channel), "status", "run_id")
                pipe.lrange(self._ended_key(event.channel), 0, -1)
                (status, current), ended = await pipe.execute()
        except RedisError as exc:
            raise BrokerUnavailable(f"run state unavailable: {exc}") from exc
        rid = resolve_run(
            status,
            current or "",
            list(ended),
            message,
        )
        return run_id_to_add(message, rid)

    async def observe(self, event: Event) -> None:
        message = StageMessage.read(event)
        if message is None:
            return
        prefix, project, stage = stage_channel(event.channel)  # type: ignore[misc]
        fields, text, added, outcome = message.changes()
        args: list[str | int] = [
            message.run_id or "",
            new_run_id(),  # the id of a run it opens without naming one
            " ".join(message.reopens),
            event.seq,
            event.id,
            repr(time.time()),
            project,
            stage,
            event.channel,
            max(1, int(self.times.keep * 1000)),
            MAX_ENDED_IDS,
            added or "",
            "1" if text is not None else "",
            text or "",
            outcome or "",
        ]
        for name, value in fields.items():
            args += [name, "" if value is None else orjson.dumps(value).decode()]
        keys = [
            self._run_key(event.channel),
            self._text_key(event.channel),
            self._active,
            self._project_key(prefix, project),
            self._ended_key(event.channel),
        ]
        try:
            await self._observe(keys=keys, args=args)
        except RedisError:
            # The event is published; only the snapshot state lags. Never fail the publish.
            log.warning("could not record run state of %s", event.channel, exc_info=True)

    async def snapshots(self, selector: Selector) -> list[Event]:
        channels = {c for c in selector.channels if stage_channel(c) is not None}
        for pattern in selector.patterns:
            # Only project-wide patterns are looked up (in the project's set, never a SCAN).
            parsed = stage_channel(pattern)
            if parsed is None or "*" in parsed[0] + parsed[1]:
                continue
            try:
                key = self._project_key(parsed[0], parsed[1])
                members = cast(set[str], await self.redis.smembers(key))
            except RedisError as exc:
                raise BrokerUnavailable(f"run state unavailable: {exc}") from exc
            channels.update(m for m in members if selector.covers(m))
        runs = [await self.get(channel) for channel in sorted(channels)]
        return [run.snapshot_event() for run in runs if run is not None and run.last_id]

    # -- publisher timeout ---------------------------------------------------------------------

    async def start(self, publish: Publish) -> None:
        self.loop = asyncio.get_running_loop()
        if self.times.publisher_timeout > 0:
            self._watchdog = asyncio.create_task(
                self._end_silent_runs_forever(publish), name="ssehub-runs"
            )

    async def close(self) -> None:
        await stop_task(self._watchdog)
        await self.redis.aclose()

    async def _end_silent_runs_forever(self, publish: Publish) -> None:
        """Every interval: claim runs silent too long (one process wins each) and end them."""
        timeout = self.times.publisher_timeout
        while True:
            await asyncio.sleep(self.times.watch_interval)
            with contextlib.suppress(RedisError, BrokerUnavailable):
                cutoff = time.time() - timeout
                silent = cast(
                    list[tuple[str, float]],
                    await self.redis.zrangebyscore(self._active, "-inf", cutoff, withscores=True),
                )
                for channel, score in silent:
                    if not await self.redis.zrem(self._active, channel):
                        continue  # another hub process claimed it
                    run = await self.get(channel)
                    if run is None or run.finished or await end_silent_run(publish, run):
                        continue
                    # The broker is down: put the claim back, so a process tries again.
                    await self.redis.zadd(self._active, {channel: score}, nx=True)

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
import functools
import logging
import time
from typing import TYPE_CHECKING, cast

import orjson
from redis.exceptions import RedisError

from ..background import stop_task
from ..brokers.redis.scripts import StepScript
from ..brokers.redis.step import LuaStep
from ..channels import Selector
from ..errors import BrokerUnavailable
from ..event import Event
from ..redis_client import pooled_client
from .base import MAX_ENDED_IDS, Publish, RunClosed, RunState, end_silent_run, new_run_id
from .rules import (
    RunTimes,
    StageMessage,
    complete_message,
    resolve_run,
    run_id_to_add,
    splice_run_id,
    stage_channel,
    stamped_text,
)

if TYPE_CHECKING:
    from ..brokers.redis.broker import RedisBroker

log = logging.getLogger("ssehub.runs")

FIELDS = ("stage_status", "progress", "message", "current", "total", "item_name", "error")

# Whether the message reopens a run ended as ``status`` (A[3]: the statuses it reopens).
REOPENS = """
local function reopens(A, status)
  return string.find(' ' .. A[3] .. ' ', ' ' .. status .. ' ', 1, true) ~= nil
end
"""

# ``opens_run`` and the fold of ``MemoryRunStore.observe`` as one atomic step; what the message
# says was read in Python (``StageMessage``), so this script never parses the event. ``rid`` is
# the run id the message names ('' none), ``seq``/``id`` its position.
FOLD = (
    REOPENS
    + """
local function fold(K, A, rid, seq, id)
  local status = redis.call('HGET', K[1], 'status')
  local current = redis.call('HGET', K[1], 'run_id')
  local open = not status or (rid ~= '' and rid ~= current)
  if not open and status ~= 'running' then
    if not reopens(A, status) then return 0 end
    open = true
  end
  if open then
    if rid == '' then rid = A[2] end
    if current and current ~= rid then
      redis.call('RPUSH', K[5], current)
      redis.call('LTRIM', K[5], -tonumber(A[11]), -1)
    end
    redis.call('DEL', K[1], K[2])
    redis.call('HSET', K[1], 'status', 'running', 'project', A[7], 'stage', A[8],
               'run_id', rid, 'last_seq', '0')
    redis.call('SADD', K[4], A[9])
    redis.call('PEXPIRE', K[4], A[10])
  end
  if tonumber(seq) > tonumber(redis.call('HGET', K[1], 'last_seq') or '0') then
    redis.call('HSET', K[1], 'last_seq', seq, 'last_id', id)
  end
  redis.call('HSET', K[1], 'touched', A[6])
  for i = 18, #A, 2 do
    if A[i + 1] == '' then
      redis.call('HDEL', K[1], A[i])
    else
      redis.call('HSET', K[1], A[i], A[i + 1])
    end
  end
  if A[13] == '1' then
    redis.call('SET', K[2], A[14])
  elseif A[12] ~= '' then
    redis.call('APPEND', K[2], A[12])
  end
  if A[15] ~= '' then redis.call('HSET', K[1], 'status', A[15]) end
  if redis.call('HGET', K[1], 'status') == 'running' then
    redis.call('ZADD', K[3], A[6], A[9])
  else
    redis.call('ZREM', K[3], A[9])
  end
  redis.call('PEXPIRE', K[1], A[10])
  redis.call('PEXPIRE', K[5], A[10])
  if redis.call('EXISTS', K[2]) == 1 then redis.call('PEXPIRE', K[2], A[10]) end
  return 1
end
"""
)

OBSERVE = FOLD + "return fold(KEYS, ARGV, ARGV[1], ARGV[4], ARGV[5])\n"

# ``resolve_run``: the run id the message belongs to, or nil and why it is refused.
RESOLVE = """
local function resolve(K, A)
  local status = redis.call('HGET', K[1], 'status')
  local current = redis.call('HGET', K[1], 'run_id') or ''
  local rid = A[1]
  if not status then
    if rid == '' then return A[2] end
    return rid
  end
  if rid ~= '' and rid ~= current then
    for _, ended in ipairs(redis.call('LRANGE', K[5], 0, -1)) do
      if ended == rid then
        return nil, 'run ' .. rid .. ' already ended: a newer run replaced it'
      end
    end
    return rid
  end
  if status == 'running' then return current end
  if reopens(A, status) then
    if rid == '' then return A[2] end
    return rid
  end
  return nil, 'the run ' .. current .. ' already ended (' .. status .. '); start a new run first'
end
"""

# A JSON string as orjson writes it (only '"', '\\' and control characters escaped), so the id
# stamped here and the one ``stamp`` adds in Python are the same bytes.
JSON_STRING = r"""
local escapes = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                 ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
local function json_string(s)
  local quoted = string.gsub(s, '[%z\1-\31"\\]', function(c)
    return escapes[c] or string.format('\\u%04x', string.byte(c))
  end)
  return '"' .. quoted .. '"'
end
"""

# The run step of a stage message's publish: resolve its run (refusing one that continues an
# ended run), stamp a message naming none with its run's id (A[16] .. id .. A[17]), fold it in.
RUN_STEP = StepScript(
    head=FOLD + RESOLVE + JSON_STRING,
    before="""
local rid, refused = resolve(SK, SA)
if not rid then return refuse(refused) end
if SA[16] ~= '' then data = SA[16] .. json_string(rid) .. SA[17] end
answer = rid
""",
    after="fold(SK, SA, answer, sid, epoch .. '-' .. sid)",
)


class RedisRunStore:
    """The RunStore over Redis: every process of one backplane sees the same runs."""

    def __init__(self, url: str, *, prefix: str = "ssehub:", times: RunTimes | None = None) -> None:
        self.times = times or RunTimes()
        self.redis = pooled_client(url, decode_responses=True)
        self.url = url
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
        keys, args = self._fold(event.channel, message, new_run_id(), event.seq, event.id)
        try:
            await self._observe(keys=keys, args=args)
        except RedisError:
            # The event is published; only the snapshot state lags. Never fail the publish.
            log.warning("could not record run state of %s", event.channel, exc_info=True)

    async def before(self, event: Event) -> None:
        await complete_message(self, event)

    async def after(self, event: Event) -> None:
        await self.observe(event)

    def lua_step(self, event: Event, broker: RedisBroker) -> LuaStep | None:
        """The run step inside the broker's publish script, when it shares this store's keys:
        check, append and fold in one round trip. Sets the event's retention."""
        if broker.url != self.url or broker.prefix != self.prefix:
            return None
        message = StageMessage.read(event)
        if message is None:
            return None
        self.set_retention(event)
        fresh, stamp = new_run_id(), None
        head = tail = ""
        if message.run_id is None:
            # The script stamps the id it resolves where this fresh one stands.
            head, _, tail = stamped_text(message.data, fresh).partition(f'"{fresh}"')
            stamp = functools.partial(splice_run_id, head, tail)
        keys, args = self._fold(event.channel, message, fresh, "", "", head, tail)
        return LuaStep(RUN_STEP, keys, args, RunClosed, stamp)

    def _fold(
        self,
        channel: str,
        message: StageMessage,
        fresh: str,
        seq: int | str,
        event_id: str,
        head: str = "",
        tail: str = "",
    ) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of FOLD: ``message`` at ``seq`` (``event_id``) on ``channel``,
        ``fresh`` the id of a run it opens without naming one; ``head``/``tail``: its text
        around the run id the step stamps (none when empty)."""
        prefix, project, stage = stage_channel(channel)  # type: ignore[misc]
        fields, text, added, outcome = message.changes()
        args: list[str | int] = [
            message.run_id or "",
            fresh,
            " ".join(message.reopens),
            seq,
            event_id,
            repr(time.time()),
            project,
            stage,
            channel,
            max(1, int(self.times.keep * 1000)),
            MAX_ENDED_IDS,
            added or "",
            "1" if text is not None else "",
            text or "",
            outcome or "",
            head,
            tail,
        ]
        for name, value in fields.items():
            args += [name, "" if value is None else orjson.dumps(value).decode()]
        keys = [
            self._run_key(channel),
            self._text_key(channel),
            self._active,
            self._project_key(prefix, project),
            self._ended_key(channel),
        ]
        return keys, args

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

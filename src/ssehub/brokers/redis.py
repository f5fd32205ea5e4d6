"""The Redis backplane: a Stream per channel for history, Pub/Sub for live fan-out.

One Lua script per publish takes the next number of one global counter, appends the event to
its channel's stream with the entry id ``<seq>-0``, trims the stream to the configured size and
age (remembering the highest trimmed seq for gap detection), records the Idempotency-Key, and
PUBLISHes the event to ``<prefix>e:<channel>``. Each process has one reader: a Pub/Sub
connection SUBSCRIBEd to the channels and PSUBSCRIBEd to the patterns that have local
subscribers. Scripts run one at a time, so Pub/Sub order is seq order; after a lost connection
the reader re-subscribes and catches up from the streams. See docs/redis.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from ..channel_index import match_candidates, prefix_groups
from ..channels import Selector, is_pattern
from ..errors import BrokerUnavailable
from ..event import Event
from ..redis_client import pooled_client
from .base import EventHandler, GapHandler, History, format_id, parse_id

log = logging.getLogger("ssehub.redis")

FAULTS = (RedisError, OSError, asyncio.TimeoutError)
LISTEN_ACK_TIMEOUT = 5.0
PRUNE_EVERY_SECONDS = 60.0  # how often history reads of exact channels prune the index

PUBLISH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1])
  epoch = ARGV[1]
end
if ARGV[2] ~= '' then
  local first = redis.call('GET', KEYS[5])
  if first then return {epoch, first, 1} end
end
local seq = redis.call('INCR', KEYS[2])
local sid = string.format('%d', seq)
local maxlen = tonumber(ARGV[3])
if maxlen > 0 then
  local trimmed = 0
  if redis.call('EXISTS', KEYS[3]) == 0 then
    -- A new stream, or one that expired whole: what the channel (or any forgotten channel)
    -- held before counts as trimmed, so a resume from before it gets a reset, not a hole.
    trimmed = tonumber(redis.call('HGET', KEYS[8], ARGV[11]) or redis.call('GET', KEYS[9]) or '0')
  end
  redis.call('HSET', KEYS[8], ARGV[11], sid)
  local fields = {'x', ARGV[13], 't', ARGV[5], 'd', ARGV[9]}
  if ARGV[7] ~= '' then fields[#fields + 1] = 'e'; fields[#fields + 1] = ARGV[7] end
  if ARGV[8] ~= '' then fields[#fields + 1] = 'r'; fields[#fields + 1] = ARGV[8] end
  if ARGV[14] ~= '' then fields[#fields + 1] = 'l'; fields[#fields + 1] = ARGV[14] end
  redis.call('XADD', KEYS[3], sid .. '-0', unpack(fields))
  local len = redis.call('XLEN', KEYS[3])
  if len > maxlen then
    local old = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', len - maxlen)
    trimmed = math.max(trimmed, tonumber(string.match(old[#old][1], '^%d+')))
    redis.call('XTRIM', KEYS[3], 'MAXLEN', maxlen)
  end
  local cutoff = tonumber(ARGV[6])
  local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if #oldest > 0 and tonumber(oldest[1][2][2]) < cutoff then
    local last = nil
    for _, entry in ipairs(redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 256)) do
      if tonumber(entry[2][2]) >= cutoff then break end
      last = tonumber(string.match(entry[1], '^%d+'))
    end
    if last then
      redis.call('XTRIM', KEYS[3], 'MINID', string.format('%d', last + 1))
      if last > trimmed then trimmed = last end
    end
  end
  if trimmed > tonumber(redis.call('GET', KEYS[4]) or '0') then
    redis.call('SET', KEYS[4], string.format('%d', trimmed))
  end
  local keep = tonumber(ARGV[4])
  if redis.call('PTTL', KEYS[3]) < keep then redis.call('PEXPIRE', KEYS[3], keep) end
  if trimmed > 0 and redis.call('PTTL', KEYS[4]) < keep then
    redis.call('PEXPIRE', KEYS[4], keep)
  end
  redis.call('ZADD', KEYS[6], 'GT', ARGV[13], ARGV[11])
  redis.call('ZADD', KEYS[7], 0, ARGV[11])
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[5], sid .. ':' .. ARGV[11], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[10], epoch .. '\\n' .. sid .. '\\n' .. ARGV[12])
return {epoch, sid, 0}
"""

HEAD = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  redis.call('SET', KEYS[1], ARGV[1])
  epoch = ARGV[1]
end
return {epoch, redis.call('GET', KEYS[2]) or '0'}
"""

# Atomic, so a channel published to meanwhile cannot be dropped from the index. The newest
# seq of a forgotten channel raises the "forgotten" watermark: resumes from before it that may
# cover such a channel get a reset (the memory broker's ``_forgotten_upto``).
PRUNE = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
if #gone > 0 then
  local top = tonumber(redis.call('GET', KEYS[4]) or '0')
  for _, seq in ipairs(redis.call('HMGET', KEYS[3], unpack(gone))) do
    if seq and tonumber(seq) > top then top = tonumber(seq) end
  end
  redis.call('SET', KEYS[4], string.format('%d', top))
  redis.call('HDEL', KEYS[3], unpack(gone))
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('ZREM', KEYS[2], unpack(gone))
end
return #gone
"""


_GLOB_ESCAPES = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def glob_escape(text: str) -> str:
    """Escape Redis glob characters so ``text`` matches only itself."""
    return text.translate(_GLOB_ESCAPES)


class RedisBroker:
    """Broker over Redis Streams (history, resume) and Pub/Sub (live fan-out)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ssehub:",
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        idempotency_window: float = 300.0,
        max_connections: int = 64,
        max_resume_channels: int = 10_000,
    ) -> None:
        self.epoch = ""
        self.prefix = prefix
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._idempotency_window = idempotency_window
        self._max_resume_channels = max_resume_channels
        options: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": 2.0}
        self.redis = pooled_client(url, max_connections=max_connections, decode_responses=True)
        # The reader's client never retries by itself: a lost connection must be seen so the
        # reader can catch up from the streams.
        self._listener = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        self._publish = self.redis.register_script(PUBLISH)
        self._head = self.redis.register_script(HEAD)
        self._prune = self.redis.register_script(PRUNE)
        self._k_epoch = prefix + "epoch"
        self._k_seq = prefix + "seq"
        self._k_index = prefix + "channels"  # channel → expiry of its newest event
        self._k_names = prefix + "names"  # the same channels by name (ZRANGEBYLEX)
        self._k_newest = prefix + "newest"  # channel → seq of its newest event
        self._k_forgotten = prefix + "forgotten"  # highest seq of a channel forgotten whole
        self._pruned_at = 0.0
        self._live_prefix = prefix + "e:"
        self._control = prefix + "ctl"
        self._names: set[str] = set()
        self._acks: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._on_event: EventHandler | None = None
        self._on_gap: GapHandler | None = None
        self._reader: asyncio.Task[None] | None = None
        self._delivered_epoch: str | None = None
        self._delivered = 0
        self.connected = False
        self._ready = asyncio.Event()
        self._closing = False
        # (Un)subscriptions go out in call order: an unlisten must not overtake a later listen.
        self._sending = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> RedisBroker:
        """The broker for ``settings.broker_url`` with the history settings."""
        return cls(
            settings.broker_url,
            prefix=getattr(settings, "redis_prefix", "ssehub:"),
            history_size=settings.history_size,
            history_ttl=settings.history_ttl_seconds,
            idempotency_window=settings.idempotency_window_seconds,
            max_resume_channels=settings.max_resume_channels,
        )

    # -- keys ----------------------------------------------------------------------------------

    def stream_key(self, channel: str) -> str:
        return f"{self.prefix}s:{channel}"

    def _trim_key(self, channel: str) -> str:
        return f"{self.prefix}t:{channel}"

    def _live_name(self, name: str) -> str:
        """The Pub/Sub channel (or glob pattern) carrying ``name``'s live events."""
        if is_pattern(name):
            return glob_escape(self._live_prefix) + name
        return self._live_prefix + name

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, on_event: EventHandler, on_gap: GapHandler | None = None) -> None:
        self._on_event = on_event
        self._on_gap = on_gap
        with contextlib.suppress(BrokerUnavailable):
            await self.head()  # Redis may come later: the reader keeps trying, /readyz tells
        self._reader = asyncio.create_task(self._read_forever(), name="ssehub-redis-reader")

    async def close(self) -> None:
        self._closing = True
        self._on_event = None
        reader = self._reader
        if reader is not None:
            reader.cancel()
            # redis-py may absorb the cancellation of a blocked Pub/Sub read: then cut the socket.
            if not (await asyncio.wait({reader}, timeout=0.5))[0]:
                pubsub = self._pubsub
                if pubsub is not None and pubsub.connection is not None:
                    with contextlib.suppress(*FAULTS):
                        await pubsub.connection.disconnect(nowait=True)
                await asyncio.wait({reader}, timeout=2.0)
        for client in (self._listener, self.redis):
            with contextlib.suppress(*FAULTS):
                await client.aclose()

    async def healthy(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), 2.0)) and self.connected
        except FAULTS:
            return False

    # -- writing -------------------------------------------------------------------------------

    async def publish(self, event: Event, *, idempotency_key: str | None = None) -> Event:
        idem = self.prefix + "idem:" + idempotency_key if idempotency_key else self.prefix + "idem"
        keys = [
            self._k_epoch,
            self._k_seq,
            self.stream_key(event.channel),
            self._trim_key(event.channel),
            idem,
            self._k_index,
            self._k_names,
            self._k_newest,
            self._k_forgotten,
        ]
        stamp = repr(event.published_at)
        retry = "" if event.retry is None else str(event.retry)
        name = event.event or ""
        keep = self._history_ttl if event.ttl is None else event.ttl
        args = [
            self._fresh(),
            str(int(self._idempotency_window * 1000)) if idempotency_key else "",
            self._history_size,
            int(2000 * keep),
            stamp,
            repr(time.time()),
            name,
            retry,
            event.data,
            self._live_name(event.channel),
            event.channel,
            f"{stamp}\n{retry}\n{name}\n{event.data}",
            repr(event.published_at + keep),
            "" if event.ttl is None else repr(event.ttl),
        ]
        try:
            epoch, position, repeated = await self._publish(keys=keys, args=args)
        except FAULTS as exc:
            raise BrokerUnavailable("the Redis broker is unreachable; retry") from exc
        self.epoch = epoch
        if repeated:
            seq, _, channel = position.partition(":")
            return Event(
                channel=channel,
                event=event.event,
                data=event.data,
                id=format_id(epoch, int(seq)),
                seq=int(seq),
                retry=event.retry,
                published_at=event.published_at,
            )
        event.seq = int(position)
        event.id = format_id(epoch, event.seq)
        return event

    # -- reading -------------------------------------------------------------------------------

    async def head(self) -> str:
        epoch, seq = await self._position()
        return format_id(epoch, seq)

    async def _position(self) -> tuple[str, int]:
        """The backplane's epoch (created when missing) and its newest seq."""
        try:
            epoch, seq = await self._head(keys=[self._k_epoch, self._k_seq], args=[self._fresh()])
        except FAULTS as exc:
            raise BrokerUnavailable("the Redis broker is unreachable; retry") from exc
        self.epoch = epoch
        return epoch, int(seq)

    def _fresh(self) -> str:
        """A candidate epoch, used only if Redis has none (fresh or flushed)."""
        return secrets.token_hex(4)

    async def history(self, selector: Selector, after: str, *, limit: int | None = None) -> History:
        position = parse_id(after)
        if position is None:
            return History(gap=True)
        return await self._after(
            selector, position[1], limit, epoch=position[0], budget=self._max_resume_channels
        )

    async def _after(
        self,
        selector: Selector,
        after_seq: int,
        limit: int | None,
        *,
        epoch: str | None = None,
        budget: int | None = None,
    ) -> History:
        """Events after ``after_seq``; with ``epoch``, a gap when the backplane is not there.

        With ``budget``, patterns with more candidate channels than that answer a gap.
        """
        channels = await self._channels(selector, budget)
        if channels is None:
            return History(gap=True)
        if not selector.patterns:
            await self._prune_index(every=PRUNE_EVERY_SECONDS)  # bounds the index, now and then
        try:
            replies = await self._read_after(channels, f"{after_seq + 1}-0", limit)
        except NoScriptError:
            await self._position()  # loads the head script after a Redis restart
            replies = await self._read_after(channels, f"{after_seq + 1}-0", limit)
        except FAULTS as exc:
            raise BrokerUnavailable("the Redis broker is unreachable; retry") from exc
        (current, newest), replies = replies[0], replies[1:]
        self.epoch = current
        if epoch is not None and (epoch != current or after_seq > int(newest)):
            return History(gap=True)
        now = time.time()
        result = History()
        streams = []
        unknown = False  # a channel Redis no longer (or never) knew
        for index, channel in enumerate(channels):
            entries, trimmed, newest = replies[3 * index : 3 * index + 3]
            if trimmed is not None and int(trimmed) > after_seq:
                result.gap = True
            events = [self._decode(channel, entry_id, fields) for entry_id, fields in entries]
            kept = [e for e in events if not self._expired(e, now)]
            if len(kept) < len(events):
                result.gap = True
            # Events after ``after`` were published: unless a limit cut the read, the stream
            # must still hold the newest (it expires whole after twice the retention).
            if newest is None:
                unknown = True
            elif int(newest) > after_seq and len(events) != limit:
                result.gap = result.gap or not events or events[-1].seq < int(newest)
            streams.append(kept)
        forgotten = int(replies[-1] or 0)
        if forgotten > after_seq and (selector.patterns or unknown):
            # A channel this stream may cover was forgotten whole after ``after``.
            result.gap = True
        result.events = list(heapq.merge(*streams, key=lambda e: e.seq))[:limit]
        return result

    async def recent(self, selector: Selector, *, limit: int) -> list[Event]:
        if not limit:
            return []
        channels = await self._channels(selector, self._max_resume_channels) or []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel in channels:
                    pipe.xrevrange(self.stream_key(channel), "+", "-", count=limit)
                replies = await pipe.execute()
        except FAULTS as exc:
            raise BrokerUnavailable("the Redis broker is unreachable; retry") from exc
        now = time.time()
        streams = [
            [
                e
                for e in (self._decode(c, i, f) for i, f in reversed(entries))
                if not self._expired(e, now)
            ]
            for c, entries in zip(channels, replies, strict=True)
        ]
        return list(heapq.merge(*streams, key=lambda e: e.seq))[-limit:]

    async def _read_after(self, channels: list[str], start: str, limit: int | None) -> list[Any]:
        """One round trip: the head (epoch, newest seq), then each channel's entries and marks."""
        async with self.redis.pipeline(transaction=False) as pipe:
            # By hash: a registered Script would make the pipeline check the script cache first.
            pipe.evalsha(self._head.sha, 2, self._k_epoch, self._k_seq, self._fresh())
            for channel in channels:
                pipe.xrange(self.stream_key(channel), start, "+", count=limit)
                pipe.get(self._trim_key(channel))
                pipe.hget(self._k_newest, channel)
            pipe.get(self._k_forgotten)
            return await pipe.execute()  # type: ignore[no-any-return]

    async def _channels(self, selector: Selector, budget: int | None = None) -> list[str] | None:
        """The exact channels of ``selector`` plus the indexed channels its patterns match.

        With ``budget``, None when the patterns' prefixes span more indexed channels than that.
        """
        found = sorted(selector.channels)
        if not selector.patterns:
            return found
        await self._prune_index()
        # A pattern's text before its first ``*`` bounds a lexicographic range of the index.
        groups = prefix_groups(selector.patterns)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for prefix in groups:
                    low, high = ("-", "+") if not prefix else (f"[{prefix}", f"[{prefix}\xff")
                    # One more than the budget tells "too many" without reading them all.
                    page = {} if budget is None else {"start": 0, "num": budget + 1}
                    pipe.zrangebylex(self._k_names, low, high, **page)
                ranges = dict(zip(groups, await pipe.execute(), strict=True))
        except FAULTS as exc:
            raise BrokerUnavailable("the Redis broker is unreachable; retry") from exc
        names = match_candidates(groups, ranges.__getitem__, budget)
        if names is None:
            return None
        found += sorted(names - selector.channels)
        return found

    async def _prune_index(self, *, every: float = 0.0) -> None:
        """Forget channels whose newest event expired a history age ago (bounded per call).

        With ``every``, at most once per that many seconds in this process.
        """
        now = time.time()
        if every and now - self._pruned_at < min(every, self._history_ttl):
            return
        self._pruned_at = now
        stale = f"({now - self._history_ttl!r}"
        keys = [self._k_index, self._k_names, self._k_newest, self._k_forgotten]
        try:
            await self._prune(keys=keys, args=[stale])
        except FAULTS as exc:
            raise BrokerUnavailable("the Redis broker is unreachable; retry") from exc

    def _decode(self, channel: str, entry_id: str, fields: dict[str, str]) -> Event:
        seq = int(entry_id.partition("-")[0])
        retry = fields.get("r")
        return Event(
            channel=channel,
            event=fields.get("e"),
            data=fields.get("d", ""),
            id=format_id(self.epoch, seq),
            seq=seq,
            retry=int(retry) if retry else None,
            published_at=float(fields.get("t", 0.0)),
            ttl=float(fields["l"]) if "l" in fields else None,
        )

    def _expired(self, event: Event, now: float) -> bool:
        ttl = self._history_ttl if event.ttl is None else event.ttl
        return event.published_at + ttl < now

    # -- live delivery -------------------------------------------------------------------------

    async def listen(self, name: str) -> None:
        """Subscribe the reader to ``name`` and wait until Redis confirmed it.

        Waiting matters: the hub reads history or the head right after, and an event published
        between that read and an unconfirmed subscription would reach neither.
        """
        self._names.add(name)
        if not self.connected:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ready.wait(), LISTEN_ACK_TIMEOUT / 2)
        pubsub = self._pubsub
        if pubsub is None or not self.connected:
            return  # the reader subscribes everything when it (re)connects, then catches up
        live = self._live_name(name)
        ack = asyncio.get_running_loop().create_future()
        self._acks.setdefault(live, []).append(ack)
        try:
            async with self._sending:
                if is_pattern(name):
                    await pubsub.psubscribe(live)
                else:
                    await pubsub.subscribe(live)
            await asyncio.wait_for(asyncio.shield(ack), LISTEN_ACK_TIMEOUT)
        except FAULTS:
            log.warning("redis: subscribing to %s not confirmed; the reader will retry", name)
        finally:
            waiting = self._acks.get(live)
            if waiting is not None and ack in waiting:
                waiting.remove(ack)
                if not waiting:
                    del self._acks[live]

    async def unlisten(self, name: str) -> None:
        self._names.discard(name)
        pubsub = self._pubsub
        if pubsub is None or not self.connected:
            return
        async with self._sending:
            if name in self._names:
                return  # listened again meanwhile
            with contextlib.suppress(*FAULTS):
                if is_pattern(name):
                    await pubsub.punsubscribe(self._live_name(name))
                else:
                    await pubsub.unsubscribe(self._live_name(name))

    async def _read_forever(self) -> None:
        """The one reader of this process: (re)connect, subscribe, catch up, deliver live."""
        backoff = 0.05
        while not self._closing:
            pubsub = self._listener.pubsub()
            try:
                await self._read(pubsub)
            except (*FAULTS, BrokerUnavailable) as exc:
                if self.connected:
                    log.warning("redis: reader lost its connection (%s); reconnecting", exc)
                    backoff = 0.05
            finally:
                self.connected = False
                self._ready.clear()
                self._pubsub = None
                with contextlib.suppress(*FAULTS):
                    await pubsub.aclose()
            if self._closing:
                return
            await asyncio.sleep(backoff)
            backoff = min(1.0, backoff * 2)

    async def _read(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        names = set(self._names)
        await pubsub.subscribe(self._control)
        await self._subscribe(pubsub, names)
        await self._catch_up(names)
        self.connected = True
        self._ready.set()
        log.info("redis: reader connected, %d channels and patterns", len(names))
        while not self._closing:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind in ("message", "pmessage"):
                try:
                    self._deliver_live(message["channel"], message["data"])
                except ValueError:
                    log.warning("redis: ignored a malformed message on %s", message["channel"])
            elif kind in ("subscribe", "psubscribe"):
                for ack in self._acks.pop(message["channel"], []):
                    if not ack.done():
                        ack.set_result(None)

    async def _subscribe(self, pubsub: PubSub, names: Iterable[str]) -> None:
        exact = [self._live_name(n) for n in names if not is_pattern(n)]
        patterns = [self._live_name(n) for n in names if is_pattern(n)]
        if exact:
            await pubsub.subscribe(*exact)
        if patterns:
            await pubsub.psubscribe(*patterns)

    async def _catch_up(self, names: set[str]) -> None:
        """Deliver, from the streams, what was published while the reader was not connected."""
        epoch, newest = await self._position()
        if self._delivered_epoch is None:
            self._delivered_epoch, self._delivered = epoch, newest
            return
        if epoch != self._delivered_epoch:
            self._delivered_epoch, self._delivered = epoch, 0
            self._lost(names)  # Redis lost its history while the reader was away
        if not names:
            self._delivered = max(self._delivered, newest)
            return
        if newest <= self._delivered:
            return
        missed = await self._after(Selector.of(names), self._delivered, None)
        if missed.gap:
            log.warning("redis: events trimmed during the outage; their streams resume")
            self._lost(names)
        for event in missed.events:
            self._emit(event)
        log.info("redis: caught up %d events after reconnecting", len(missed.events))

    def _deliver_live(self, live: str, payload: str) -> None:
        epoch, seq_text, stamp, retry, name, data = payload.split("\n", 5)
        if epoch != self._delivered_epoch:
            self._delivered_epoch, self._delivered = epoch, 0
        seq = int(seq_text)
        if seq <= self._delivered:
            return  # already delivered (caught up, or both a channel and a pattern matched)
        self.epoch = epoch
        self._emit(
            Event(
                channel=live[len(self._live_prefix) :],
                event=name or None,
                data=data,
                id=format_id(epoch, seq),
                seq=seq,
                retry=int(retry) if retry else None,
                published_at=float(stamp),
            )
        )

    def _lost(self, names: set[str]) -> None:
        if self._on_gap is not None and names:
            try:
                self._on_gap(set(names))
            except Exception:
                log.exception("redis: reporting a gap failed")

    def _emit(self, event: Event) -> None:
        if event.seq <= self._delivered:
            return
        self._delivered = event.seq
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # one bad delivery must not stop the process's only reader
                log.exception("redis: delivering event %s failed", event.id)

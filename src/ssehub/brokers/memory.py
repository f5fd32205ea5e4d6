"""The embedded backplane: one process, bounded history in memory, no outside service.

History is bounded per channel (count, age) and in total (channels, bytes): past the total, the
channel published to least recently is forgotten whole, and resumes that may cover it get a reset.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..background import stop_task
from ..channel_index import ChannelIndex
from ..channels import Selector
from ..event import Event
from .base import EventHandler, GapHandler, History, PublishStep, format_id, parse_id


@dataclass(slots=True)
class ChannelLog:
    """Kept events of one channel and the highest seq already dropped from them."""

    events: deque[Event] = field(default_factory=deque)
    trimmed_upto: int = 0
    next_expiry: float = math.inf  # earliest end of an event with its own ``ttl``
    size: int = 0  # bytes charged for the kept events (``event_cost``)


EVENT_OVERHEAD = 300  # bytes an Event object and its encoded frame take beyond the payload


def event_cost(event: Event) -> int:
    """The bytes one kept event is charged against the total history bound (an estimate)."""
    return EVENT_OVERHEAD + len(event.channel) + len(event.data) + len(event.event or "")


class MemoryBroker:
    """Global sequence, per-channel ring buffers bounded by count and age, and a total bound."""

    def __init__(
        self,
        *,
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        idempotency_window: float = 300.0,
        idempotency_max_keys: int = 100_000,
        max_channels: int = 50_000,
        max_bytes: int = 128 * 2**20,
        max_resume_channels: int = 10_000,
    ) -> None:
        self.epoch = secrets.token_hex(3)
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._max_channels = max_channels
        self._max_bytes = max_bytes
        self._bytes = 0
        self._idempotency_window = idempotency_window
        self._idempotency_max_keys = idempotency_max_keys
        self._seq = 0
        self._forgotten_upto = 0
        self._logs: OrderedDict[str, ChannelLog] = OrderedDict()  # least recently published first
        self._names = ChannelIndex()  # the same channels, sorted: pattern look-ups by prefix
        self._max_resume_channels = max_resume_channels
        # key -> (time, seq, channel): what answering a repeat needs, never the event itself.
        self._idempotent: OrderedDict[str, tuple[float, int, str]] = OrderedDict()
        self._on_event: EventHandler | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, on_event: EventHandler, on_gap: GapHandler | None = None) -> None:
        """Deliver to ``on_event``; live delivery in one process never skips, so no gaps."""
        self._on_event = on_event
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ssehub-memory-sweeper")

    async def close(self) -> None:
        await stop_task(self._sweeper)
        self._on_event = None

    async def publish(
        self,
        event: Event,
        *,
        idempotency_key: str | None = None,
        step: PublishStep | None = None,
    ) -> Event:
        if step is not None:
            try:
                await step.before(event)
            except Exception:
                # A retry whose first attempt was stored is answered, never refused.
                replay = None if idempotency_key is None else self._replay(event, idempotency_key)
                if replay is None:
                    raise
                return replay
        if idempotency_key is not None:
            replay = self._replay(event, idempotency_key)
            if replay is not None:
                return replay
        self._seq += 1
        event.seq = self._seq
        event.id = format_id(self.epoch, self._seq)
        if self._history_size:
            log = self._logs.get(event.channel)
            if log is None:
                # A channel forgotten whole and published to again may hide trimmed events.
                log = self._logs[event.channel] = ChannelLog(trimmed_upto=self._forgotten_upto)
                self._names.add(event.channel)
            else:
                self._logs.move_to_end(event.channel)
            log.events.append(event)
            cost = event_cost(event)
            log.size += cost
            self._bytes += cost
            if event.ttl is not None:
                log.next_expiry = min(log.next_expiry, event.published_at + event.ttl)
            self._trim_history(log, time.time())
            self._enforce_bounds(log)
        if idempotency_key is not None:
            if len(self._idempotent) >= self._idempotency_max_keys:
                self._idempotent.popitem(last=False)  # the oldest key goes first
            self._idempotent[idempotency_key] = (time.monotonic(), event.seq, event.channel)
        if self._on_event is not None:
            self._on_event(event)
        if step is not None:
            await step.after(event)
        return event

    async def history(self, selector: Selector, after: str, *, limit: int | None = None) -> History:
        position = parse_id(after)
        if position is not None and position[0] != self.epoch:
            # Another epoch (this process restarted): a reset, then all this one kept.
            replay = await self.history(selector, format_id(self.epoch, 0), limit=limit)
            return History(replay.events, gap=True, resume_from=format_id(self.epoch, 0))
        if position is None or position[1] > self._seq:
            return History(gap=True)
        after_seq = position[1]
        now = time.time()
        result = History()
        streams = []
        covered = self._kept_channels(selector)
        if covered is None:
            return History(gap=True)  # too many candidate channels: start over at the head
        for _name, log in covered:
            self._trim_history(log, now)
            if log.trimmed_upto > after_seq:
                result.gap = True
            streams.append(_events_after(log.events, after_seq))
        if self._forgotten_upto > after_seq and (
            selector.patterns or len(covered) < len(selector.channels)
        ):
            # A channel this stream may cover expired whole after ``after``: maybe missed events.
            result.gap = True
        result.events = list(itertools.islice(heapq.merge(*streams, key=lambda e: e.seq), limit))
        return result

    async def recent(self, selector: Selector, *, limit: int) -> list[Event]:
        now = time.time()
        streams = []
        for _name, log in self._kept_channels(selector) or ():
            self._trim_history(log, now)
            streams.append(list(log.events)[-limit:])
        merged = list(heapq.merge(*streams, key=lambda e: e.seq))
        return merged[-limit:] if limit else []

    async def head(self) -> str:
        return format_id(self.epoch, self._seq)

    async def listen(self, name: str) -> None:
        """Every event reaches the one local hub; nothing to subscribe to."""

    async def unlisten(self, name: str) -> None:
        """Nothing to release."""

    async def healthy(self) -> bool:
        return True

    def _kept_channels(self, selector: Selector) -> list[tuple[str, ChannelLog]] | None:
        """Kept channels of ``selector``; None when its patterns have too many candidates."""
        found = [(c, self._logs[c]) for c in selector.channels if c in self._logs]
        if selector.patterns:
            names = self._names.matching(selector.patterns, budget=self._max_resume_channels)
            if names is None:
                return None
            found += [(n, self._logs[n]) for n in sorted(names - selector.channels)]
        return found

    def _trim_history(self, log: ChannelLog, now: float) -> None:
        events = log.events
        ttl = self._history_ttl
        while events and (
            len(events) > self._history_size
            or events[0].published_at + (ttl if events[0].ttl is None else events[0].ttl) < now
        ):
            self._account_dropped(log, events.popleft())
        if log.next_expiry <= now:
            self._expire_short_lived(log, now)

    def _expire_short_lived(self, log: ChannelLog, now: float) -> None:
        """Drop events whose own ``ttl`` ended, wherever they are (tokens behind a long one)."""
        kept: deque[Event] = deque()
        log.next_expiry = math.inf
        for event in log.events:
            if event.ttl is None:
                kept.append(event)
            elif event.published_at + event.ttl < now:
                self._account_dropped(log, event)
            else:
                kept.append(event)
                log.next_expiry = min(log.next_expiry, event.published_at + event.ttl)
        log.events = kept

    def _account_dropped(self, log: ChannelLog, event: Event) -> None:
        """Account for one event no longer kept."""
        log.trimmed_upto = max(log.trimmed_upto, event.seq)
        cost = event_cost(event)
        log.size -= cost
        self._bytes -= cost

    def _enforce_bounds(self, current: ChannelLog) -> None:
        """Keep the total under ``max_channels`` and ``max_bytes``: forget the channels published
        to least recently (never ``current``); trim ``current`` itself only when it is alone."""
        while len(self._logs) > self._max_channels or self._bytes > self._max_bytes:
            name, log = next(iter(self._logs.items()))
            if log is current:
                if len(self._logs) == 1:
                    while self._bytes > self._max_bytes and len(log.events) > 1:
                        self._account_dropped(log, log.events.popleft())
                    return
                self._logs.move_to_end(name)
                continue
            self._forget(name, log)

    def _forget(self, name: str, log: ChannelLog) -> None:
        """Drop a channel whole; resumes from before its newest event may have missed it."""
        newest = log.events[-1].seq if log.events else 0
        self._forgotten_upto = max(self._forgotten_upto, log.trimmed_upto, newest)
        self._bytes -= log.size
        del self._logs[name]
        self._names.discard(name)

    def _replay(self, event: Event, key: str) -> Event | None:
        """``event`` as the first publish with ``key`` within the window stored it, or None."""
        self._expire_idempotency_keys()
        hit = self._idempotent.get(key)
        if hit is None:
            return None
        _, seq, channel = hit
        return replace(event, channel=channel, id=format_id(self.epoch, seq), seq=seq)

    def _expire_idempotency_keys(self) -> None:
        """Forget the Idempotency-Keys older than the window (kept in arrival order)."""
        cutoff = time.monotonic() - self._idempotency_window
        while self._idempotent:
            first_key, (stamp, _, _) = next(iter(self._idempotent.items()))
            if stamp >= cutoff:
                break
            del self._idempotent[first_key]

    async def _sweep_forever(self) -> None:
        """Drop expired history so idle channels do not hold memory forever."""
        interval = min(60.0, max(0.05, self._history_ttl / 10))
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for name in list(self._logs):
                log = self._logs[name]
                self._trim_history(log, now)
                if not log.events:
                    self._forget(name, log)
            self._expire_idempotency_keys()


def _events_after(events: deque[Event], seq: int) -> Iterator[Event]:
    """The kept events after ``seq``, oldest first, read lazily: a limited merge of many
    channels takes only what it needs (the start is found by bisection, events are in seq order)."""
    low, high = 0, len(events)
    while low < high:
        middle = (low + high) // 2
        if events[middle].seq <= seq:
            low = middle + 1
        else:
            high = middle
    return (events[index] for index in range(low, len(events)))

"""The Hub: this process's registry of open streams and the fan-out of broker events to them.

The Hub only knows the Broker protocol. Each event is encoded once (``Event.frame``) and the
same bytes object is queued on every matching connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .background import stop_task
from .brokers.base import Broker, History, parse_id
from .channels import CONTROL, DISCONNECT_EVENT, Selector, matches
from .connection import HISTORY_GAP, IDLE, KICKED, SHUTDOWN, Connection
from .event import Event, encode_comment, encode_fields, json_text
from .metrics import Metrics
from .runs import RunClosed, RunStore, is_stage_event, snapshot_tail

log = logging.getLogger("ssehub.hub")

HEARTBEAT = encode_comment("ping")

T = TypeVar("T")


@dataclass(slots=True)
class HubStats:
    """Counters of this process since start."""

    started_at: float = field(default_factory=time.time)
    total_connections: int = 0
    events_dispatched: int = 0
    deliveries: int = 0
    resumes: int = 0
    resets: int = 0
    closed: dict[str, int] = field(default_factory=dict)
    # Messages and bytes of streams already closed (open ones keep their own counters).
    closed_messages: int = 0
    closed_bytes: int = 0


class Hub:
    """Channel → connections index, fan-out, resume, heartbeats and shutdown."""

    def __init__(
        self,
        broker: Broker,
        *,
        heartbeat_seconds: float = 30.0,
        retry_ms: int | None = 3000,
        idle_timeout_seconds: float = 0.0,
        max_resume_events: int | None = None,
        metrics: Metrics | None = None,
        runs: RunStore | None = None,
    ) -> None:
        self.broker = broker
        self.metrics = metrics or Metrics()
        self.runs = runs  # project runs: 409 after the end, run ids, snapshots
        self.heartbeat_seconds = heartbeat_seconds
        self.retry_ms = retry_ms
        self.idle_timeout_seconds = idle_timeout_seconds
        self.max_resume_events = max_resume_events
        self.stats = HubStats()
        self.connections: dict[str, Connection] = {}
        # Subscribers per channel and per pattern, as dicts used as ordered sets: smaller than
        # sets (about 40 B less per stream) and fanned out in the order streams joined.
        self._exact: dict[str, dict[Connection, None]] = {}
        self._patterns: dict[str, dict[Connection, None]] = {}
        self._pattern_hits: dict[str, tuple[str, ...]] = {}
        self._listening: dict[str, asyncio.Future[None]] = {}  # listens still unconfirmed
        self._ticker: asyncio.Task[None] | None = None
        self.closing = False
        self.loop: asyncio.AbstractEventLoop | None = None  # set by start: where publishes run
        self.taps: dict[str, Callable[[Event], None]] = {}  # reserved channels served in-process

    async def start(self) -> None:
        """Start the broker's delivery into this hub and the heartbeat ticker."""
        self.loop = asyncio.get_running_loop()
        await self.broker.start(self.dispatch, self.close_gapped_streams)
        await self.broker.listen(CONTROL)
        interval = self._tick_interval()
        if interval:
            self._ticker = asyncio.create_task(self._tick_forever(interval), name="ssehub-ticker")

    async def close(self) -> None:
        """Close every stream, stop the ticker and the broker."""
        self.close_all(SHUTDOWN)
        await stop_task(self._ticker)
        await self.broker.close()
        self.metrics.close()

    def close_all(self, reason: str = SHUTDOWN) -> None:
        """End every open stream (SIGTERM): writers flush what is queued and finish."""
        self.closing = True
        for conn in list(self.connections.values()):
            conn.close(reason)

    def close_gapped_streams(self, names: set[str]) -> None:
        """The broker may have skipped events of ``names``: end their streams so they resume.

        Each client reconnects with its last id and gets what history still has, or a
        ``reset`` when it no longer covers the gap: never a silent hole in a live stream.
        """
        for conn in list(self.connections.values()):
            if not names.isdisjoint(conn.channel_names):
                conn.close(HISTORY_GAP)

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, event: Event, *, key: str | None = None) -> Event:
        """The one door of every publish: the broker with the run lifecycle, then metrics.

        A stage message that would continue an ended run is refused (RunClosed, 409); one
        without a run id gets its run's. The run store's step runs with the broker's publish
        (in one Redis round trip on Redis). ``key`` is the Idempotency-Key: a retry returns the
        first event, which was already counted and folded into its run.
        """
        runs = self.runs
        # Run stores read stage messages only: other events skip their step.
        step = runs if runs is not None and is_stage_event(event) else None
        try:  # not through _counted: one coroutine less per publish
            stored = await self.broker.publish(event, idempotency_key=key, step=step)
        except RunClosed:
            raise
        except Exception:
            self.metrics.broker_error("publish")
            raise
        if stored is event:  # not an idempotent replay
            self.metrics.published(stored)
        return stored

    # -- broker reads, failures counted ---------------------------------------------------------

    async def head(self) -> str:
        """The broker's newest position."""
        return await self._counted("head", self.broker.head())

    async def history(self, selector: Selector, after: str, *, limit: int | None = None) -> History:
        """What the broker kept of ``selector`` after ``after``."""
        return await self._counted("history", self.broker.history(selector, after, limit=limit))

    async def recent(self, selector: Selector, *, limit: int) -> list[Event]:
        """The latest ``limit`` kept events of ``selector``."""
        return await self._counted("recent", self.broker.recent(selector, limit=limit))

    async def _counted(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception:
            self.metrics.broker_error(operation)
            raise

    # -- fan-out -------------------------------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        """Queue one broker event on every local connection that selects its channel."""
        self.stats.events_dispatched += 1
        channel = event.channel
        if channel == CONTROL:
            self._obey_control(event)
            return
        if channel in self.taps:
            self.taps[channel](event)
            return
        exact = self._exact.get(channel)
        hits = self._matching_patterns(channel) if self._patterns else ()
        if not hits:
            if not exact:
                return
            targets: Any = exact
        else:
            targets = set(exact) if exact else set()
            for pattern in hits:
                targets.update(self._patterns[pattern])
        self.stats.deliveries += len(targets)
        self.metrics.events_delivered.inc(len(targets))
        for conn in targets:
            conn.push(event)

    async def tap(self, channel: str, handler: Callable[[Event], None]) -> None:
        """Hand every event of a reserved ``channel`` to ``handler`` instead of streams."""
        self.taps[channel] = handler
        await self.broker.listen(channel)

    def _obey_control(self, event: Event) -> None:
        """Act on a hub command (``$control``): close a client held by this process."""
        if event.event == DISCONNECT_EVENT:
            conn = self.connections.get(event.data)
            if conn is not None:
                conn.close(KICKED)

    def _matching_patterns(self, channel: str) -> tuple[str, ...]:
        hits = self._pattern_hits.get(channel)
        if hits is None:
            if len(self._pattern_hits) > 10_000:
                self._pattern_hits.clear()
            hits = tuple(p for p in self._patterns if matches(p, channel))
            self._pattern_hits[channel] = hits
        return hits

    # -- connections ---------------------------------------------------------------------------

    async def open(self, conn: Connection, last_event_id: str | None) -> None:
        """Register ``conn`` and queue its opening frames: connected, then reset or replay.

        The connection is registered holding live events before history (or, for a fresh
        stream, the head) is read, so nothing published meanwhile is missed, and held events
        already replayed (or older than the head) are skipped.
        """
        resuming = bool(last_event_id)
        conn.hold()
        await self._attach(conn)  # returns once the broker delivers the channels' events here
        if last_event_id:
            after = last_event_id
            history = await self._resume(conn, after)
        else:
            # Every event newer than the head arrives live and is held: nothing to read back.
            after = await self.head()
            history = History()
        if history.gap and history.resume_from is not None:
            after = history.resume_from  # a new epoch: every event it kept follows the reset
        elif history.gap:
            after = await self.head()
            history.events = []
        snapshots: list[Event] = []
        if self.runs is not None and (history.gap or not resuming):
            snapshots, tail = await snapshot_tail(self.broker, self.runs, conn.selector, after)
            if snapshots:
                history.events = tail
        opening = {
            "client_id": conn.client_id,
            "timestamp": int(time.time()),
            "channels": list(conn.channel_names),
            "resumed": resuming and not history.gap,
        }
        conn.queue(
            encode_fields(id=after, event="connected", data=json_text(opening), retry=self.retry_ms)
        )
        if history.gap:
            self.stats.resets += 1
            self.metrics.resets.inc()
            # The client's id is echoed as JSON text: escaped, it cannot break a line anywhere.
            notice = {"reason": "history_gap", "last_event_id": last_event_id, "resume_from": after}
            conn.queue(encode_fields(event="reset", data=json_text(notice)))
        elif resuming:
            self.stats.resumes += 1
            self.metrics.resumes.inc()
        for snap in snapshots:
            if conn.wants(snap):
                conn.queue(snap.frame)
        parsed = parse_id(after)
        upto = parsed[1] if parsed else 0
        for event in history.events:
            if conn.wants(event):
                conn.queue(event.frame, message=True)
            upto = max(upto, event.seq)
        conn.go_live(upto)

    async def _resume(self, conn: Connection, after: str) -> History:
        """What the broker kept after ``after``; a gap when that is more than one resume may
        replay (``max_resume_events``): the client starts over at the head, told by ``reset``."""
        budget = self.max_resume_events
        limit = None if budget is None else budget + 1
        history = await self.history(conn.selector, after, limit=limit)
        if budget is not None and len(history.events) > budget:
            return History(gap=True)
        return history

    def _indexes(
        self, conn: Connection
    ) -> tuple[tuple[dict[str, dict[Connection, None]], Any], ...]:
        """The two indexes (channels, patterns), each with the names ``conn`` is filed under."""
        return (self._exact, conn.selector.channels), (self._patterns, conn.selector.patterns)

    def register(self, conn: Connection) -> None:
        """Count ``conn`` as an open stream of this process: heartbeats, idle timeout, SIGTERM,
        admin kicks, stats. The one way in: :meth:`open` registers and subscribes a stream; a
        stream fed by its owner (a chat answer on its POST response) is only registered.
        :meth:`detach` undoes either."""
        self.connections[conn.client_id] = conn
        self.stats.total_connections += 1
        self.metrics.opened(conn)

    async def _attach(self, conn: Connection) -> None:
        self.register(conn)
        for index, names in self._indexes(conn):
            for name in names:
                subs = index.get(name)
                if subs is None:
                    subs = index[name] = {conn: None}
                    if index is self._patterns:
                        self._pattern_hits.clear()
                    ready = self._listening[name] = asyncio.get_running_loop().create_future()
                    try:
                        await self.broker.listen(name)
                    finally:
                        del self._listening[name]
                        ready.set_result(None)
                    continue
                subs[conn] = None
                # Another stream's listen of ``name`` may still be in flight: reading history
                # or the head before the broker confirmed it could miss an event in between.
                listening = self._listening.get(name)
                if listening is not None:
                    await asyncio.shield(listening)

    async def detach(self, conn: Connection) -> None:
        """Unregister a finished connection and release broker interest nobody else needs."""
        if self.connections.pop(conn.client_id, None) is None:
            return
        reason = conn.close_reason or "client_gone"
        self.stats.closed[reason] = self.stats.closed.get(reason, 0) + 1
        self.metrics.closed(conn, reason)
        self.stats.closed_messages += conn.messages_sent
        self.stats.closed_bytes += conn.bytes_sent
        for index, names in self._indexes(conn):
            for name in names:
                subs = index.get(name)
                if subs is None:
                    continue
                subs.pop(conn, None)
                if not subs:
                    del index[name]
                    if index is self._patterns:
                        self._pattern_hits.clear()
                    await self.broker.unlisten(name)

    def subscriber_counts(self) -> dict[str, int]:
        """Local connections per channel and pattern."""
        counts = {name: len(subs) for name, subs in self._exact.items()}
        counts.update((name, len(subs)) for name, subs in self._patterns.items())
        return counts

    # -- heartbeats and idle clients -----------------------------------------------------------

    def _tick_interval(self) -> float:
        # Quarter intervals: a quiet stream is pinged within a quarter beat of its due time, and
        # streams that went quiet at different times get their pings at different ticks.
        intervals = [s / 4 for s in (self.heartbeat_seconds, self.idle_timeout_seconds) if s > 0]
        return min(intervals) if intervals else 0.0

    async def _tick_forever(self, interval: float) -> None:
        beat, idle = self.heartbeat_seconds, self.idle_timeout_seconds
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            # Only streams quiet for a beat get a ping: busy ones need none, and 20k pings in
            # one loop turn would stall every stream. Half a tick of slack keeps the beat.
            quiet_before = now - beat + interval / 2 if beat > 0 else None
            idle_before = now - idle if idle > 0 else None
            for conn in list(self.connections.values()):
                last = conn.last_write
                if idle_before is not None and last < idle_before:
                    conn.close(IDLE)
                elif quiet_before is not None and last < quiet_before:
                    conn.push_raw(HEARTBEAT)

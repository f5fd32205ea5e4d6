"""Live delivery on Redis: this process's one Pub/Sub reader, which (re)connects, subscribes the
channels and patterns with local subscribers, catches up from the streams after an outage and
hands every event to the hub once, in seq order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.retry import Retry

from ...channels import Selector, is_pattern
from ...errors import BrokerUnavailable
from ...event import Event
from ..base import EventHandler, GapHandler, format_id
from .history import HistoryReader
from .ids import EventIds
from .keys import FAULTS, Keys

log = logging.getLogger("ssehub.redis")

LISTEN_ACK_TIMEOUT = 5.0


class LiveReader:
    """The Pub/Sub reader of one process and the names it is subscribed to."""

    def __init__(self, url: str, keys: Keys, ids: EventIds, history: HistoryReader) -> None:
        self.keys = keys
        self.ids = ids
        self.history = history
        # Never retries by itself: a lost connection must be seen so the reader can catch up.
        self._client = aioredis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), decode_responses=True, socket_connect_timeout=2.0
        )
        self._names: set[str] = set()
        self._acks: dict[str, list[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._on_event: EventHandler | None = None
        self._on_gap: GapHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._delivered_epoch: str | None = None
        self.delivered = 0  # the seq of the last event handed to the hub
        self.connected = False
        self._ready = asyncio.Event()
        self._closing = False
        # (Un)subscriptions go out in call order: an unlisten must not overtake a later listen.
        self._sending = asyncio.Lock()

    def start(self, on_event: EventHandler, on_gap: GapHandler | None) -> None:
        """Start reading; events go to ``on_event``, lost stretches to ``on_gap``."""
        self._on_event = on_event
        self._on_gap = on_gap
        self._task = asyncio.create_task(self._read_forever(), name="ssehub-redis-reader")

    async def close(self) -> None:
        """Stop reading and release the Pub/Sub connection."""
        self._closing = True
        self._on_event = None
        task = self._task
        if task is not None:
            task.cancel()
            # redis-py may absorb the cancellation of a blocked Pub/Sub read: then cut the socket.
            if not (await asyncio.wait({task}, timeout=0.5))[0]:
                pubsub = self._pubsub
                if pubsub is not None and pubsub.connection is not None:
                    with contextlib.suppress(*FAULTS):
                        await pubsub.connection.disconnect(nowait=True)
                await asyncio.wait({task}, timeout=2.0)
        with contextlib.suppress(*FAULTS):
            await self._client.aclose()

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
        live = self.keys.live(name)
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
                    await pubsub.punsubscribe(self.keys.live(name))
                else:
                    await pubsub.unsubscribe(self.keys.live(name))

    async def _read_forever(self) -> None:
        """The one reader of this process: (re)connect, subscribe, catch up, deliver live."""
        backoff = 0.05
        while not self._closing:
            pubsub = self._client.pubsub()
            try:
                await self._serve(pubsub)
            except (*FAULTS, BrokerUnavailable) as exc:
                if self.connected:
                    log.warning("redis: reader lost its connection (%s); reconnecting", exc)
                    backoff = 0.05
            finally:
                self.connected = False
                self._ready.clear()
                self._pubsub = None
                with contextlib.suppress(*FAULTS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            if self._closing:
                return
            await asyncio.sleep(backoff)
            backoff = min(1.0, backoff * 2)

    async def _serve(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        names = set(self._names)
        await pubsub.subscribe(self.keys.control)
        await self._subscribe(pubsub, names)
        await self.catch_up(names)
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
        exact = [self.keys.live(n) for n in names if not is_pattern(n)]
        patterns = [self.keys.live(n) for n in names if is_pattern(n)]
        if exact:
            await pubsub.subscribe(*exact)
        if patterns:
            await pubsub.psubscribe(*patterns)

    async def catch_up(self, names: set[str]) -> None:
        """Deliver, from the streams, what was published while the reader was not connected."""
        epoch, newest, base = await self.ids.check_in()  # Redis may have restarted meanwhile
        if self._delivered_epoch is None:
            self._delivered_epoch, self.delivered = epoch, newest
            return
        if epoch != self._delivered_epoch:
            self._delivered_epoch, self.delivered = epoch, base
            self._report_gap(names)  # Redis lost its history (or its newest ids) meanwhile
        if not names:
            self.delivered = max(self.delivered, newest)
            return
        if newest <= self.delivered:
            return
        missed = await self.history.events_after(Selector.of(names), self.delivered, None)
        if missed.gap:
            log.warning("redis: events trimmed during the outage; their streams resume")
            self._report_gap(names)
        for event in missed.events:
            self._deliver(event)
        log.info("redis: caught up %d events after reconnecting", len(missed.events))

    def _deliver_live(self, live: str, payload: str) -> None:
        epoch, seq_text, stamp, retry, name, data = payload.split("\n", 5)
        if epoch != self._delivered_epoch:
            # A new epoch while connected (another process found a stale snapshot): the streams
            # resume, through a reset, from the kept events of the new epoch.
            self._delivered_epoch, self.delivered = epoch, 0
            self._report_gap(set(self._names))
        seq = int(seq_text)
        if seq <= self.delivered:
            return  # already delivered (caught up, or both a channel and a pattern matched)
        self.ids.note(epoch, seq)
        self._deliver(
            Event(
                channel=live[len(self.keys.live_prefix) :],
                event=name or None,
                data=data,
                id=format_id(epoch, seq),
                seq=seq,
                retry=int(retry) if retry else None,
                published_at=float(stamp),
            )
        )

    def _report_gap(self, names: set[str]) -> None:
        if self._on_gap is not None and names:
            try:
                self._on_gap(set(names))
            except Exception:
                log.exception("redis: reporting a gap failed")

    def _deliver(self, event: Event) -> None:
        if event.seq <= self.delivered:
            return
        self.delivered = event.seq
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # one bad delivery must not stop the process's only reader
                log.exception("redis: delivering event %s failed", event.id)

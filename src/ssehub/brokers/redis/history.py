"""History reads on Redis: events after a position, the latest events, and the channel index
that pattern resumes read (pruned as channels expire)."""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ...channel_index import match_candidates, prefix_groups
from ...channels import Selector
from ...event import Event
from ..base import History, format_id, parse_id
from .ids import EventIds
from .keys import FAULTS, Keys, unreachable
from .scripts import PRUNE

PRUNE_EVERY_SECONDS = 60.0  # how often history reads of exact channels prune the index


class HistoryReader:
    """Reads the channels' streams; a gap is reported wherever events may be missing."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        ids: EventIds,
        *,
        history_ttl: float,
        max_resume_channels: int,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.ids = ids
        self._history_ttl = history_ttl
        self._max_resume_channels = max_resume_channels
        self._prune = redis.register_script(PRUNE)
        self._pruned_at = 0.0

    async def history(self, selector: Selector, after: str, *, limit: int | None = None) -> History:
        position = parse_id(after)
        if position is None:
            return History(gap=True)
        return await self.events_after(
            selector, position[1], limit, epoch=position[0], budget=self._max_resume_channels
        )

    async def events_after(
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
            await self.prune_index(every=PRUNE_EVERY_SECONDS)  # bounds the index, now and then
        try:
            replies = await self._read_after(channels, f"{after_seq + 1}-0", limit)
        except NoScriptError:
            await self.ids.position()  # loads the head script after a Redis restart
            replies = await self._read_after(channels, f"{after_seq + 1}-0", limit)
        except FAULTS as exc:
            raise unreachable() from exc
        (current, newest), replies = replies[0], replies[1:]
        if not current:  # no epoch yet: Redis is new or lost its data
            current = (await self.ids.check_in())[0]
        else:
            self.ids.note(current, int(newest))
        if epoch is not None and epoch != current:
            return await self._replay_epoch(selector, limit)
        if epoch is not None and after_seq > int(newest):
            return History(gap=True)
        now = time.time()
        result = History()
        streams = []
        unknown = False  # a channel Redis no longer (or never) knew
        for index, channel in enumerate(channels):
            entries, trimmed, newest = replies[3 * index : 3 * index + 3]
            if trimmed is not None and int(trimmed) > after_seq:
                result.gap = True
            events = [self._event_of(channel, entry_id, fields) for entry_id, fields in entries]
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
        result.events = list(itertools.islice(heapq.merge(*streams, key=lambda e: e.seq), limit))
        return result

    async def _replay_epoch(self, selector: Selector, limit: int | None) -> History:
        """A resume from another epoch: a gap, then every event the current epoch kept."""
        try:
            base = int(await self.redis.hget(self.keys.incarnation, "base") or 0)
        except FAULTS as exc:
            raise unreachable() from exc
        epoch = self.ids.epoch
        replay = await self.events_after(selector, base, limit)
        return History(replay.events, gap=True, resume_from=format_id(epoch, base))

    async def recent(self, selector: Selector, *, limit: int) -> list[Event]:
        if not limit:
            return []
        channels = await self._channels(selector, self._max_resume_channels) or []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel in channels:
                    pipe.xrevrange(self.keys.stream(channel), "+", "-", count=limit)
                replies = await pipe.execute()
        except FAULTS as exc:
            raise unreachable() from exc
        now = time.time()
        streams = [
            [
                e
                for e in (self._event_of(c, i, f) for i, f in reversed(entries))
                if not self._expired(e, now)
            ]
            for c, entries in zip(channels, replies, strict=True)
        ]
        return list(heapq.merge(*streams, key=lambda e: e.seq))[-limit:]

    async def _read_after(self, channels: list[str], start: str, limit: int | None) -> list[Any]:
        """One round trip: the head (epoch, newest seq), then each channel's entries and marks."""
        async with self.redis.pipeline(transaction=False) as pipe:
            # By hash: a registered Script would make the pipeline check the script cache first.
            pipe.evalsha(self.ids.head_script.sha, 2, self.keys.epoch, self.keys.seq)
            for channel in channels:
                pipe.xrange(self.keys.stream(channel), start, "+", count=limit)
                pipe.hget(self.keys.trimmed, channel)
                pipe.hget(self.keys.newest, channel)
            pipe.get(self.keys.forgotten)
            return await pipe.execute()

    async def _channels(self, selector: Selector, budget: int | None = None) -> list[str] | None:
        """The exact channels of ``selector`` plus the indexed channels its patterns match.

        With ``budget``, None when the patterns' prefixes span more indexed channels than that.
        """
        found = sorted(selector.channels)
        if not selector.patterns:
            return found
        await self.prune_index()
        # A pattern's text before its first ``*`` bounds a lexicographic range of the index.
        groups = prefix_groups(selector.patterns)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for prefix in groups:
                    low, high = ("-", "+") if not prefix else (f"[{prefix}", f"[{prefix}\xff")
                    # One more than the budget tells "too many" without reading them all.
                    page = {} if budget is None else {"start": 0, "num": budget + 1}
                    pipe.zrangebylex(self.keys.names, low, high, **page)
                ranges = dict(zip(groups, await pipe.execute(), strict=True))
        except FAULTS as exc:
            raise unreachable() from exc
        names = match_candidates(groups, ranges.__getitem__, budget)
        if names is None:
            return None
        found += sorted(names - selector.channels)
        return found

    async def prune_index(self, *, every: float = 0.0) -> None:
        """Forget channels whose newest event expired a history age ago (bounded per call).

        With ``every``, at most once per that many seconds in this process.
        """
        now = time.time()
        if every and now - self._pruned_at < min(every, self._history_ttl):
            return
        self._pruned_at = now
        stale = f"({now - self._history_ttl!r}"
        keys = [
            self.keys.index,
            self.keys.names,
            self.keys.newest,
            self.keys.forgotten,
            self.keys.trimmed,
        ]
        try:
            await self._prune(keys=keys, args=[stale])
        except FAULTS as exc:
            raise unreachable() from exc

    def _event_of(self, channel: str, entry_id: str, fields: dict[str, str]) -> Event:
        seq = int(entry_id.partition("-")[0])
        retry = fields.get("r")
        return Event(
            channel=channel,
            event=fields.get("e"),
            data=fields.get("d", ""),
            id=format_id(self.ids.epoch, seq),
            seq=seq,
            retry=int(retry) if retry else None,
            published_at=float(fields.get("t", 0.0)),
            ttl=float(fields["l"]) if "l" in fields else None,
        )

    def _expired(self, event: Event, now: float) -> bool:
        ttl = self._history_ttl if event.ttl is None else event.ttl
        return event.published_at + ttl < now

    # -- live delivery -------------------------------------------------------------------------

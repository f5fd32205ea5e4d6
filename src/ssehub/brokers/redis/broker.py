"""The Redis broker: publishing through one Lua script, with history reads and live delivery
composed in (``HistoryReader``, ``LiveReader``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

from redis.commands.core import AsyncScript as Script
from redis.exceptions import NoScriptError

from ...channels import Selector
from ...errors import BrokerUnavailable
from ...event import Event
from ...redis_client import pooled_client
from ..base import EventHandler, GapHandler, History, PublishStep, format_id
from .history import HistoryReader
from .ids import EventIds
from .keys import FAULTS, Keys, unreachable
from .reader import LiveReader
from .scripts import PUBLISH, StepScript, publish_script
from .step import LuaStep, script_step

log = logging.getLogger("ssehub.redis")

REPEATED, STALE, REFUSED = 1, 2, 3  # what PUBLISH answers besides 0 (stored)


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
        max_channels: int = 50_000,
        max_connections: int = 64,
        max_resume_channels: int = 10_000,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.keys = Keys(prefix)
        self._max_channels = max_channels
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._idempotency_window = idempotency_window
        self.redis = pooled_client(url, max_connections=max_connections, decode_responses=True)
        self._publish_script = self.redis.register_script(PUBLISH)
        self._step_scripts: dict[StepScript, Script] = {}  # PUBLISH with each step run in it
        self.ids = EventIds(self.redis, self.keys)
        self.history_reader = HistoryReader(
            self.redis,
            self.keys,
            self.ids,
            history_ttl=history_ttl,
            max_resume_channels=max_resume_channels,
        )
        self.live = LiveReader(url, self.keys, self.ids, self.history_reader)

    @classmethod
    def from_settings(cls, settings: Any) -> RedisBroker:
        """The broker for ``settings.broker_url`` with the history settings."""
        return cls(
            settings.broker_url,
            prefix=getattr(settings, "redis_prefix", "ssehub:"),
            history_size=settings.history_size,
            history_ttl=settings.history_ttl_seconds,
            idempotency_window=settings.idempotency_window_seconds,
            max_channels=settings.history_max_channels,
            max_resume_channels=settings.max_resume_channels,
        )

    @property
    def epoch(self) -> str:
        return self.ids.epoch

    @property
    def connected(self) -> bool:
        """Whether the live reader is connected and subscribed."""
        return self.live.connected

    def stream_key(self, channel: str) -> str:
        """The stream holding ``channel``'s kept events."""
        return self.keys.stream(channel)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, on_event: EventHandler, on_gap: GapHandler | None = None) -> None:
        with contextlib.suppress(BrokerUnavailable):
            await self.head()  # Redis may come later: the reader keeps trying, /readyz tells
        await self._check_eviction_policy()
        self.live.start(on_event, on_gap)

    async def close(self) -> None:
        await self.live.close()
        with contextlib.suppress(*FAULTS):
            await self.redis.aclose()

    async def _check_eviction_policy(self) -> None:
        """Warn when Redis may evict keys without a TTL: the epoch and sequence are such keys."""
        with contextlib.suppress(*FAULTS):  # CONFIG may be disabled (managed Redis)
            config = await self.redis.config_get("maxmemory-policy")
            policy = config.get("maxmemory-policy") or ""
            if policy.startswith("allkeys"):
                log.warning(
                    "redis: maxmemory-policy %s may evict the keys that define event ids; "
                    "use a volatile-* policy or noeviction",
                    policy,
                )

    async def healthy(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), 2.0)) and self.connected
        except FAULTS:
            return False

    async def publish(
        self,
        event: Event,
        *,
        idempotency_key: str | None = None,
        step: PublishStep | None = None,
    ) -> Event:
        scripted = script_step(step, event, self)
        if scripted is None and step is not None:
            # A step without Lua for this Redis: its own round trips around the publish.
            try:
                await step.before(event)
            except Exception:
                # A retry whose first attempt was stored is answered, never refused.
                replay = (
                    None if idempotency_key is None else await self._replay(event, idempotency_key)
                )
                if replay is None:
                    raise
                return replay
        script, step_keys, step_args = (
            (self._publish_script, (), ()) if scripted is None else self._step_parts(scripted)
        )
        k = self.keys
        keys = [
            k.epoch,
            k.seq,
            k.stream(event.channel),
            k.trimmed,
            k.idempotency(idempotency_key),
            k.index,
            k.names,
            k.newest,
            k.forgotten,
            k.incarnation,
            *step_keys,
        ]
        stamp = repr(event.published_at)
        retry = "" if event.retry is None else str(event.retry)
        name = event.event or ""
        keep = self._history_ttl if event.ttl is None else event.ttl
        args = [
            "",  # the run checked in with, set per attempt
            str(int(self._idempotency_window * 1000)) if idempotency_key else "",
            self._history_size,
            int(2000 * keep),
            stamp,
            repr(time.time()),
            name,
            retry,
            event.data,
            k.live(event.channel),
            event.channel,
            f"{stamp}\n{retry}\n{name}\n",  # the Pub/Sub message, before the data
            repr(event.published_at + keep),
            "" if event.ttl is None else repr(event.ttl),
            self._max_channels,
            k.stream(""),
            *step_args,
        ]
        epoch, position, status, answer = await self._run_publish(script, keys, args)
        if scripted is not None and status == REFUSED:
            raise scripted.refusal(position)  # the reason stands where a stored id would
        if status == REPEATED:
            stored = replayed(event, epoch, position)
        else:
            stored = event
            event.seq = int(position)
            event.id = format_id(epoch, event.seq)
            self.ids.note(epoch, event.seq)
        if scripted is not None:
            if scripted.answered is not None and answer:  # none for a refusal's replay
                scripted.answered(stored, answer)
        elif step is not None and stored is event:
            await step.after(stored)
        return stored

    def _step_parts(self, step: LuaStep) -> tuple[Script, list[str], list[Any]]:
        """The PUBLISH script running ``step``'s Lua, with its keys and arguments."""
        script = self._step_scripts.get(step.script)
        if script is None:
            script = self._step_scripts[step.script] = self.redis.register_script(
                publish_script(step.script)
            )
        return script, step.keys, step.args

    async def _replay(self, event: Event, key: str) -> Event | None:
        """``event`` as the first publish with ``key`` stored it, or None (none is kept)."""
        try:
            found = await self.redis.mget(self.keys.epoch, self.keys.idempotency(key))
        except FAULTS as exc:
            raise unreachable() from exc
        epoch, first = cast(list[str | None], found)  # the client decodes replies
        return replayed(event, epoch, first) if epoch and first else None

    async def _run_publish(
        self, script: Script, keys: list[str], args: list[Any]
    ) -> tuple[str, str, int, str]:
        """A PUBLISH script, checked in first whenever Redis may be a new incarnation.

        It is run by hash and never loaded before a check-in: after a restart Redis has no
        scripts, so the first publish of every process lands here and checks in.
        """
        for _ in range(3):
            args[0] = self.ids.run
            try:
                epoch, position, status, answer = await self.redis.evalsha(
                    script.sha, len(keys), *keys, *args
                )
            except NoScriptError:
                await self.ids.check_in()
                with contextlib.suppress(*FAULTS):
                    await self.redis.script_load(script.script)
                continue
            except FAULTS as exc:
                raise unreachable() from exc
            if status == STALE:  # Redis restarted (or is new) since this process checked in
                await self.ids.check_in()
                continue
            return epoch, position, status, answer
        raise BrokerUnavailable("the Redis broker keeps changing; retry")

    # -- reading -------------------------------------------------------------------------------

    async def head(self) -> str:
        epoch, seq = await self.ids.position()
        return format_id(epoch, seq)

    async def history(self, selector: Selector, after: str, *, limit: int | None = None) -> History:
        return await self.history_reader.history(selector, after, limit=limit)

    async def recent(self, selector: Selector, *, limit: int) -> list[Event]:
        return await self.history_reader.recent(selector, limit=limit)

    # -- live delivery -------------------------------------------------------------------------

    async def listen(self, name: str) -> None:
        await self.live.listen(name)

    async def unlisten(self, name: str) -> None:
        await self.live.unlisten(name)


def replayed(event: Event, epoch: str, position: str) -> Event:
    """The answer to a retry of ``event``: its first publish, stored at ``position``
    (``seq:channel``) in ``epoch``."""
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

"""Runs: a stage execution on a stage channel, with an identity, a terminal state and a snapshot.

Every stage message carries the ``run_id`` of its run (publishers send it; the hub adds the
current run's id when a message has none). A message with a new run id opens a new run on its
channel; without one, the first message of a channel or a ``stage_update`` that starts work after
the previous run ended does. A run closes on ``done`` or ``error``; after that the hub answers 409
to its messages, and to any message of a run the channel replaced. The tracker assembles
``full_text`` and the current stage/progress so a late joiner gets one ``snapshot`` event
instead of every token, and a watchdog ends runs whose publisher went silent with
``error: publisher_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from . import messages
from .background import stop_task
from .brokers.base import format_id, parse_id
from .channels import Selector
from .errors import Conflict
from .event import Event, make_event

log = logging.getLogger("ssehub.runs")

OPENING_STATUSES = frozenset({"pending", "queued", "started", "running", "processing"})
SUBMITTED = frozenset({"pending", "queued"})
MAX_RUNS = 10_000
MAX_ENDED_IDS = 16  # ids of a channel's earlier runs remembered to refuse their late messages


def new_run_id() -> str:
    """A fresh run id."""
    return uuid.uuid4().hex


def opening(run: RunState) -> frozenset[str]:
    """Stage statuses that start the next run after ``run`` ended.

    After a cancel only a new submission (``pending``) does, so a worker that starts a revoked
    task anyway cannot reopen the run and stops at its first token.
    """
    return SUBMITTED if run.status == "cancelled" else OPENING_STATUSES


class RunClosed(Conflict):
    """A publish to a run that already ended (done, error or cancelled) or was replaced."""

    code = "run_finished"


def resolve_run(
    status: str | None, current: str, ended: list[str], kind: str, data: dict[str, Any]
) -> str:
    """The run id a stage message belongs to, given its channel's latest run.

    ``status``/``current`` describe that run (None when the channel has none) and ``ended`` the
    ids of the runs it replaced. Raises RunClosed when the message continues an ended run.
    """
    rid = data.get("run_id") if isinstance(data.get("run_id"), str) else None
    if status is None:
        return rid or new_run_id()
    if rid and rid != current:
        if rid in ended:
            raise RunClosed(f"run {rid} already ended: a newer run replaced it")
        return rid
    if status == "running":
        return current
    starts = SUBMITTED if status == "cancelled" else OPENING_STATUSES
    if kind == "stage_update" and data.get("status") in starts:
        return rid or new_run_id()  # a retry reopens its own run; a bare start opens the next
    raise RunClosed(f"the run {current} already ended ({status}); start a new run first")


@dataclass(slots=True)
class RunState:
    """What a late joiner needs to know about one run."""

    channel: str
    project_id: str
    stage: str
    run_id: str = field(default_factory=new_run_id)
    status: str = "running"
    stage_status: str | None = None
    progress: float | int | None = None
    message: str | None = None
    current: int | None = None
    total: int | None = None
    item_name: str | None = None
    error: str | None = None
    parts: list[str] = field(default_factory=list)
    last_seq: int = 0
    last_id: str = ""
    touched: float = field(default_factory=time.monotonic)
    ended: list[str] = field(default_factory=list)  # ids of the runs this one replaced

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def full_text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def snapshot(self) -> dict[str, Any]:
        """The ``snapshot`` message: assembled text and the current stage/progress."""
        return {
            "type": "snapshot",
            "stage": self.stage,
            "project_id": self.project_id,
            "status": self.status,
            "stage_status": self.stage_status,
            "progress": self.progress,
            "message": self.message,
            "current": self.current,
            "total": self.total,
            "item_name": self.item_name,
            "error": self.error,
            "full_text": self.full_text,
            "last_event_id": self.last_id,
            "timestamp": time.time(),
            "run_id": self.run_id,
        }

    def snapshot_event(self) -> Event:
        """The snapshot as an event placed where it replays: before an ended run's outcome."""
        event = make_event(self.channel, "snapshot", self.snapshot())
        # An ended run's outcome (done/error, kept long) is replayed after its snapshot.
        event.seq = self.last_seq - 1 if self.finished else self.last_seq
        return event

    def timeout_event(self) -> Event:
        """The ``error: publisher_timeout`` that ends this run when its publisher went silent."""
        return make_event(
            self.channel, "error", messages.error(self.stage, self.project_id, "publisher_timeout")
        )


class RunStore(Protocol):
    """Run state behind the publish path and ``Hub.open`` (memory now, Redis later)."""

    async def check(self, event: Event) -> str | None:
        """RunClosed when ``event`` would continue an ended run; else the run id to add to a
        stage message that has none (None when there is nothing to add)."""

    async def observe(self, event: Event) -> None:
        """Fold a published event into its run's state."""

    async def snapshots(self, selector: Selector) -> list[Event]:
        """One ``snapshot`` event per known run on ``selector``'s channels."""

    async def get(self, channel: str) -> RunState | None:
        """The latest run of a channel."""

    def classify(self, event: Event) -> None:
        """Set the event's retention class (``ttl``): tokens short, outcomes long."""


def decode(event: Event) -> dict[str, Any] | None:
    """The JSON object of a stage message, None for anything else."""
    if (
        event.event not in messages.STAGE_TYPES
        or messages.parse_stage_channel(event.channel) is None
    ):
        return None
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


class MemoryRuns:
    """Run state of this process, bounded to the latest ``MAX_RUNS`` runs."""

    def __init__(
        self,
        *,
        publisher_timeout: float = 0.0,
        token_ttl: float | None = None,
        outcome_ttl: float | None = None,
    ) -> None:
        self.publisher_timeout = publisher_timeout
        self.token_ttl = token_ttl
        self.outcome_ttl = outcome_ttl
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        self._watchdog: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- RunStore ------------------------------------------------------------------------------

    async def get(self, channel: str) -> RunState | None:
        return self._runs.get(channel)

    def classify(self, event: Event) -> None:
        if event.event not in messages.STAGE_TYPES or event.ttl is not None:
            return
        if messages.parse_stage_channel(event.channel) is None:
            return
        if event.event == "token":
            event.ttl = self.token_ttl
        elif event.event != "progress":
            event.ttl = self.outcome_ttl

    async def check(self, event: Event) -> str | None:
        data = decode(event)
        if data is None:
            return None
        run = self._runs.get(event.channel)
        if run is None:
            rid = resolve_run(None, "", [], event.event or "", data)
        else:
            rid = resolve_run(run.status, run.run_id, run.ended, event.event or "", data)
        return None if data.get("run_id") == rid else rid

    async def observe(self, event: Event) -> None:
        data = decode(event)
        if data is None:
            return
        kind = event.event
        rid = data.get("run_id") if isinstance(data.get("run_id"), str) else None
        run = self._runs.get(event.channel)
        if (
            run is None
            or (rid and rid != run.run_id)
            or (run.finished and kind == "stage_update" and data.get("status") in opening(run))
        ):
            _, project, stage = messages.parse_stage_channel(event.channel)  # type: ignore[misc]
            ended = run.ended if run is not None else []
            if run is not None and run.run_id != rid:
                ended = [*ended, run.run_id][-MAX_ENDED_IDS:]
            run = RunState(channel=event.channel, project_id=project, stage=stage, ended=ended)
            run.run_id = rid or run.run_id
            self._runs[event.channel] = run
            while len(self._runs) > MAX_RUNS:
                self._runs.popitem(last=False)
        elif run.finished:
            return
        self._runs.move_to_end(event.channel)
        run.last_seq, run.last_id, run.touched = event.seq, event.id, time.monotonic()
        if kind == "token":
            if isinstance(data.get("full_text"), str):
                run.parts[:] = [data["full_text"]]
            else:
                run.parts.append(str(data.get("content") or ""))
        elif kind == "stage_update":
            run.stage_status = data.get("status")
            run.progress = data.get("progress")
            run.message = data.get("message")
        elif kind == "progress":
            run.current, run.total = data.get("current"), data.get("total")
            run.progress, run.item_name = data.get("progress"), data.get("item_name")
        elif kind == "done":
            run.status = "done"
            if isinstance(data.get("full_text"), str):
                run.parts[:] = [data["full_text"]]
        elif kind == "error":
            run.status = "cancelled" if data.get("error") == "cancelled" else "error"
            run.error = str(data.get("error"))

    async def snapshots(self, selector: Selector) -> list[Event]:
        found = [self._runs[c] for c in selector.channels if c in self._runs]
        if selector.patterns:
            found += [
                run
                for name, run in self._runs.items()
                if name not in selector.channels and selector.covers(name)
            ]
        return [run.snapshot_event() for run in found if run.last_id]

    # -- publisher timeout ---------------------------------------------------------------------

    async def start(self, publish: Any) -> None:
        """Start the watchdog of silent publishers and old runs; ``publish``: Event -> Event."""
        self.loop = asyncio.get_running_loop()
        self._watchdog = asyncio.create_task(self._watch(publish), name="ssehub-runs")

    async def close(self) -> None:
        await stop_task(self._watchdog)

    async def _watch(self, publish: Any) -> None:
        timeout = self.publisher_timeout
        interval = max(0.05, min(1.0, timeout / 4)) if timeout > 0 else 30.0
        while True:
            await asyncio.sleep(interval)
            self._forget_finished()
            if timeout <= 0:
                continue
            cutoff = time.monotonic() - timeout
            for run in [r for r in self._runs.values() if not r.finished and r.touched < cutoff]:
                await end_silent_run(publish, run)

    def _forget_finished(self) -> None:
        """Drop ended runs older than the outcome retention (their full text goes with them)."""
        keep = self.outcome_ttl if self.outcome_ttl is not None else 86400.0
        cutoff = time.monotonic() - keep
        for channel in [c for c, r in self._runs.items() if r.finished and r.touched < cutoff]:
            del self._runs[channel]


class PublishDoor(Protocol):
    """Where publishes enter: :meth:`ssehub.hub.Hub.publish`."""

    async def publish(self, event: Event, *, key: str | None = None) -> Event:
        """Publish ``event`` with the run lifecycle."""


async def publish_event(hub: PublishDoor, event: Event, key: str | None = None) -> Event:
    """``hub.publish(event, key=key)``, under its former name."""
    return await hub.publish(event, key=key)


async def snapshot_tail(
    broker: Any, runs: RunStore, selector: Selector, after: str
) -> tuple[list[Event], list[Event]]:
    """Snapshots of ``selector``'s runs and the events after them that they do not cover.

    History is read again from the oldest snapshot's position, and each channel skips what its
    own snapshot already contains, so the client ends with exactly the published text.
    """
    snaps = await runs.snapshots(selector)
    if not snaps:
        return [], []
    oldest = min(snap.seq for snap in snaps)
    history = await broker.history(selector, format_id(broker.epoch, oldest))
    if history.gap:
        return snaps, []
    cut = {snap.channel: snap.seq for snap in snaps}
    parsed = parse_id(after)
    floor = parsed[1] if parsed else 0
    return snaps, [e for e in history.events if e.seq > cut.get(e.channel, floor)]


def stamp_run_id(event: Event, run_id: str) -> None:
    """Add ``run_id`` to a stage message's JSON object when it has none."""
    data = decode(event)
    if data is not None:
        data["run_id"] = run_id
        event.data = orjson.dumps(data).decode()
        event._frame = None


def create_runs(settings: Any) -> MemoryRuns:
    """Run state for ``settings``: in Redis under a Redis broker, else in this process."""
    options = {
        "publisher_timeout": settings.publisher_timeout_seconds,
        "token_ttl": settings.token_history_seconds,
        "outcome_ttl": settings.outcome_history_seconds,
    }
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        from .runs_redis import RedisRuns

        return RedisRuns(settings.broker_url, prefix=settings.redis_prefix, **options)
    return MemoryRuns(**options)


async def end_silent_run(publish: Any, run: RunState) -> None:
    """Publish the timeout that ends ``run``; a broker that is down is tried again next tick."""
    try:
        await publish(run.timeout_event())
    except Exception:
        log.warning("could not end silent run %s", run.channel, exc_info=True)

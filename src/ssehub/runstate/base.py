"""The RunStore protocol and what it stores: a stage execution's identity, outcome and snapshot.

Every stage message carries the ``run_id`` of its run (publishers send it; the hub adds the
current run's id when a message has none). A message with a new run id opens a new run on its
channel; without one, the first message of a channel or a ``stage_update`` that starts work after
the previous run ended does. A run closes on ``done`` or ``error``; after that the hub answers 409
to its messages, and to any message of a run the channel replaced. The store assembles
``full_text`` and the current stage/progress so a late joiner gets one ``snapshot`` event
instead of every token, and a watchdog ends runs whose publisher went silent with
``error: publisher_timeout``. The rules themselves are in :mod:`ssehub.runstate.rules`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .. import messages
from ..channels import Selector
from ..errors import Conflict
from ..event import Event, make_event

log = logging.getLogger("ssehub.runs")

MAX_ENDED_IDS = 16  # ids of a channel's earlier runs remembered to refuse their late messages

Publish = Callable[[Event], Awaitable[Event]]


def new_run_id() -> str:
    """A fresh run id."""
    return uuid.uuid4().hex


class RunClosed(Conflict):
    """A publish to a run that already ended (done, error or cancelled) or was replaced."""

    code = "run_finished"


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


@runtime_checkable
class RunStore(Protocol):
    """Run state behind the publish path and ``Hub.open``; memory and Redis implement it alike."""

    loop: asyncio.AbstractEventLoop | None  # the loop it was started on (for thread publishers)

    async def check(self, event: Event) -> str | None:
        """RunClosed when ``event`` would continue an ended run; else the run id to add to a
        stage message that has none (None when there is nothing to add)."""

    async def observe(self, event: Event) -> None:
        """Fold a published event into its run's state."""

    async def before(self, event: Event) -> None:
        """The broker's step before a stage message is stored (``PublishStep``): ``check``, the
        run id added, the retention set (``complete_message``)."""

    async def after(self, event: Event) -> None:
        """The broker's step once a stage message is stored: ``observe``."""

    async def snapshots(self, selector: Selector) -> list[Event]:
        """One ``snapshot`` event per known run on ``selector``'s stage channels and project-wide
        patterns, by channel name."""

    async def get(self, channel: str) -> RunState | None:
        """The latest run of a channel (None when none, or when it was forgotten)."""

    def set_retention(self, event: Event) -> None:
        """Set the event's retention (``ttl``): tokens short, outcomes long."""

    async def start(self, publish: Publish) -> None:
        """Start the watchdog that ends silent runs through ``publish``."""

    async def close(self) -> None:
        """Stop the watchdog and release connections."""


async def end_silent_run(publish: Publish, run: RunState) -> bool:
    """Publish the timeout that ends ``run``; False when the broker is down (try next tick)."""
    try:
        await publish(run.timeout_event())
    except Exception:
        log.warning("could not end silent run %s", run.channel, exc_info=True)
        return False
    return True

"""The run rules both stores share: what a stage message says, which run it belongs to, retention.

A store keeps state; these functions decide. The Redis store runs its state transition in one
Lua script, which receives what :class:`StageMessage` read here instead of reading the JSON
again, so the two stores cannot read one message differently; inside the broker's publish
script it also resolves the run in Lua (``RESOLVE``, ``resolve_run`` written again), which the
RunStore contract tests run against these.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson

from .. import messages
from ..event import Event
from .base import RunClosed, RunStore, new_run_id

SUBMITTED = frozenset({"pending", "queued"})
OPENING_STATUSES = SUBMITTED | {"started", "running", "processing"}
# What a stage_update starting work reopens: after a cancel only a new submission does, so a
# worker that starts a revoked task anyway cannot reopen the run and stops at its first token.
REOPENED_BY_SUBMISSION = ("done", "error", "cancelled")
REOPENED_BY_START = ("done", "error")
NO_FIELDS: dict[str, Any] = {}
DEFAULT_KEEP_SECONDS = 86400.0  # how long run state outlives its last event without a setting


@functools.lru_cache(maxsize=4096)
def stage_channel(channel: str) -> tuple[str, str, str] | None:
    """(prefix, project_id, stage) of a stage channel, else None; remembered for the channels in
    use, as each stage publish asks several times."""
    return messages.parse_stage_channel(channel)


def is_stage_event(event: Event) -> bool:
    """Whether ``event`` can be a stage message (its type, its channel): what a run store reads;
    it ignores every other event."""
    return event.event in messages.STAGE_TYPES and stage_channel(event.channel) is not None


def stage_payload(event: Event) -> dict[str, Any] | None:
    """The JSON object of a stage message, None for any other event."""
    if not is_stage_event(event):
        return None
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(slots=True)  # not frozen: that makes building one, once per message, 5x slower
class StageMessage:
    """What one stage message tells its run; each part is read from its JSON object on demand
    (``check`` needs only the run id)."""

    kind: str
    run_id: str | None  # the run it names; None: the channel's current run
    data: dict[str, Any]

    @classmethod
    def read(cls, event: Event) -> StageMessage | None:
        """The message of a stage event, None for any other event."""
        data = stage_payload(event)
        if data is None:
            return None
        run_id = data.get("run_id")
        return cls(event.event or "", run_id if isinstance(run_id, str) and run_id else None, data)

    @property
    def reopens(self) -> tuple[str, ...]:
        """The ended run statuses after which this message opens the next run."""
        status = self.data.get("status")
        if self.kind != "stage_update" or not isinstance(status, str):
            return ()
        if status in SUBMITTED:
            return REOPENED_BY_SUBMISSION
        return REOPENED_BY_START if status in OPENING_STATUSES else ()

    def changes(self) -> tuple[dict[str, Any], str | None, str | None, str | None]:
        """What folding it into its run changes: (snapshot fields it sets, None clearing one;
        the whole text so far, replacing the run's; else token text added to it; the outcome,
        "done", "error" or "cancelled", when it ends the run)."""
        kind, data = self.kind, self.data
        if kind == "token" or kind == "done":
            full_text = data.get("full_text")
            text = full_text if isinstance(full_text, str) else None
            if kind == "done":
                return NO_FIELDS, text, None, "done"
            return (
                NO_FIELDS,
                text,
                None if text is not None else str(data.get("content") or ""),
                None,
            )
        if kind == "stage_update":
            keys = {"stage_status": "status", "progress": "progress", "message": "message"}
            return {name: data.get(key) for name, key in keys.items()}, None, None, None
        if kind == "progress":
            names = ("current", "total", "progress", "item_name")
            return {name: data.get(name) for name in names}, None, None, None
        error = data.get("error")
        outcome = "cancelled" if error == "cancelled" else "error"
        return {"error": str(error)}, None, None, outcome


def opens_run(status: str | None, current: str, message: StageMessage) -> bool:
    """Whether ``message`` opens a new run on a channel whose latest run is ``current``
    (``status`` None when the channel has none)."""
    if status is None or (message.run_id is not None and message.run_id != current):
        return True
    return status != "running" and status in message.reopens


def resolve_run(status: str | None, current: str, ended: list[str], message: StageMessage) -> str:
    """The run id ``message`` belongs to, given its channel's latest run.

    ``status``/``current`` describe that run (None when the channel has none) and ``ended`` the
    ids of the runs it replaced. Raises RunClosed when the message continues an ended run.
    """
    rid = message.run_id
    if status is None:
        return rid or new_run_id()
    if rid and rid != current:
        if rid in ended:
            raise RunClosed(f"run {rid} already ended: a newer run replaced it")
        return rid
    if status == "running":
        return current
    if status in message.reopens:
        return rid or new_run_id()  # a retry reopens its own run; a bare start opens the next
    raise RunClosed(f"the run {current} already ended ({status}); start a new run first")


async def complete_message(store: RunStore, event: Event) -> None:
    """A store's step before a publish: RunClosed when ``event`` continues an ended run, else
    its run id added (when it names none) and its retention set."""
    run_id = await store.check(event)
    if run_id is not None:
        stamp_run_id(event, run_id)
    store.set_retention(event)


def stamp_run_id(event: Event, run_id: str) -> None:
    """Add ``run_id`` to a stage message's JSON object when it has none."""
    data = stage_payload(event)
    if data is not None:
        event.data = stamped_text(data, run_id)
        event._frame = None


def stamped_text(data: dict[str, Any], run_id: str) -> str:
    """The JSON text of a stage message's object ``data`` with ``run_id`` as its run id."""
    return orjson.dumps({**data, "run_id": run_id}).decode()


def splice_run_id(head: str, tail: str, event: Event, run_id: str) -> None:
    """Stamp ``run_id`` into ``event``, whose JSON text is ``head`` + the id + ``tail``."""
    event.data = head + orjson.dumps(run_id).decode() + tail
    event._frame = None


def run_id_to_add(message: StageMessage, run_id: str) -> str | None:
    """``run_id`` when the message does not already carry it (what ``RunStore.check`` answers)."""
    return None if message.run_id == run_id else run_id


@dataclass(frozen=True, slots=True)
class RunTimes:
    """How long runs last: the silent-publisher timeout (0 off) and the retention of tokens and
    outcomes in history, which run state itself outlives its last event by."""

    publisher_timeout: float = 0.0
    token_ttl: float | None = None
    outcome_ttl: float | None = None

    @property
    def keep(self) -> float:
        """Seconds a run's state is kept after its last event."""
        return self.outcome_ttl if self.outcome_ttl is not None else DEFAULT_KEEP_SECONDS

    @property
    def watch_interval(self) -> float:
        """How often a watchdog looks for runs silent longer than the timeout."""
        timeout = self.publisher_timeout
        return max(0.05, min(1.0, timeout / 4)) if timeout > 0 else 30.0

    def set_retention(self, event: Event) -> None:
        """Set a stage event's ``ttl`` unless it has one: tokens short, outcomes long, progress
        as any event."""
        if event.event not in messages.STAGE_TYPES or event.ttl is not None:
            return
        if stage_channel(event.channel) is None:
            return
        if event.event == "token":
            event.ttl = self.token_ttl
        elif event.event != "progress":
            event.ttl = self.outcome_ttl

"""Run state behind the RunStore protocol: in this process or in Redis, chosen with the broker."""

from __future__ import annotations

from .base import (
    MAX_ENDED_IDS,
    Publish,
    RunClosed,
    RunState,
    RunStore,
    end_silent_run,
    new_run_id,
)
from .memory import MAX_RUNS, MemoryRunStore
from .rules import (
    OPENING_STATUSES,
    SUBMITTED,
    RunTimes,
    StageMessage,
    is_stage_event,
    resolve_run,
    stage_payload,
    stamp_run_id,
)

__all__ = [
    "MAX_ENDED_IDS",
    "MAX_RUNS",
    "OPENING_STATUSES",
    "SUBMITTED",
    "MemoryRunStore",
    "Publish",
    "RunClosed",
    "RunState",
    "RunStore",
    "RunTimes",
    "StageMessage",
    "end_silent_run",
    "is_stage_event",
    "new_run_id",
    "resolve_run",
    "stage_payload",
    "stamp_run_id",
]

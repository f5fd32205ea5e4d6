"""The record of one executed stage (a task), as stored and as answered by the task API."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class TaskInfo:
    """One execute_stage request."""

    task_id: str
    project_id: str
    stage: str
    channel: str
    queue: str
    state: str = "pending"
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    run_id: str | None = None  # this task's run, not a later one on the same channel
    resume_after: str = ""  # the event id just before the run's first event

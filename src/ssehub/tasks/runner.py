"""Task bookkeeping in the hub and the two runners: in-process asyncio and Celery.

Cancellation reaches a publisher two ways: the hub ends the run (``error: cancelled``), so the
publisher's next message gets 409 and raises RunClosed; and the runner stops the task itself
(asyncio cancellation in-process, Celery ``revoke`` for queued work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import messages
from ..background import stop_task
from ..channels import matches
from ..errors import NotFound
from ..event import make_event
from ..publisher import Publisher
from ..runs import RunClosed, RunState, publish_event
from .execute import run_async, run_sync
from .registry import StageSpec

log = logging.getLogger("ssehub.tasks")

MAX_TASKS = 10_000


def retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt + 1`` of a failed stage (both runners)."""
    return float(min(0.5 * 2**attempt, 30.0))


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
    unwatched_since: float | None = None
    run_id: str | None = None  # this task's run, not a later one on the same channel


class Runner(Protocol):
    """Where stages run."""

    name: str

    async def submit(self, info: TaskInfo, spec: StageSpec, input_data: dict[str, Any]) -> None:
        """Start (or queue) the stage."""

    async def cancel(self, info: TaskInfo) -> None:
        """Stop the stage if it is queued or running."""

    async def state(self, info: TaskInfo) -> str:
        """pending / running / done / error / cancelled, as far as the runner knows."""

    async def close(self) -> None:
        """Stop whatever is still running."""


class InProcessRunner:
    """Stages as asyncio tasks of the hub process (sync stages in a worker thread)."""

    name = "inprocess"

    def __init__(self, hub: Any, prefix: str) -> None:
        self.hub = hub
        self.prefix = prefix
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def submit(self, info: TaskInfo, spec: StageSpec, input_data: dict[str, Any]) -> None:
        task = asyncio.create_task(self._run(info, spec, input_data), name=f"stage-{info.task_id}")
        self._tasks[info.task_id] = task

    async def _run(self, info: TaskInfo, spec: StageSpec, input_data: dict[str, Any]) -> None:
        info.state = "running"
        try:
            for attempt in range(spec.max_retries + 1):
                pub = Publisher(
                    info.project_id,
                    info.stage,
                    hub=self.hub,
                    prefix=self.prefix,
                    retry_count=attempt,
                )
                try:
                    if spec.is_async:
                        await run_async(spec, pub, input_data)
                    else:
                        await asyncio.to_thread(run_sync, spec, pub, input_data)
                    break
                except RunClosed:
                    raise
                except Exception:
                    if attempt >= spec.max_retries:
                        raise
                    await asyncio.sleep(retry_delay(attempt))
            info.state = "done"
        except (asyncio.CancelledError, RunClosed):
            info.state = "cancelled"
        except Exception as exc:
            info.state, info.error = "error", str(exc)
            log.info("stage %s of project %s failed: %s", info.stage, info.project_id, exc)
        finally:
            info.finished_at = time.time()
            self._tasks.pop(info.task_id, None)

    async def cancel(self, info: TaskInfo) -> None:
        task = self._tasks.get(info.task_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 5)

    async def state(self, info: TaskInfo) -> str:
        return info.state

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)


CELERY_STATES = {
    "PENDING": "pending",
    "RECEIVED": "pending",
    "STARTED": "running",
    "RETRY": "running",
    "SUCCESS": "done",
    "FAILURE": "error",
    "REVOKED": "cancelled",
}


class CeleryRunner:
    """Stages on Celery workers (Redis broker and result backend); workers publish over HTTP."""

    name = "celery"

    def __init__(self, celery: Any, prefix: str) -> None:
        self.celery = celery
        self.prefix = prefix

    async def submit(self, info: TaskInfo, spec: StageSpec, input_data: dict[str, Any]) -> None:
        args = (info.project_id, info.stage, input_data, self.prefix)
        await asyncio.to_thread(
            self.celery.send_task,
            "ssehub.execute_stage",
            args=args,
            task_id=info.task_id,
            queue=spec.queue,
        )

    async def cancel(self, info: TaskInfo) -> None:
        await asyncio.to_thread(self.celery.control.revoke, info.task_id)

    async def state(self, info: TaskInfo) -> str:
        if info.state == "cancelled":
            return "cancelled"
        result = self.celery.AsyncResult(info.task_id)
        raw = await asyncio.to_thread(lambda: result.state)
        return CELERY_STATES.get(str(raw), str(raw).lower())

    async def close(self) -> None:
        """Workers keep running; nothing to stop here."""


class TaskManager:
    """The hub's view of executed stages: submit, status and cancel by task id."""

    def __init__(
        self, hub: Any, runner: Runner, prefix: str, *, cancel_unwatched: float = 0.0
    ) -> None:
        self.hub = hub
        self.runner = runner
        self.prefix = prefix
        self.cancel_unwatched = cancel_unwatched
        self.tasks: OrderedDict[str, TaskInfo] = OrderedDict()
        self._watcher: asyncio.Task[None] | None = None

    async def submit(
        self, project_id: str, spec: StageSpec, input_data: dict[str, Any]
    ) -> TaskInfo:
        """Open the run with ``stage_update: pending`` and hand the stage to the runner."""
        channel = messages.stage_channel(project_id, spec.name, self.prefix)
        info = TaskInfo(
            task_id=str(uuid.uuid4()),
            project_id=project_id,
            stage=spec.name,
            channel=channel,
            queue=spec.queue,
        )
        self.tasks[info.task_id] = info
        while len(self.tasks) > MAX_TASKS:
            self.tasks.popitem(last=False)
        pending = messages.stage_update(spec.name, project_id, "pending", 0, "task queued")
        await publish_event(self.hub, make_event(channel, "stage_update", pending))
        run = await self.hub.runs.get(channel) if self.hub.runs is not None else None
        info.run_id = run.run_id if run is not None else None
        await self.runner.submit(info, spec, input_data)
        if self.cancel_unwatched > 0 and self._watcher is None:
            self._watcher = asyncio.create_task(self._cancel_unwatched(), name="ssehub-unwatched")
        return info

    def get(self, task_id: str) -> TaskInfo:
        """The task (404 when unknown)."""
        info = self.tasks.get(task_id)
        if info is None:
            raise NotFound(f"unknown task {task_id!r}", code="unknown_task")
        return info

    async def status(self, task_id: str) -> dict[str, Any]:
        """State from the run when it ended, else from the runner; plus the run's progress."""
        info = self.get(task_id)
        run = await self._run_of(info)
        if run is not None and run.finished:
            state = run.status
        else:
            state = await self.runner.state(info)
        return {
            "task_id": info.task_id,
            "project_id": info.project_id,
            "stage": info.stage,
            "channel": info.channel,
            "queue": info.queue,
            "runner": self.runner.name,
            "status": state,
            "progress": run.progress if run else None,
            "error": (run.error if run and run.error else info.error),
            "created_at": info.created_at,
        }

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """End the run (``error: cancelled``) and stop the task on its runner."""
        info = self.get(task_id)
        run = await self._run_of(info)
        if run is None or not run.finished:
            msg = messages.error(info.stage, info.project_id, "cancelled")
            with contextlib.suppress(RunClosed):
                await publish_event(self.hub, make_event(info.channel, "error", msg))
        info.state = "cancelled" if info.finished_at is None else info.state
        await self.runner.cancel(info)
        return await self.status(task_id)

    async def _run_of(self, info: TaskInfo) -> RunState | None:
        """The task's run while it is still the channel's latest one."""
        run = await self.hub.runs.get(info.channel) if self.hub.runs is not None else None
        return run if run is not None and run.run_id == info.run_id else None

    async def _ended(self, info: TaskInfo) -> bool:
        run = await self._run_of(info)
        return info.finished_at is not None or (run is not None and run.finished)

    def _watchers(self, channel: str) -> int:
        """Streams of this process that receive ``channel`` (exact or by pattern)."""
        counts = self.hub.subscriber_counts()
        return sum(n for name, n in counts.items() if name == channel or matches(name, channel))

    async def _cancel_unwatched(self) -> None:
        """Cancel running tasks nobody has watched for ``cancel_unwatched`` seconds."""
        interval = max(0.05, min(1.0, self.cancel_unwatched / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for info in [i for i in self.tasks.values() if i.state != "cancelled"]:
                if await self._ended(info) or self._watchers(info.channel):
                    info.unwatched_since = None
                    continue
                if info.unwatched_since is None:
                    info.unwatched_since = now
                elif now - info.unwatched_since >= self.cancel_unwatched:
                    log.info("cancelling task %s: nobody watches %s", info.task_id, info.channel)
                    with contextlib.suppress(Exception):
                        await self.cancel(info.task_id)

    async def close(self) -> None:
        await stop_task(self._watcher)
        await self.runner.close()

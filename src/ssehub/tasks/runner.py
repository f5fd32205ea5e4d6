"""Task bookkeeping in the hub and the two runners: in-process asyncio and Celery.

Each task is one run of its stage: ``execute_stage`` picks the run id and every message of the
task carries it. Task records live in a :mod:`~ssehub.tasks.store` (Redis under a Redis
broker), so any hub process answers for any task. Cancellation reaches a publisher two ways:
the hub ends the run (``error: cancelled``), so every later message of that run id gets 409 and
raises RunClosed (a revoked Celery task that starts anyway included); and the runner stops the
task itself (asyncio cancellation by the process running it, which sees the cancelled record
within a second, or Celery ``revoke`` for queued work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from .. import messages
from ..background import stop_task
from ..brokers.base import format_id
from ..channels import matches
from ..errors import NotFound
from ..event import make_event
from ..runs import RunClosed, RunState, new_run_id
from ..sdk.publisher import Publisher
from .execute import run_async, run_sync
from .info import TaskInfo
from .registry import StageSpec
from .store import MemoryTasks, TaskStore

if TYPE_CHECKING:
    from ..cluster import ClusterState
    from ..hub import Hub

log = logging.getLogger("ssehub.tasks")

MAX_WATCHED = 10_000  # tasks this process watches for cross-process cancels and watchers


def retry_delay(attempt: int) -> float:
    """Seconds before retry ``attempt + 1`` of a failed stage (both runners)."""
    return float(min(0.5 * 2**attempt, 30.0))


class Runner(Protocol):
    """Where stages run."""

    name: str

    async def submit(self, info: TaskInfo, spec: StageSpec, input_data: dict[str, Any]) -> None:
        """Start (or queue) the stage."""

    async def cancel(self, info: TaskInfo) -> None:
        """Stop the stage if it is queued or running."""

    async def state(self, info: TaskInfo) -> str:
        """pending / running / done / error / cancelled, as far as the runner knows."""

    def running_here(self) -> list[str]:
        """Ids of the tasks running in this process (stopped here when cancelled elsewhere)."""

    async def close(self) -> None:
        """Stop whatever is still running."""


class InProcessRunner:
    """Stages as asyncio tasks of the hub process (sync stages in a worker thread)."""

    name = "inprocess"

    def __init__(self, hub: Hub, prefix: str, store: TaskStore | None = None) -> None:
        self.hub = hub
        self.prefix = prefix
        self.store = store or MemoryTasks()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def running_here(self) -> list[str]:
        """Ids of the tasks running in this process."""
        return list(self._tasks)

    async def _save(self, info: TaskInfo) -> None:
        with contextlib.suppress(Exception):
            await self.store.put(info)

    async def submit(self, info: TaskInfo, spec: StageSpec, input_data: dict[str, Any]) -> None:
        task = asyncio.create_task(self._run(info, spec, input_data), name=f"stage-{info.task_id}")
        self._tasks[info.task_id] = task

    async def _run(self, info: TaskInfo, spec: StageSpec, input_data: dict[str, Any]) -> None:
        info.state = "running"
        await self._save(info)
        try:
            for attempt in range(spec.max_retries + 1):
                pub = Publisher(
                    info.project_id,
                    info.stage,
                    hub=self.hub,
                    prefix=self.prefix,
                    retry_count=attempt,
                    run_id=info.run_id,
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
            await self._save(info)

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
            kwargs={"run_id": info.run_id},
            task_id=info.task_id,
            queue=spec.queue,
        )

    def running_here(self) -> list[str]:
        """Celery tasks run on workers, never in a hub process."""
        return []

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
    """The hub's view of executed stages: submit, status and cancel by task id, from any process."""

    def __init__(
        self,
        hub: Hub,
        runner: Runner,
        prefix: str,
        *,
        store: TaskStore | None = None,
        cluster: ClusterState | None = None,
        cancel_unwatched: float = 0.0,
    ) -> None:
        self.hub = hub
        self.runner = runner
        self.prefix = prefix
        self.store = store or MemoryTasks()
        self.cluster = cluster
        self.cancel_unwatched = cancel_unwatched
        # Tasks submitted here, with since when nobody has watched them (None: watched).
        self.watched: OrderedDict[str, float | None] = OrderedDict()
        self._watcher: asyncio.Task[None] | None = None

    async def submit(
        self,
        project_id: str,
        spec: StageSpec,
        input_data: dict[str, Any],
        *,
        run_id: str | None = None,
    ) -> TaskInfo:
        """Open the run (``run_id``, new by default) with ``stage_update: pending`` and hand
        the stage to the runner."""
        channel = messages.stage_channel(project_id, spec.name, self.prefix)
        info = TaskInfo(
            task_id=str(uuid.uuid4()),
            project_id=project_id,
            stage=spec.name,
            channel=channel,
            queue=spec.queue,
            run_id=run_id or new_run_id(),
        )
        pending = messages.stage_update(spec.name, project_id, "pending", 0, "task queued")
        pending["run_id"] = info.run_id
        opened = await self.hub.publish(make_event(channel, "stage_update", pending))
        info.resume_after = format_id(self.hub.broker.epoch, max(0, opened.seq - 1))
        await self.store.put(info)
        await self.runner.submit(info, spec, input_data)
        self.watched[info.task_id] = None
        while len(self.watched) > MAX_WATCHED:
            self.watched.popitem(last=False)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="ssehub-tasks")
        return info

    async def get(self, task_id: str) -> TaskInfo:
        """The task (404 when unknown)."""
        info = await self.store.get(task_id) if len(task_id) <= 64 else None
        if info is None:
            raise NotFound(f"unknown task {task_id[:64]!r}", code="unknown_task")
        return info

    async def status(self, task_id: str) -> dict[str, Any]:
        """State from the run when it ended, else from the runner; plus the run's progress."""
        info = await self.get(task_id)
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
            "run_id": info.run_id,
            "status": state,
            "progress": run.progress if run else None,
            "error": (run.error if run and run.error else info.error),
            "created_at": info.created_at,
        }

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """End the run (``error: cancelled``) and stop the task on its runner."""
        info = await self.get(task_id)
        run = await self._run_of(info)
        if run is None or not run.finished:
            msg = messages.error(info.stage, info.project_id, "cancelled")
            msg["run_id"] = info.run_id
            with contextlib.suppress(RunClosed):
                await self.hub.publish(make_event(info.channel, "error", msg))
        if info.finished_at is None:
            info.state = "cancelled"
            await self.store.put(info)  # the process running it stops it (see _watch)
        await self.runner.cancel(info)
        return await self.status(task_id)

    async def _run_of(self, info: TaskInfo) -> RunState | None:
        """The task's run while it is still the channel's latest one."""
        run = await self.hub.runs.get(info.channel) if self.hub.runs is not None else None
        return run if run is not None and run.run_id == info.run_id else None

    async def _ended(self, info: TaskInfo) -> bool:
        run = await self._run_of(info)
        return (
            info.finished_at is not None
            or info.state == "cancelled"
            or (run is not None and run.finished)
        )

    def _watched_here(self, channel: str) -> bool:
        """A stream of this process receives ``channel`` (exact or by pattern)."""
        counts = self.hub.subscriber_counts()
        return any(n for name, n in counts.items() if name == channel or matches(name, channel))

    async def _watch(self) -> None:
        """Stop local tasks cancelled by another process; cancel unwatched tasks."""
        interval = 0.25
        if self.cancel_unwatched > 0:
            interval = max(0.05, min(interval, self.cancel_unwatched / 4))
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self._stop_cancelled_here()
            if self.cancel_unwatched > 0:
                with contextlib.suppress(Exception):
                    await self._cancel_unwatched()

    async def _stop_cancelled_here(self) -> None:
        here = self.runner.running_here()
        for info in await self.store.many(here):
            if info is not None and info.state == "cancelled":
                await self.runner.cancel(info)

    async def _cancel_unwatched(self) -> None:
        """Cancel running tasks nobody in the cluster watched for ``cancel_unwatched`` s."""
        now = time.monotonic()
        ids = list(self.watched)
        records: list[Any] | None = None  # the cluster's streams, read once per round
        for task_id, info in zip(ids, await self.store.many(ids), strict=True):
            if info is None or await self._ended(info):
                self.watched.pop(task_id, None)
                continue
            watched = self._watched_here(info.channel)
            if not watched and self.cluster is not None:
                if records is None:
                    records = await self.cluster.list_clients()
                watched = any(
                    name == info.channel or matches(name, info.channel)
                    for record in records
                    for name in record["channels"]
                )
            if watched:
                self.watched[task_id] = None
                continue
            since = self.watched[task_id]
            if since is None:
                self.watched[task_id] = now
            elif now - since >= self.cancel_unwatched:
                log.info("cancelling task %s: nobody watches %s", task_id, info.channel)
                self.watched.pop(task_id, None)
                await self.cancel(task_id)

    async def close(self) -> None:
        await stop_task(self._watcher)
        await self.runner.close()
        await self.store.close()

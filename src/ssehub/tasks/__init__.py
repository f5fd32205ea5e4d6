"""Stage execution: the ``@stage`` registry, the in-process runner and Celery."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..settings import Settings
from .info import TaskInfo
from .registry import STAGES, StageSpec, get_stage, load_modules, stage
from .runner import CeleryRunner, InProcessRunner, Runner, TaskManager
from .store import create_task_store

if TYPE_CHECKING:
    from ..cluster import ClusterState
    from ..hub import Hub

__all__ = [
    "STAGES",
    "CeleryRunner",
    "InProcessRunner",
    "StageSpec",
    "TaskInfo",
    "TaskManager",
    "create_task_manager",
    "get_stage",
    "load_modules",
    "stage",
]


def create_task_manager(
    hub: Hub, settings: Settings, cluster: ClusterState | None = None
) -> TaskManager:
    """Celery when ``celery_broker_url`` is set, else the in-process runner; task records in
    Redis under a Redis broker; watchers counted over ``cluster``."""
    load_modules(settings.stage_modules)
    prefix = settings.stage_channel_prefix
    store = create_task_store(settings)
    runner: Runner
    if settings.celery_broker_url:
        from .celery_app import create_celery

        runner = CeleryRunner(create_celery(settings), prefix)
    else:
        runner = InProcessRunner(hub, prefix, store)
    return TaskManager(
        hub,
        runner,
        prefix,
        store=store,
        cluster=cluster,
        cancel_unwatched=settings.cancel_unwatched_seconds,
    )

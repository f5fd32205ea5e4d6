"""The Celery side: one generic ``ssehub.execute_stage`` task that runs any registered stage.

Workers publish to the hub over HTTP (``SSEHUB_HUB_URL`` with ``SSEHUB_PUBLISHER_TOKEN``), so the
hub applies the run lifecycle to their messages. Every message carries the task's run id, so
once the run ended (a cancel included) the hub refuses them all: a revoked task that a worker
starts anyway stops at its first message and publishes nothing. A failing stage publishes
``error`` with its ``retry_count``; when the stage allows retries, Celery retries it and the
next attempt reopens the run (its ``stage_update: processing``) and counts one more.
"""

from __future__ import annotations

import asyncio
from typing import Any

from celery import Celery, Task

from ..runs import RunClosed
from ..sdk.publisher import Publisher
from ..settings import Settings
from .execute import run_async, run_sync
from .registry import QUEUES, get_stage, load_modules
from .runner import retry_delay


def create_celery(settings: Settings) -> Celery:
    """A Celery app on ``settings.celery_broker_url`` (Redis: broker and result backend)."""
    url = settings.celery_broker_url
    app = Celery("ssehub", broker=url, backend=url)
    app.conf.update(
        task_default_queue="default",
        worker_prefetch_multiplier=1,
        task_track_started=True,
        broker_connection_retry_on_startup=True,
        result_expires=86400,
    )
    if settings.celery_key_prefix:
        options = {"global_keyprefix": settings.celery_key_prefix}
        app.conf.broker_transport_options = options
        app.conf.result_backend_transport_options = options
    register(app, settings)
    return app


def register(app: Celery, settings: Settings) -> None:
    """Define ``ssehub.execute_stage`` on ``app``."""

    @app.task(name="ssehub.execute_stage", bind=True)
    def execute_stage(
        self: Task[..., Any],
        project_id: str,
        stage_name: str,
        input_data: dict[str, Any],
        prefix: str,
        run_id: str | None = None,
    ) -> Any:
        load_modules(settings.stage_modules)
        spec = get_stage(stage_name)
        retries = int(self.request.retries or 0)
        pub = Publisher(
            project_id,
            stage_name,
            url=settings.hub_url,
            token=settings.publisher_token,
            prefix=prefix,
            retry_count=retries,
            run_id=run_id,
        )
        try:
            if spec.is_async:
                return asyncio.run(run_async(spec, pub, input_data))
            return run_sync(spec, pub, input_data)
        except RunClosed:
            return {"cancelled": True}
        except Exception as exc:
            if retries < spec.max_retries:
                raise self.retry(exc=exc, countdown=retry_delay(retries)) from exc
            raise


def worker_argv(
    queues: str = ",".join(QUEUES), pool: str = "solo", concurrency: int = 1
) -> list[str]:
    """Arguments of ``celery worker`` for ``ssehub worker``."""
    return ["worker", "-Q", queues, "--pool", pool, "-c", str(concurrency), "-l", "info"]


def main(settings: Settings | None = None, argv: list[str] | None = None) -> None:
    """Run a worker in this process."""
    settings = settings or Settings()
    if not settings.celery_broker_url:
        raise SystemExit("set SSEHUB_CELERY_BROKER_URL to a Redis URL to run a worker")
    load_modules(settings.stage_modules)
    create_celery(settings).worker_main(argv or worker_argv())

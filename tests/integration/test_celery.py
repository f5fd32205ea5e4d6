"""Stages on a real Celery worker process (`ssehub worker`) against real Redis.

The worker publishes to the in-test hub over HTTP; a client on the stage channel sees
stage_update → tokens → done, and cancel reaches the running task through the 409 back-channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flaky_stages import assert_retried
from harness import RunningHub, execute_stage, open_stream, running_hub
from redis_support import RedisKeys
from ssehub.settings import Settings

pytestmark = pytest.mark.redis


@pytest.fixture
def celery_env(redis_keys: RedisKeys) -> dict[str, str]:
    return {
        "SSEHUB_CELERY_BROKER_URL": redis_keys.url,
        "SSEHUB_CELERY_KEY_PREFIX": redis_keys.prefix,
    }


@pytest.fixture
async def celery_hub(celery_env: dict[str, str]) -> AsyncIterator[RunningHub]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        celery_broker_url=celery_env["SSEHUB_CELERY_BROKER_URL"],
        celery_key_prefix=celery_env["SSEHUB_CELERY_KEY_PREFIX"],
        stage_modules=["flaky_stages"],
    )
    async with running_hub(settings) as hub:
        yield hub


@pytest.fixture
def worker(
    celery_hub: RunningHub, celery_env: dict[str, str], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """One `ssehub worker` (solo pool) publishing to the test hub."""
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        **celery_env,
        "SSEHUB_HUB_URL": celery_hub.url,
        "SSEHUB_STAGE_MODULES": '["flaky_stages"]',
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), *sys.path]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ssehub.cli", "worker", "--pool", "solo"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if os.environ.get("SSEHUB_TEST_VERBOSE"):
            print(log.read_text(errors="replace"))


async def wait_status(
    client: httpx.AsyncClient, hub: RunningHub, task_id: str, want: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        status = (await client.get(f"{hub.url}/api/v1/tasks/{task_id}")).json()
        if status["status"] == want or time.monotonic() > deadline:
            return status  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)


async def test_celery_worker_streams_a_stage(
    client: httpx.AsyncClient, celery_hub: RunningHub, worker: Any
) -> None:
    url = f"{celery_hub.url}/api/v1/sse/projects/c1/stages/rewrite/"
    async with open_stream(client, url) as reader:
        started = await execute_stage(
            client, celery_hub, "c1", "rewrite", {"text": "x y z", "pace": 0}
        )
        await reader.wait_count(1, event="done", timeout=60)
    kinds = [e.event for e in reader.events if e.event != "connected"]
    assert kinds[0] == "stage_update" and kinds[-1] == "done"
    assert set(kinds) == {"stage_update", "token", "progress", "done"}
    updates = [json.loads(e.data)["status"] for e in reader.of_type("stage_update")]
    assert updates[:2] == ["pending", "processing"]
    tokens = "".join(json.loads(e.data)["content"] for e in reader.of_type("token"))
    assert tokens == "x y z" == json.loads(reader.of_type("done")[0].data)["full_text"]
    status = await wait_status(client, celery_hub, started["task_id"], "done")
    assert status["status"] == "done" and status["runner"] == "celery"


async def test_celery_failing_stage_publishes_error(
    client: httpx.AsyncClient, celery_hub: RunningHub, worker: Any
) -> None:
    url = f"{celery_hub.url}/api/v1/sse/projects/c2/stages/rewrite/"
    async with open_stream(client, url) as reader:
        await execute_stage(
            client, celery_hub, "c2", "rewrite", {"fail": "quota exceeded", "pace": 0}
        )
        await reader.wait_count(1, event="error", timeout=60)
    error = json.loads(reader.of_type("error")[0].data)
    assert error["error"] == "RuntimeError: quota exceeded"
    assert error["retry_count"] == 0


async def test_cancel_reaches_a_running_celery_task(
    client: httpx.AsyncClient, celery_hub: RunningHub, worker: Any
) -> None:
    url = f"{celery_hub.url}/api/v1/sse/projects/c3/stages/rewrite/"
    async with open_stream(client, url) as reader:
        started = await execute_stage(
            client, celery_hub, "c3", "rewrite", {"tokens": 100_000, "pace": 0.01}
        )
        await reader.wait_count(2, event="token", timeout=60)
        answer = await client.post(f"{celery_hub.url}/api/v1/tasks/{started['task_id']}/cancel")
        assert answer.status_code == 200, answer.text
        await reader.wait_count(1, event="error")
    assert json.loads(reader.of_type("error")[0].data)["error"] == "cancelled"
    # The worker's next publish got 409 and the task ended (SUCCESS with {"cancelled": true}).
    celery = celery_hub.app.state.tasks.runner.celery
    result = celery.AsyncResult(started["task_id"])
    deadline = time.monotonic() + 30
    while result.state != "SUCCESS" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert result.state == "SUCCESS"
    assert result.result == {"cancelled": True}
    with contextlib.suppress(Exception):
        result.forget()


async def test_celery_retries_publish_error_with_retry_count(
    client: httpx.AsyncClient, celery_hub: RunningHub, worker: Any
) -> None:
    url = f"{celery_hub.url}/api/v1/sse/projects/c4/stages/flaky/"
    async with open_stream(client, url) as reader:
        await execute_stage(client, celery_hub, "c4", "flaky", {"fail_times": 2})
        await reader.wait_count(1, event="done", timeout=60)
    assert_retried(reader)


async def test_a_task_revoked_while_queued_never_publishes_after_its_cancel(
    client: httpx.AsyncClient, celery_hub: RunningHub, request: pytest.FixtureRequest
) -> None:
    url = f"{celery_hub.url}/api/v1/sse/projects/c9/stages/rewrite/"
    async with open_stream(client, url) as reader:
        # No worker yet: the task waits in the queue when it is cancelled (and revoked).
        started = await execute_stage(client, celery_hub, "c9", "rewrite", {"pace": 0})
        answer = await client.post(f"{celery_hub.url}/api/v1/tasks/{started['task_id']}/cancel")
        assert answer.status_code == 200, answer.text
        await reader.wait_count(1, event="error")
        request.getfixturevalue("worker")  # a worker that never heard of the revoke starts it
        celery = celery_hub.app.state.tasks.runner.celery
        result = celery.AsyncResult(started["task_id"])
        deadline = time.monotonic() + 60
        while result.state not in ("SUCCESS", "REVOKED") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert result.state in ("SUCCESS", "REVOKED")
        with contextlib.suppress(Exception):
            result.forget()
    kinds = [e.event for e in reader.events if e.event != "connected"]
    assert kinds == ["stage_update", "error"], kinds  # pending, cancelled: nothing after it

"""Tasks on every process: `ssehub serve --workers 2` on a real Redis answers for any task."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from harness import HubProcess, open_stream, start_hub_process
from redis_support import delete_prefix, shared_redis_url, unique_prefix

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@contextlib.asynccontextmanager
async def two_workers(tmp_path: Path, **env: str) -> AsyncIterator[HubProcess]:
    url, prefix = shared_redis_url(), unique_prefix()
    base = {"SSEHUB_BROKER_URL": url, "SSEHUB_REDIS_PREFIX": prefix, "SSEHUB_DEMO": "true"}
    hub = await asyncio.to_thread(
        start_hub_process, tmp_path, {**base, **env}, args=["--workers", "2"]
    )
    try:
        yield hub
    finally:
        await asyncio.to_thread(hub.terminate)
        delete_prefix(url, prefix)


@contextlib.asynccontextmanager
async def on_node(base: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client on one fresh connection, and the hub process (node) that connection reached."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        node = (await client.get(f"{base}/healthz")).json()["node"]
        yield client, node


async def test_task_status_and_cancel_answer_from_every_process(tmp_path: Path) -> None:
    async with two_workers(tmp_path) as hub, on_node(hub.url) as (starter, home):
        body = {"stage_name": "rewrite", "input_data": {"tokens": 100_000, "pace": 0.02}}
        started = (
            await starter.post(f"{hub.url}/api/v1/projects/k1/execute_stage/", json=body)
        ).json()
        task = started["task_id"]
        answered, nodes = 0, set()
        for _ in range(10):
            async with on_node(hub.url) as (one, node):
                nodes.add(node)
                answered += (await one.get(f"{hub.url}/api/v1/tasks/{task}")).status_code == 200
        print(f"task status calls: {answered} of 10 answered (processes: {len(nodes)})")
        assert answered == 10
        other = None
        url = f"{hub.url}/api/v1/sse/projects/k1/stages/rewrite/"
        async with httpx.AsyncClient(timeout=10) as viewer, open_stream(viewer, url) as reader:
            for _ in range(40):  # cancel through the process that is not running the task
                async with on_node(hub.url) as (one, node):
                    nodes.add(node)
                    if node != home:
                        other = node
                        cancel = await one.post(f"{hub.url}/api/v1/tasks/{task}/cancel")
                        break
            assert other is not None, "every connection reached the same process"
            await reader.wait_count(1, event="error", timeout=10)
        assert cancel.status_code == 200, cancel.text
        assert json.loads(reader.of_type("error")[0].data)["error"] == "cancelled"
        # The process running the stage sees the cancel and stops it.
        async with asyncio.timeout(15):
            while (await starter.get(f"{hub.url}/api/v1/tasks/{task}")).json()[
                "status"
            ] != "cancelled":
                await asyncio.sleep(0.1)


async def test_a_watcher_on_another_process_keeps_the_task_alive(tmp_path: Path) -> None:
    env = {"SSEHUB_CANCEL_UNWATCHED_SECONDS": "0.5"}
    async with two_workers(tmp_path, **env) as hub, on_node(hub.url) as (watcher, watching):
        url = f"{hub.url}/api/v1/sse/projects/k2/stages/rewrite/"
        async with open_stream(watcher, url) as reader:
            for _ in range(40):
                async with on_node(hub.url) as (starter, node):
                    if node == watching:
                        continue
                    body = {"stage_name": "rewrite", "input_data": {"tokens": 30, "pace": 0.1}}
                    answer = await starter.post(
                        f"{hub.url}/api/v1/projects/k2/execute_stage/", json=body
                    )
                    assert answer.status_code == 200, answer.text
                    break
            else:
                pytest.fail("every connection reached the same process")
            # 3 s of tokens, six times the unwatched limit: it must run to the end.
            await reader.wait_for(lambda r: r.of_type("done") or r.of_type("error"), 30)
    assert reader.of_type("error") == [], reader.of_type("error")[0].data
    assert json.loads(reader.of_type("done")[0].data)["metadata"] == {"tokens_used": 30}

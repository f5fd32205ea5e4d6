"""execute_stage end to end with the in-process runner, over a real server on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from flaky_stages import assert_retried
from harness import RunningHub, execute_stage, open_stream, running_hub
from ssehub.settings import Settings
from ssehub.tasks import stage


@stage("test_items", queue="image")
def items_stage(pub: Any, input_data: dict[str, Any]) -> dict[str, Any]:
    """A sync stage (run in a worker thread) reporting per-item progress."""
    names = input_data["items"]
    for index, name in enumerate(names, 1):
        pub.publish_progress(index, len(names), name)
    return {"items": len(names)}


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[RunningHub]:
    async with running_hub(settings) as running:
        yield running


def payloads(reader: Any) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in reader.events if e.event != "connected"]


async def test_rewrite_streams_stage_update_tokens_done(
    client: httpx.AsyncClient, hub: RunningHub
) -> None:
    url = f"{hub.url}/api/v1/sse/projects/p1/stages/rewrite/"
    async with open_stream(client, url) as reader:
        started = await execute_stage(
            client, hub, "p1", "rewrite", {"text": "a b c d e", "pace": 0}
        )
        assert set(started) == {"task_id", "channel", "message", "run_id", "resume_after"}
        assert started["channel"] == "ai_story:project:p1:stage:rewrite"
        await reader.wait_count(1, event="done")
    # Every message of the run carries the run id execute_stage answered.
    assert {json.loads(e.data)["run_id"] for e in reader.events[1:]} == {started["run_id"]}
    kinds = [e.event for e in reader.events if e.event != "connected"]
    assert kinds[0] == "stage_update" and kinds[-1] == "done"
    assert set(kinds) == {"stage_update", "token", "progress", "done"}
    msgs = payloads(reader)
    assert all(m["type"] == e for m, e in zip(msgs, kinds, strict=True))
    text = "".join(m["content"] for m in msgs if m["type"] == "token")
    assert text == "a b c d e" == msgs[-1]["full_text"]
    assert msgs[-1]["metadata"] == {"tokens_used": 5}
    # The stage card's bar moves while the words stream, not only at the end.
    progress = [(m["current"], m["total"]) for m in msgs if m["type"] == "progress"]
    assert progress == [(n, 5) for n in range(1, 6)]
    status = (await client.get(f"{hub.url}/api/v1/tasks/{started['task_id']}")).json()
    assert status["status"] == "done"


async def test_long_rewrite_sends_bounded_progress(
    client: httpx.AsyncClient, hub: RunningHub
) -> None:
    url = f"{hub.url}/api/v1/sse/projects/p9/stages/rewrite/"
    async with open_stream(client, url) as reader:
        await execute_stage(client, hub, "p9", "rewrite", {"tokens": 200, "pace": 0})
        await reader.wait_count(1, event="done")
    progress = [m for m in payloads(reader) if m["type"] == "progress"]
    assert len(progress) == 20
    assert [m["current"] for m in progress] == list(range(10, 201, 10))
    assert progress[-1]["progress"] == 100


async def test_sync_stage_reports_progress_on_project_stream(
    client: httpx.AsyncClient, hub: RunningHub
) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/projects/p2/") as reader:
        await execute_stage(
            client, hub, "p2", "test_items", {"items": ["shot 1", "shot 2", "shot 3"]}
        )
        await reader.wait_count(1, event="done")
    progress = [json.loads(e.data) for e in reader.of_type("progress")]
    assert [(p["current"], p["total"], p["progress"], p["item_name"]) for p in progress] == [
        (1, 3, 33, "shot 1"),
        (2, 3, 66, "shot 2"),
        (3, 3, 100, "shot 3"),
    ]
    assert json.loads(reader.of_type("done")[0].data)["metadata"] == {"items": 3}


async def test_failing_stage_publishes_error(client: httpx.AsyncClient, hub: RunningHub) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/projects/p3/stages/rewrite/") as reader:
        started = await execute_stage(
            client, hub, "p3", "rewrite", {"fail": "API调用失败: 超时", "fail_after": 2, "pace": 0}
        )
        await reader.wait_count(1, event="error")
    error = json.loads(reader.of_type("error")[0].data)
    assert error["error"] == "RuntimeError: API调用失败: 超时"
    assert error["retry_count"] == 0
    tokens = "".join(json.loads(e.data)["content"] for e in reader.of_type("token"))
    assert tokens == "Once upon"
    status = (await client.get(f"{hub.url}/api/v1/tasks/{started['task_id']}")).json()
    assert status["status"] == "error"


async def test_cancel_stops_a_running_task(client: httpx.AsyncClient, hub: RunningHub) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/projects/p4/stages/rewrite/") as reader:
        started = await execute_stage(
            client, hub, "p4", "rewrite", {"tokens": 10_000, "pace": 0.01}
        )
        await reader.wait_count(2, event="token")
        answer = await client.post(f"{hub.url}/api/v1/tasks/{started['task_id']}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        await reader.wait_count(1, event="error")
    assert json.loads(reader.of_type("error")[0].data)["error"] == "cancelled"
    assert not hub.app.state.tasks.runner._tasks  # the asyncio task is gone
    assert len(reader.of_type("token")) < 100


async def test_unknown_stage_and_task_are_404(client: httpx.AsyncClient, hub: RunningHub) -> None:
    response = await client.post(
        f"{hub.url}/api/v1/projects/p5/execute_stage/", json={"stage_name": "nope"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_stage"
    response = await client.get(f"{hub.url}/api/v1/tasks/nope")
    assert response.status_code == 404
    response = await client.post(f"{hub.url}/api/v1/projects/p5/execute_stage/", json={})
    assert response.status_code == 400


async def test_late_joiner_mid_stage_ends_with_exactly_the_answer(
    client: httpx.AsyncClient, hub: RunningHub
) -> None:
    url = f"{hub.url}/api/v1/sse/projects/p6/stages/rewrite/"
    async with open_stream(client, url) as early:
        await execute_stage(client, hub, "p6", "rewrite", {"tokens": 300, "pace": 0.005})
        await early.wait_count(3, event="token")
        async with open_stream(client, url) as late:
            await late.wait_count(1, event="done")
    snap = json.loads(late.of_type("snapshot")[0].data)
    assert snap["full_text"]
    tail = "".join(json.loads(e.data)["content"] for e in late.of_type("token"))
    answer = json.loads(late.of_type("done")[0].data)["full_text"]
    assert snap["full_text"] + tail == answer
    assert len(answer.split()) == 300


async def test_rewrite_with_prompt_streams_the_llm_provider(
    client: httpx.AsyncClient, hub: RunningHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSEHUB_LLM_PROVIDER", "demo")
    monkeypatch.setenv("SSEHUB_DEMO_PACE_SECONDS", "0")
    async with open_stream(client, f"{hub.url}/api/v1/sse/projects/p7/stages/rewrite/") as reader:
        await execute_stage(client, hub, "p7", "rewrite", {"prompt": "a knight and a dragon"})
        await reader.wait_count(1, event="done")
    done = json.loads(reader.of_type("done")[0].data)
    tokens = "".join(json.loads(e.data)["content"] for e in reader.of_type("token"))
    assert tokens == done["full_text"]
    assert "a knight and a dragon" in tokens
    assert done["metadata"]["model"]


async def test_example_stages_load_from_stage_modules(client: httpx.AsyncClient) -> None:
    config = Settings(_env_file=None, stage_modules=["examples.stages"])  # type: ignore[call-arg]
    async with (
        running_hub(config) as hub,
        open_stream(client, f"{hub.url}/api/v1/sse/projects/p8/") as reader,
    ):
        script = {"script": "A knight. A dragon. A feast.", "pace": 0}
        await execute_stage(client, hub, "p8", "storyboard", script)
        await reader.wait_count(1, event="done")
        await execute_stage(client, hub, "p8", "image_generation", {"shots": 3, "pace": 0})
        await reader.wait_count(2, event="done")
    board, images = (json.loads(e.data) for e in reader.of_type("done"))
    assert board["stage"] == "storyboard" and board["metadata"] == {"shots": 3}
    assert board["full_text"].count("分镜") == 3
    assert images["stage"] == "image_generation" and images["metadata"] == {"images": 3}
    items = [json.loads(e.data)["item_name"] for e in reader.of_type("progress")]
    assert items == ["分镜1", "分镜2", "分镜3"] * 2


async def test_task_nobody_watches_is_cancelled(client: httpx.AsyncClient) -> None:
    config = Settings(_env_file=None, cancel_unwatched_seconds=0.3)  # type: ignore[call-arg]
    async with running_hub(config) as hub:
        url = f"{hub.url}/api/v1/sse/projects/p9/"
        async with open_stream(client, url) as watched:
            kept = await execute_stage(client, hub, "p9", "rewrite", {"tokens": 60, "pace": 0.01})
            await watched.wait_count(1, event="done")  # watched for 0.6 s: runs to the end
            dropped = await execute_stage(
                client, hub, "p9", "rewrite", {"tokens": 10_000, "pace": 0.01}
            )
            await watched.wait_count(1, event="token")
        deadline = asyncio.get_running_loop().time() + 10
        status: dict[str, Any] = {}
        while asyncio.get_running_loop().time() < deadline:
            status = (await client.get(f"{hub.url}/api/v1/tasks/{dropped['task_id']}")).json()
            if status["status"] == "cancelled":
                break
            await asyncio.sleep(0.05)
        assert status["status"] == "cancelled"
        kept_status = (await client.get(f"{hub.url}/api/v1/tasks/{kept['task_id']}")).json()
        assert kept_status["status"] == "done"
        assert not hub.app.state.tasks.runner._tasks


async def test_in_process_retries_publish_error_with_retry_count(
    client: httpx.AsyncClient,
) -> None:
    config = Settings(_env_file=None, stage_modules=["flaky_stages"])  # type: ignore[call-arg]
    async with (
        running_hub(config) as hub,
        open_stream(client, f"{hub.url}/api/v1/sse/projects/p10/stages/flaky/") as reader,
    ):
        await execute_stage(client, hub, "p10", "flaky", {"fail_times": 2})
        await reader.wait_count(1, event="done")
    assert_retried(reader)


SLOW_STOPPED = threading.Event()


@stage("test_slow_sync")
def slow_sync_stage(pub: Any, input_data: dict[str, Any]) -> None:
    """A blocking stage that only notices cancellation when its next publish gets 409."""
    try:
        for index in range(1, 10_000):
            pub.publish_progress(index, 10_000, f"item {index}")
            time.sleep(0.01)
    finally:
        SLOW_STOPPED.set()


async def test_cancel_stops_a_sync_stage_in_its_thread(
    client: httpx.AsyncClient, hub: RunningHub
) -> None:
    SLOW_STOPPED.clear()
    async with open_stream(client, f"{hub.url}/api/v1/sse/projects/p11/") as reader:
        started = await execute_stage(client, hub, "p11", "test_slow_sync", {})
        await reader.wait_count(3, event="progress")
        answer = await client.post(f"{hub.url}/api/v1/tasks/{started['task_id']}/cancel")
        assert answer.json()["status"] == "cancelled"
        assert await asyncio.to_thread(SLOW_STOPPED.wait, 10)
        count = len(reader.of_type("progress"))
    assert count < 100
    assert json.loads(reader.of_type("error")[0].data)["error"] == "cancelled"

"""Seed 000's agent pattern and the generic ``hub.publish`` over a real hub."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from harness import open_stream, running_hub
from ssehub.agent import HubClient, StreamingAgent, streaming_task
from ssehub.settings import Settings


async def test_streaming_task_publishes_the_task_taxonomy(client: httpx.AsyncClient) -> None:
    async with running_hub(Settings(_env_file=None)) as hub:  # type: ignore[call-arg]
        remote = HubClient(url=hub.url)

        @streaming_task(remote, lambda user, **_: f"user:{user}:tasks")
        async def summarize(user: str, fail: bool = False) -> AsyncIterator[dict[str, Any]]:
            yield {"percent": 50}
            if fail:
                raise ValueError("no text")
            yield {"percent": 100, "summary": "short"}

        url = f"{hub.url}/api/v1/sse/stream/user:u1:tasks"
        async with open_stream(client, url) as reader:
            assert (await summarize("u1"))["summary"] == "short"
            with pytest.raises(ValueError, match="no text"):
                await summarize("u1", fail=True)
            await reader.wait_count(1, event="task.failed")
        await remote.aclose()
    kinds = [e.event for e in reader.events if e.event != "connected"]
    assert kinds == [
        "task.created", "task.progress", "task.progress", "task.completed",
        "task.created", "task.progress", "task.failed",
    ]  # fmt: skip
    completed = json.loads(reader.of_type("task.completed")[0].data)
    assert completed["result"] == {"percent": 100, "summary": "short"}
    assert completed["task"] == "summarize" and completed["status"] == "completed"
    failed = json.loads(reader.of_type("task.failed")[0].data)
    assert failed["error"] == "ValueError: no text"


async def test_agent_base_class_and_generic_publish(client: httpx.AsyncClient) -> None:
    class Writer(StreamingAgent):
        name = "writer"

        async def process_streaming(self, request: Any) -> AsyncIterator[Any]:
            for word in request.split():
                yield {"partial": word}

        async def finalize(self, request: Any) -> Any:
            return {"text": request}

    async with running_hub(Settings(_env_file=None)) as hub:  # type: ignore[call-arg]
        local = HubClient(hub=hub.hub)
        async with open_stream(client, f"{hub.url}/api/v1/sse/stream/agents") as reader:
            await local.apublish("agents", "note", {"hello": 1})
            assert await Writer(local).run("a b", "agents") == {"text": "a b"}
            await reader.wait_count(1, event="task.completed")
    kinds = [e.event for e in reader.events if e.event != "connected"]
    assert kinds == ["note", "task.created", "task.progress", "task.progress", "task.completed"]

"""AI run metrics for stage runs, agents and chat answers: first token, real tokens/s, outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from test_metrics import scrape, value

from chat_support import chat_hub, create_conversation, database, send
from harness import execute_stage, running_hub, wait_until
from ssehub.agent import HubClient, StreamingAgent
from ssehub.event import make_event
from ssehub.metrics import Metrics
from ssehub.settings import Settings


def figures(text: str, family: str) -> dict[str, float]:
    """The run figures of one channel family in an exposition."""
    return {
        "done": value(text, "ssehub_runs_total", family=family, outcome="done"),
        "cancelled": value(text, "ssehub_runs_total", family=family, outcome="cancelled"),
        "ttft_count": value(text, "ssehub_run_time_to_first_token_seconds_count", family=family),
        "ttft_sum": value(text, "ssehub_run_time_to_first_token_seconds_sum", family=family),
        "tps_count": value(text, "ssehub_run_tokens_per_second_count", family=family),
        "tps_sum": value(text, "ssehub_run_tokens_per_second_sum", family=family),
        "duration_count": value(text, "ssehub_run_duration_seconds_count", family=family),
        "duration_sum": value(text, "ssehub_run_duration_seconds_sum", family=family),
    }


def test_tokens_per_second_counts_real_tokens_not_coalesced_messages() -> None:
    metrics = Metrics()
    channel = "ai_story:project:m0:stage:rewrite"
    start = make_event(channel, "stage_update", {"status": "processing"})
    start.published_at = 100.0
    metrics.published(start)
    for i in range(5):  # 5 messages of 10 tokens, 0.1 s apart: 100 tokens/s, 10 messages/s
        token = make_event(channel, "token", {"content": "x" * 10, "token_count": 10})
        token.published_at = 100.5 + i * 0.1
        metrics.published(token)
    done = make_event(channel, "done", {"full_text": "x" * 50})
    done.published_at = 101.0
    metrics.published(done)
    text = metrics.render()[0].decode()
    got = figures(text, "ai_story")
    assert got["tps_count"] == 1 and abs(got["tps_sum"] - 100.0) < 0.01
    assert got["ttft_count"] == 1 and abs(got["ttft_sum"] - 0.5) < 1e-6
    assert got["duration_count"] == 1 and abs(got["duration_sum"] - 1.0) < 1e-6
    assert got["done"] == 1


async def test_a_stage_run_feeds_the_run_metrics(client: httpx.AsyncClient) -> None:
    async with running_hub(Settings(_env_file=None)) as hub:  # type: ignore[call-arg]
        started = await execute_stage(client, hub, "m1", "rewrite", {"tokens": 40, "pace": 0.005})
        await wait_until(lambda: _ended(hub, started["channel"]), timeout=20)
        got = figures(await scrape(client, hub.url), "ai_story")
    assert got["done"] == 1 and got["ttft_count"] == 1 and got["duration_count"] == 1
    assert got["tps_count"] == 1 and got["tps_sum"] > 0


async def _ended(hub: Any, channel: str) -> bool:
    run = await hub.hub.runs.get(channel)
    return run is not None and run.finished


class Counter(StreamingAgent):
    name = "counter"

    async def process_streaming(self, request: Any) -> AsyncIterator[Any]:
        for i in range(3):
            await asyncio.sleep(0.01)
            yield {"step": i}

    async def finalize(self, request: Any) -> Any:
        return {"steps": 3}


async def test_an_agent_run_feeds_the_run_metrics(client: httpx.AsyncClient) -> None:
    async with running_hub(Settings(_env_file=None)) as hub:  # type: ignore[call-arg]
        agent = Counter(HubClient(hub=hub.hub))
        await agent.run({}, "agents:u1")
        got = figures(await scrape(client, hub.url), "agents")
    assert got["done"] == 1 and got["ttft_count"] == 1 and got["duration_count"] == 1
    assert got["ttft_sum"] > 0 and got["tps_count"] == 1


async def test_a_chat_answer_feeds_the_run_metrics(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with (
        database("sqlite", tmp_path) as db,
        chat_hub(db, demo_pace_seconds=0.002) as hub,
    ):
        cid = await create_conversation(client, hub.url)
        await send(client, hub.url, cid, "Tell me about the hub")
        await wait_until(lambda: not hub.app.state.chat.turns, timeout=20)
        text = await scrape(client, hub.url)
        got = figures(text, "conversation")
    print(f"chat answer metrics: {got}")
    assert got["done"] == 1 and got["ttft_count"] == 1 and got["duration_count"] == 1
    assert got["tps_count"] == 1 and got["tps_sum"] > 0

"""Chat over the Redis broker: the answer runs on one hub, a client of another hub reads it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from chat_support import chat_hub, create_conversation, database, messages, payloads, send
from fake_openai import FakeOpenAI, steady_words
from harness import open_stream

REDIS_URL = os.environ.get("SSEHUB_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_settings() -> Iterator[dict[str, Any]]:
    pytest.importorskip("ssehub.brokers.redis", reason="the Redis broker is not in this build")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"NO REDIS: {REDIS_URL} does not answer ({exc})")
    prefix = f"ssehub-test:{uuid.uuid4().hex[:12]}:"
    yield {"broker_url": REDIS_URL, "redis_prefix": prefix}
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


async def test_answer_crosses_hubs_and_resumes_on_another(
    redis_settings: dict[str, Any], fake: FakeOpenAI, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async with (
        database("sqlite", tmp_path) as db,
        chat_hub(db, fake, **redis_settings) as runner,
        chat_hub(db, fake, **redis_settings) as reader,
    ):
        cid = await create_conversation(client, runner.url, model="steady")
        url = f"{reader.url}/api/v1/conversations/{cid}/stream"
        async with open_stream(client, url) as first:
            await send(client, runner.url, cid, "Count")
            await first.wait_count(5, event="ai_response_chunk")
            seen = list(first.events)
        headers = {"Last-Event-ID": seen[-1].id}
        async with open_stream(client, url, headers=headers) as second:
            await second.wait_count(1, event="ai_response_complete")
            resumed = list(second.events)
        assert orjson.loads(resumed[0].data)["resumed"] is True
        chunks = payloads(seen, "ai_response_chunk") + payloads(resumed, "ai_response_chunk")
        assert [c["content"] for c in chunks] == steady_words()
        final = payloads(resumed, "ai_response_complete")[0]["final_content"]
        assert chunks[-1]["accumulated_content"] == final
        assert (await messages(client, reader.url, cid))[-1]["content"] == final

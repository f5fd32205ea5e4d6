"""The ecosystem's clients against ssehub: Python ``durable-streams`` (PyPI), TypeScript
``@durable-streams/client`` (npm), both pinned; each writes and reads through the hub."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest
from ds_support import MOUNT, node
from durable_streams import AsyncDurableStream, astream

from harness import RunningHub, running_hub
from ssehub.settings import Settings


@pytest.fixture
async def ds_hub(tmp_path: Path) -> RunningHub:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        open_access=True,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/ds.db",
        ds_long_poll_seconds=2,
    )
    async with running_hub(settings) as hub:
        yield hub


async def test_python_client_writes_and_reads_live_and_catch_up(ds_hub: RunningHub) -> None:
    url = f"{ds_hub.url}{MOUNT}/py/{uuid.uuid4().hex}"
    handle = await AsyncDurableStream.create(url, content_type="application/json")
    seen: list[object] = []

    async def follow() -> None:
        async with astream(url, offset="-1", live="sse") as response:
            async for item in response.iter_json():
                seen.append(item)
                if len(seen) == 4:
                    return

    reader = asyncio.create_task(follow())
    first = await handle.append({"n": 1, "text": "héllo"})
    for n in (2, 3, 4):
        await handle.append({"n": n})
    await asyncio.wait_for(reader, 20)
    async with astream(url, offset="-1", live=False) as response:
        items = [item async for item in response.iter_json()]
    expected = [{"n": 1, "text": "héllo"}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert seen == expected
    assert items == expected
    head = await handle.head()
    assert head.offset > first.next_offset  # offsets sort as the stream grows
    async with astream(url, offset=first.next_offset, live=False) as response:
        assert [item async for item in response.iter_json()] == expected[1:]
    await handle.aclose()


@pytest.mark.slow
async def test_typescript_client_round_trip_with_idempotent_producer(ds_hub: RunningHub) -> None:
    url = f"{ds_hub.url}{MOUNT}/ts/{uuid.uuid4().hex}"
    out = await asyncio.to_thread(node, "client_roundtrip.mjs", url, "")
    result = json.loads(out.strip().splitlines()[-1])
    expected = [{"n": 1, "text": "héllo"}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert result["items"] == expected
    assert result["live"] == expected
    async with httpx.AsyncClient() as client:
        head = await client.head(url)
    assert head.headers["stream-next-offset"] == result["offset"]

"""Run state in Redis: two hub processes' apps on one Redis broker share 409s and snapshots."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from harness import open_stream, running_hub
from redis_support import RedisKeys
from ssehub.publisher import Publisher
from ssehub.runs import RunClosed
from ssehub.settings import Settings

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_settings(redis_keys: RedisKeys) -> dict[str, Any]:
    return {"broker_url": redis_keys.url, "redis_prefix": redis_keys.prefix}


def make(redis_settings: dict[str, Any], **kw: Any) -> Settings:
    return Settings(_env_file=None, **redis_settings, **kw)  # type: ignore[call-arg]


async def test_snapshot_and_409_across_hubs(
    client: httpx.AsyncClient, redis_settings: dict[str, Any]
) -> None:
    words = [f"w{i} " for i in range(60)]
    async with (
        running_hub(make(redis_settings)) as one,
        running_hub(make(redis_settings)) as two,
        Publisher("x1", "rewrite", url=one.url, coalesce_tokens=1) as pub,
    ):
        await pub.publish_stage_update("processing", 20, "writing")
        for piece in words[:30]:
            await pub.publish_token(piece)
        url = f"{two.url}/api/v1/sse/projects/x1/stages/rewrite/"
        async with (
            open_stream(client, url) as reader,
            open_stream(client, f"{two.url}/api/v1/sse/projects/x1/") as project,
        ):
            for piece in words[30:]:
                await pub.publish_token(piece)
            await pub.publish_done()
            await reader.wait_count(1, event="done")
            await project.wait_count(1, event="done")
        assert [json.loads(e.data)["full_text"] for e in project.of_type("snapshot")] == [
            "".join(words[:30])
        ]
        with pytest.raises(RunClosed):  # the ended run's own publisher, through the other hub
            async with Publisher(
                "x1", "rewrite", url=two.url, coalesce_tokens=1, run_id=pub.run_id
            ) as late:
                await late.publish_token("late")
    snap = json.loads(reader.of_type("snapshot")[0].data)
    assert snap["full_text"] == "".join(words[:30])
    assert (snap["stage_status"], snap["progress"]) == ("processing", 20)
    tail = "".join(json.loads(e.data)["content"] for e in reader.of_type("token"))
    assert snap["full_text"] + tail == "".join(words)


async def test_silent_publisher_is_ended_once(
    client: httpx.AsyncClient, redis_settings: dict[str, Any]
) -> None:
    config = make(redis_settings, publisher_timeout_seconds=0.3)
    async with running_hub(config) as one, running_hub(config) as two:
        url = f"{one.url}/api/v1/sse/projects/x2/stages/rewrite/"
        async with open_stream(client, url) as reader:
            async with Publisher("x2", "rewrite", url=two.url, coalesce_tokens=1) as pub:
                await pub.publish_token("hm")
                await reader.wait_count(1, event="error", timeout=10)
            response = await client.get(
                f"{two.url}/api/v1/channels/ai_story:project:x2:stage:rewrite/events"
            )
            kinds = [e["event"] for e in response.json()["events"]]
    assert kinds == ["token", "error"]
    assert json.loads(reader.of_type("error")[0].data)["error"] == "publisher_timeout"


async def test_runs_have_identities_across_hubs(
    client: httpx.AsyncClient, redis_settings: dict[str, Any]
) -> None:
    async with (
        running_hub(make(redis_settings)) as one,
        running_hub(make(redis_settings)) as two,
    ):
        url = f"{two.url}/api/v1/sse/projects/x9/stages/rewrite/"
        async with open_stream(client, url) as reader:
            ids = []
            for hub in (one, two, one):  # a new Publisher is a new run, on any process
                async with Publisher("x9", "rewrite", url=hub.url, coalesce_tokens=1) as pub:
                    await pub.publish_token("t")
                    await pub.publish_done()
                ids.append(pub.run_id)
            await reader.wait_count(3, event="done")
            # The first run was replaced: its late messages are refused on every process.
            for hub in (one, two):
                with pytest.raises(RunClosed):
                    async with Publisher(
                        "x9", "rewrite", url=hub.url, coalesce_tokens=1, run_id=ids[0]
                    ) as late:
                        await late.publish_stage_update("processing")
    assert [json.loads(e.data)["run_id"] for e in reader.of_type("done")] == ids
    assert len(set(ids)) == 3


async def test_a_retried_token_is_in_the_snapshot_once(
    client: httpx.AsyncClient, redis_settings: dict[str, Any]
) -> None:
    async with running_hub(make(redis_settings)) as hub:
        url = f"{hub.url}/api/v1/publish/ai_story:project:x3:stage:rewrite"
        start = {"event": "stage_update", "data": {"status": "running"}}
        assert (await client.post(url, json=start)).status_code == 200
        token = {"event": "token", "data": {"content": "once "}}
        for _ in range(2):  # the SDK retries a publish whose answer was lost, same key
            answer = await client.post(url, json=token, headers={"Idempotency-Key": "t1"})
            assert answer.status_code == 200
        run = await hub.hub.runs.get("ai_story:project:x3:stage:rewrite")
        assert run is not None and run.full_text == "once "

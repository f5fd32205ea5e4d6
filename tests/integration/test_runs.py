"""Runs over a real hub: 409 after the end, publisher_timeout, snapshot + tail, Subscriber SDK."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from harness import open_stream, publish, running_hub
from ssehub.publisher import Publisher
from ssehub.runs import RunClosed
from ssehub.settings import Settings
from ssehub.subscriber import AsyncSubscriber, Subscriber

CHANNEL = "ai_story:project:{p}:stage:rewrite"


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


async def test_publish_after_done_is_409_until_a_new_run(client: httpx.AsyncClient) -> None:
    async with running_hub(settings()) as hub:
        async with Publisher("r1", "rewrite", url=hub.url, coalesce_tokens=1) as pub:
            await pub.publish_token("hello")
            await pub.publish_done()
        channel = CHANNEL.format(p="r1")
        for event in ("token", "progress", "done", "error"):
            response = await client.post(
                f"{hub.url}/api/v1/publish/{channel}", json={"event": event, "data": {}}
            )
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "run_finished"
        with pytest.raises(RunClosed):  # the ended run's id: refused
            async with Publisher(
                "r1", "rewrite", url=hub.url, coalesce_tokens=1, run_id=pub.run_id
            ) as late:
                await late.publish_token("too late")
        # A stage_update that starts work opens the next run on the channel.
        await publish(client, hub.url, channel, {"type": "stage_update", "status": "pending"},
                      "stage_update")  # fmt: skip
        await publish(client, hub.url, channel, {"type": "token", "content": "again"}, "token")


async def test_silent_publisher_gets_publisher_timeout(client: httpx.AsyncClient) -> None:
    async with running_hub(settings(publisher_timeout_seconds=0.3)) as hub:
        url = f"{hub.url}/api/v1/sse/projects/r2/stages/rewrite/"
        async with open_stream(client, url) as reader:
            started = time.monotonic()
            async with Publisher("r2", "rewrite", url=hub.url, coalesce_tokens=1) as pub:
                await pub.publish_token("thinking…")
                await reader.wait_count(1, event="error", timeout=10)
                with pytest.raises(RunClosed):
                    await pub.publish_token("woke up")
        error = json.loads(reader.of_type("error")[0].data)
        assert error["error"] == "publisher_timeout"
        assert error["stage"] == "rewrite" and error["project_id"] == "r2"
        assert 0.3 <= time.monotonic() - started < 5


async def test_late_joiner_gets_snapshot_then_the_tail(client: httpx.AsyncClient) -> None:
    words = [f"w{i} " for i in range(200)]
    async with (
        running_hub(settings()) as hub,
        Publisher("r3", "rewrite", hub=hub.hub, coalesce_tokens=1) as pub,
    ):
        await pub.publish_stage_update("processing", 10, "writing")
        for piece in words[:120]:
            await pub.publish_token(piece)
        url = f"{hub.url}/api/v1/sse/projects/r3/stages/rewrite/"
        async with open_stream(client, url) as reader:
            for piece in words[120:]:
                await pub.publish_token(piece)
            await pub.publish_done()
            await reader.wait_count(1, event="done")
    kinds = [e.event for e in reader.events]
    assert kinds[:2] == ["connected", "snapshot"]
    assert kinds.count("snapshot") == 1
    snap = json.loads(reader.events[1].data)
    assert snap["full_text"] == "".join(words[:120])
    assert (snap["status"], snap["stage_status"], snap["progress"]) == ("running", "processing", 10)
    tail = "".join(json.loads(e.data)["content"] for e in reader.of_type("token"))
    assert snap["full_text"] + tail == "".join(words)
    assert json.loads(reader.of_type("done")[0].data)["full_text"] == "".join(words)


async def test_resume_older_than_history_gets_snapshot(client: httpx.AsyncClient) -> None:
    async with running_hub(settings(history_size=5)) as hub:
        url = f"{hub.url}/api/v1/sse/projects/r4/stages/rewrite/"
        async with Publisher("r4", "rewrite", hub=hub.hub, coalesce_tokens=1) as pub:
            await pub.publish_token("first ")
            async with open_stream(client, url) as reader:
                await pub.publish_token("second ")
                await reader.wait_count(1, event="token")
            old_id = reader.of_type("token")[0].id
            for i in range(10):
                await pub.publish_token(f"t{i} ")
            headers = {"Last-Event-ID": old_id}
            async with open_stream(client, url, headers=headers) as again:
                await again.wait_count(1, event="snapshot")
                await pub.publish_done()
                await again.wait_count(1, event="done")
    kinds = [e.event for e in again.events]
    assert kinds[:3] == ["connected", "reset", "snapshot"]
    snap = json.loads(again.of_type("snapshot")[0].data)
    assert snap["full_text"] == "first second " + "".join(f"t{i} " for i in range(10))
    assert again.of_type("token") == []


async def test_async_subscriber_in_process_listen_ends_on_done() -> None:
    async with running_hub(settings()) as hub, AsyncSubscriber("r5", "rewrite", hub=hub.hub) as sub:
        assert sub.get_message() is None
        async with Publisher("r5", "rewrite", hub=hub.hub, coalesce_tokens=1) as pub:
            await pub.publish_token("a")
            await pub.publish_progress(1, 2, "item")
            await pub.publish_done(metadata={"n": 1})
        got = [m async for m in sub.listen(timeout=10)]
        assert [m["type"] for m in got] == ["token", "progress", "done"]
        assert got[-1]["metadata"] == {"n": 1}


async def test_async_subscriber_listen_ends_on_timeout() -> None:
    async with running_hub(settings()) as hub, AsyncSubscriber("r6", "rewrite", url=hub.url) as sub:
        started = time.monotonic()
        got = [m async for m in sub.listen(timeout=0.3)]
        assert got == []
        assert 0.3 <= time.monotonic() - started < 3


async def test_sync_subscriber_and_publisher_over_http() -> None:
    async with running_hub(settings()) as hub:

        def consume() -> list[dict[str, Any]]:
            with Subscriber("r7", "rewrite", url=hub.url) as sub:
                ready.set()
                return list(sub.listen(timeout=20))

        def produce() -> None:
            with Publisher("r7", "rewrite", url=hub.url, coalesce_tokens=2) as pub:
                pub.publish_stage_update("processing", 0, "go")
                for piece in ["a", "b", "c"]:
                    pub.publish_token(piece)
                pub.publish_done()

        import threading

        ready = threading.Event()
        consumer = asyncio.create_task(asyncio.to_thread(consume))
        assert await asyncio.to_thread(ready.wait, 10)
        await asyncio.to_thread(produce)
        got = await asyncio.wait_for(consumer, 20)
    assert [m["type"] for m in got] == ["stage_update", "token", "token", "done"]
    assert [m.get("content") for m in got if m["type"] == "token"] == ["ab", "c"]
    assert got[-1]["full_text"] == "abc"


async def test_sync_subscriber_get_message_is_non_blocking() -> None:
    async with running_hub(settings()) as hub:

        def poll() -> tuple[Any, Any]:
            with Subscriber("r8", url=hub.url) as sub:
                first = sub.get_message()
                with Publisher("r8", "storyboard", url=hub.url) as pub:
                    pub.publish_progress(1, 4, "分镜1")
                deadline = time.monotonic() + 10
                msg = None
                while msg is None and time.monotonic() < deadline:
                    msg = sub.get_message()
                    time.sleep(0.01)
                return first, msg

        first, msg = await asyncio.to_thread(poll)
    assert first is None
    assert msg["type"] == "progress" and msg["stage"] == "storyboard"


async def test_retention_classes_expire_tokens_before_outcomes(client: httpx.AsyncClient) -> None:
    config = settings(
        # Token retention long enough to read them once right after publishing, on a slow machine.
        token_history_seconds=1.0,
        outcome_history_seconds=3600,
        history_ttl_seconds=2,
    )
    async with running_hub(config) as hub:
        async with Publisher("r9", "rewrite", hub=hub.hub, coalesce_tokens=1) as pub:
            await pub.publish_stage_update("processing", 0, "go")
            for piece in ["a", "b", "c"]:
                await pub.publish_token(piece)
            await pub.publish_done()
        channel = CHANNEL.format(p="r9")
        history_url = f"{hub.url}/api/v1/channels/{channel}/events"
        first = (await client.get(history_url)).json()["events"]
        assert [e["event"] for e in first] == ["stage_update", "token", "token", "token", "done"]
        deadline = time.monotonic() + 10
        kinds: list[str] = []
        while time.monotonic() < deadline:
            kinds = [e["event"] for e in (await client.get(history_url)).json()["events"]]
            if "token" not in kinds:
                break
            await asyncio.sleep(0.05)
        # Tokens are gone; stage_update and done outlive even the default history_ttl.
        await asyncio.sleep(2.1)
        kinds = [e["event"] for e in (await client.get(history_url)).json()["events"]]
        assert kinds == ["stage_update", "done"]
        # A client returning later still learns how the run ended: reset + snapshot + done.
        url = f"{hub.url}/api/v1/sse/projects/r9/stages/rewrite/"
        async with open_stream(client, url, headers={"Last-Event-ID": first[1]["id"]}) as reader:
            await reader.wait_count(1, event="done")
        assert [e.event for e in reader.events] == ["connected", "reset", "snapshot", "done"]
        snap = json.loads(reader.of_type("snapshot")[0].data)
        assert (snap["status"], snap["full_text"]) == ("done", "abc")


async def test_remote_subscriber_resumes_with_last_event_id_after_a_drop() -> None:
    async with (
        running_hub(settings(retry_ms=50)) as hub,
        AsyncSubscriber("r10", "rewrite", url=hub.url) as sub,
        Publisher("r10", "rewrite", hub=hub.hub, coalesce_tokens=1) as pub,
    ):
        await pub.publish_token("a")
        first = await sub.next_message(10)
        assert first is not None and first["content"] == "a"
        for conn in list(hub.hub.connections.values()):
            conn.close("kicked")  # the stream drops; the SDK reconnects with Last-Event-ID
        await pub.publish_token("b")
        await pub.publish_token("c")
        await pub.publish_done()
        rest = [m async for m in sub.listen(timeout=10)]
        assert hub.hub.stats.resumes == 1
    assert [m.get("content") for m in rest] == ["b", "c", None]
    assert rest[-1]["type"] == "done" and rest[-1]["full_text"] == "abc"

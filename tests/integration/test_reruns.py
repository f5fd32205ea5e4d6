"""Runs have an identity: re-runs of a stage, late subscribers, execute_stage's run id, cancels."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx

from harness import execute_stage, open_stream, running_hub, wait_until
from ssehub.publisher import Publisher
from ssehub.settings import Settings
from ssehub.subscriber import Subscriber


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def seed_publisher_run(url: str, project_id: str, stage_name: str, text: str) -> str:
    """The publisher snippet of the stage pipeline's design, as written there."""
    with Publisher(project_id, stage_name, url=url) as publisher:
        publisher.publish_token(content=text, full_text=text)
        publisher.publish_done(full_text=text + " World")
        return publisher.run_id


async def test_the_seed_publisher_works_on_every_run(client: httpx.AsyncClient) -> None:
    async with running_hub(settings()) as hub:
        url = f"{hub.url}/api/v1/sse/projects/rr1/stages/rewrite/"
        async with open_stream(client, url) as reader:
            first = await asyncio.to_thread(seed_publisher_run, hub.url, "rr1", "rewrite", "Hi")
            second = await asyncio.to_thread(seed_publisher_run, hub.url, "rr1", "rewrite", "Yo")
            await reader.wait_count(2, event="done")
    assert first != second
    done = [json.loads(e.data) for e in reader.of_type("done")]
    assert [(d["full_text"], d["run_id"]) for d in done] == [
        ("Hi World", first),
        ("Yo World", second),
    ]


async def test_a_subscriber_after_an_ended_run_follows_the_next_run() -> None:
    async with running_hub(settings()) as hub:
        await asyncio.to_thread(seed_publisher_run, hub.url, "rr2", "rewrite", "old")
        got: list[dict[str, Any]] = []
        subscribed = threading.Event()

        def consume() -> None:
            # The subscriber loop of the design, unchanged: it stops at the first `done`.
            with Subscriber("rr2", "rewrite", url=hub.url) as subscriber:
                subscribed.set()
                for message in subscriber.listen(timeout=30):
                    got.append(message)
                    if message["type"] == "done":
                        break

        consumer = asyncio.create_task(asyncio.to_thread(consume))
        assert await asyncio.to_thread(subscribed.wait, 10)
        new = await asyncio.to_thread(seed_publisher_run, hub.url, "rr2", "rewrite", "new")
        await asyncio.wait_for(consumer, 30)
    assert [m["type"] for m in got] == ["token", "done"]
    assert {m["run_id"] for m in got} == {new}
    assert got[-1]["full_text"] == "new World"


async def test_previous_runs_are_delivered_on_request() -> None:
    async with running_hub(settings()) as hub:
        old = await asyncio.to_thread(seed_publisher_run, hub.url, "rr3", "rewrite", "old")

        def first_two() -> list[dict[str, Any]]:
            with Subscriber("rr3", "rewrite", url=hub.url, previous_runs=True) as subscriber:
                return [subscriber._run(subscriber._inner.next_message(10)) for _ in range(2)]  # type: ignore[union-attr]

        snapshot, done = await asyncio.to_thread(first_two)
    assert (snapshot["type"], snapshot["status"], snapshot["run_id"]) == ("snapshot", "done", old)
    assert (done["type"], done["run_id"]) == ("done", old)


async def test_execute_stage_answers_the_run_and_where_to_resume(
    client: httpx.AsyncClient,
) -> None:
    async with running_hub(settings()) as hub:
        started = await execute_stage(client, hub, "rr4", "rewrite", {"text": "a b c", "pace": 0})
        channel = started["channel"]
        await wait_until(lambda: _finished(hub, channel), timeout=10)
        url = f"{hub.url}/api/v1/sse/projects/rr4/stages/rewrite/"
        headers = {"Last-Event-ID": started["resume_after"]}
        async with open_stream(client, url, headers=headers) as reader:
            await reader.wait_count(1, event="done")
    kinds = [e.event for e in reader.events[1:]]
    assert kinds[0] == "stage_update" and kinds[-1] == "done" and "snapshot" not in kinds
    assert json.loads(reader.events[1].data)["status"] == "pending"
    assert {json.loads(e.data)["run_id"] for e in reader.events[1:]} == {started["run_id"]}


async def _finished(hub: Any, channel: str) -> bool:
    run = await hub.hub.runs.get(channel)
    return run is not None and run.finished


async def test_a_cancelled_run_refuses_its_late_stage_update(client: httpx.AsyncClient) -> None:
    async with running_hub(settings()) as hub:
        url = f"{hub.url}/api/v1/sse/projects/rr5/stages/rewrite/"
        async with open_stream(client, url) as reader:
            started = await execute_stage(
                client, hub, "rr5", "rewrite", {"tokens": 10_000, "pace": 0.05}
            )
            await reader.wait_count(1, event="token", timeout=10)
            answer = await client.post(f"{hub.url}/api/v1/tasks/{started['task_id']}/cancel")
            assert answer.status_code == 200, answer.text
            await reader.wait_count(1, event="error")
            # What a worker that starts the revoked task anyway sends first.
            late = {"type": "stage_update", "status": "processing", "run_id": started["run_id"]}
            response = await client.post(
                f"{hub.url}/api/v1/publish/{started['channel']}",
                json={"event": "stage_update", "data": late},
            )
            assert response.status_code == 409, response.text
            # A new run is welcome.
            again = await execute_stage(client, hub, "rr5", "rewrite", {"text": "x", "pace": 0})
            await reader.wait_count(1, event="done")
    after = reader.events[[e.event for e in reader.events].index("error") + 1 :]
    assert {json.loads(e.data)["run_id"] for e in after} == {again["run_id"]}


async def test_sync_publisher_flushes_a_lone_token_within_the_window(
    client: httpx.AsyncClient,
) -> None:
    async with running_hub(settings()) as hub:
        url = f"{hub.url}/api/v1/sse/projects/rr6/stages/rewrite/"
        async with open_stream(client, url) as reader:
            pub = Publisher("rr6", "rewrite", url=hub.url, coalesce_seconds=0.05)
            try:
                await asyncio.to_thread(pub.publish_token, "lone")
                # Nothing else is published: only the timer can send the token.
                await reader.wait_count(1, event="token", timeout=5)
            finally:
                await asyncio.to_thread(pub.close)
    assert json.loads(reader.of_type("token")[0].data)["content"] == "lone"

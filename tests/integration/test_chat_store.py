"""The chat store: what is written when, cancel across processes, shutdown, migrations."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, update

from chat_support import (
    chat_hub,
    create_conversation,
    database,
    messages,
    payloads,
    send,
    stream_url,
)
from fake_openai import ANSWER, FakeOpenAI
from harness import open_stream, start_hub_process
from redis_support import delete_prefix, shared_redis_url, unique_prefix
from ssehub.store import Message, Store


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with database("sqlite", tmp_path) as settings:
        yield settings


async def wait_until(check: Any, timeout: float = 10.0) -> Any:
    """Poll an async ``check`` until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.02)
    return result


async def test_the_answer_is_written_once_at_completion(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake, chat_checkpoint_seconds=3.0) as hub:
        writes: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("UPDATE MESSAGES SET CONTENT"):
                writes.append(statement)

        engine = hub.app.state.chat.store.engine
        cid = await create_conversation(client, hub.url, model="ok")
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        async with open_stream(client, stream_url(hub.url, cid)) as stream:
            await send(client, hub.url, cid, "Hi")
            await stream.wait_count(1, event="ai_response_complete")
        assert len(payloads(stream.events, "ai_response_chunk")) == len(ANSWER)
        assert len(writes) == 1


async def test_partial_answer_is_saved_while_streaming(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake, chat_checkpoint_seconds=0.1) as hub:
        cid = await create_conversation(client, hub.url, model="slow")
        async with open_stream(client, stream_url(hub.url, cid)) as stream:
            await send(client, hub.url, cid, "Go")

            async def partial() -> dict[str, Any] | None:
                answer = (await messages(client, hub.url, cid))[-1]
                return answer if answer["content"] else None

            answer = await wait_until(partial)
            assert answer["status"] == "streaming"
            assert answer["content"].startswith("s0 ")
            accumulated = payloads(stream.events, "ai_response_chunk")[-1]["accumulated_content"]
            assert accumulated.startswith(answer["content"])
            await client.post(f"{hub.url}/api/v1/conversations/{cid}/cancel")
            await stream.wait_count(1, event="ai_response_complete")


async def test_cancel_reaches_an_answer_running_in_another_process(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with (
        chat_hub(db, fake, chat_checkpoint_seconds=0.1) as runner,
        chat_hub(db, fake) as other,
    ):
        cid = await create_conversation(client, runner.url, model="slow")
        async with open_stream(client, stream_url(runner.url, cid)) as stream:
            await send(client, runner.url, cid, "Go")
            await stream.wait_count(2, event="ai_response_chunk")
            response = await client.post(f"{other.url}/api/v1/conversations/{cid}/cancel")
            assert response.json()["cancelled"] is True
            await stream.wait_count(1, event="ai_response_complete")
        done = payloads(stream.events, "ai_response_complete")[0]
        assert done["status"] == "cancelled"
        answer = (await messages(client, other.url, cid))[-1]
        assert (answer["status"], answer["content"]) == ("cancelled", done["final_content"])
        await fake.wait_for(lambda f: f.disconnects == 1)


async def test_shutdown_saves_the_partial_answer_as_interrupted(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake) as hub:
        cid = await create_conversation(client, hub.url, model="slow")
        async with open_stream(client, stream_url(hub.url, cid)) as stream:
            await send(client, hub.url, cid, "Go")
            await stream.wait_count(3, event="ai_response_chunk")
            hub.server.should_exit = True  # what SIGTERM does
            hub.hub.close_all()
            await stream.closed.wait()
    async with chat_hub(db, fake) as hub:
        answer = (await messages(client, hub.url, cid))[-1]
    assert answer["status"] == "error"
    assert answer["error"] == "interrupted: the server shut down"
    assert answer["content"].startswith("s0 s1 s2 ")


async def test_store_unavailable_is_a_json_503(tmp_path: Path, client: httpx.AsyncClient) -> None:
    db = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/none.db", "database_auto_migrate": False}
    async with chat_hub(db) as hub:
        response = await client.post(f"{hub.url}/api/v1/conversations", json={})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "store_unavailable"
        assert (await client.get(f"{hub.url}/healthz")).status_code == 200


async def test_ssehub_db_upgrade_creates_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    url = f"sqlite+aiosqlite:///{path}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "ssehub.cli", "db", "upgrade"),
        env={**os.environ, "SSEHUB_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert b"database at head" in out
    store = Store(url)
    await store.migrate()  # a second upgrade is a no-op
    await store.close()
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"conversations", "messages", "alembic_version"} <= tables
    assert {"ds_streams", "ds_chunks", "ds_producers"} <= tables  # Durable Streams
    assert version == [("0002",)]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_store_queries(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as settings:
        store = Store(settings["database_url"], schema=settings.get("database_schema"))
        await store.start()
        try:
            first = await store.create_conversation("carol", title="one", model="m")
            second = await store.create_conversation("carol", title="two")
            await store.create_conversation("dave")
            assert [c.id for c in await store.list_conversations("carol")] == [second.id, first.id]
            user, answer = await store.begin_turn(first.id, "question", model="m")
            assert answer.id > user.id
            assert await store.save_answer(answer.id, "part")
            ended = await store.end_streaming(first.id, "cancelled", "stop")
            assert ended is not None
            assert ended.id == answer.id
            assert not await store.save_answer(answer.id, "more")  # no longer streaming
            rows = await store.messages(first.id)
            assert [(m.role, m.content, m.status) for m in rows] == [
                ("user", "question", "complete"),
                ("assistant", "part", "cancelled"),
            ]
            assert rows[0].created_at.tzinfo is not None
            assert [m.id for m in await store.messages(first.id, last=1)] == [answer.id]
            await store.delete_conversation(first.id)
            assert await store.get_conversation(first.id) is None
            assert await store.messages(first.id) == []
        finally:
            await store.close()


async def test_an_answer_left_streaming_by_a_crash_is_recovered(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    store = Store(db["database_url"])
    await store.start()
    conversation = await store.create_conversation("anonymous")
    _, answer = await store.begin_turn(conversation.id, "question", model="demo")
    await store.save_answer(answer.id, "partial text")
    async with store.session() as session:  # the last checkpoint, long ago
        old = datetime.now(UTC) - timedelta(hours=1)
        await session.execute(update(Message).values(updated_at=old))
    await store.close()

    async with chat_hub(db) as hub:
        stored = (await messages(client, hub.url, conversation.id))[-1]
        assert (stored["status"], stored["content"]) == ("error", "partial text")
        assert stored["error"].startswith("interrupted")
        async with open_stream(client, stream_url(hub.url, conversation.id)) as stream:
            await send(client, hub.url, conversation.id, "Again")
            await stream.wait_count(1, event="ai_response_complete")


async def test_one_answer_at_a_time_across_processes(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake) as runner, chat_hub(db, fake) as other:
        cid = await create_conversation(client, runner.url, model="slow")
        async with open_stream(client, stream_url(runner.url, cid)) as stream:
            await send(client, runner.url, cid, "Go")
            await stream.wait_count(1, event="ai_response_chunk")
            url = f"{other.url}/api/v1/conversations/{cid}/messages"
            response = await client.post(url, json={"content": "Me too"})
            assert response.status_code == 409
            assert "another process" in response.json()["error"]["message"]
            # A live answer is not mistaken for an abandoned one.
            assert (await messages(client, other.url, cid))[-1]["status"] == "streaming"
            await client.post(f"{runner.url}/api/v1/conversations/{cid}/cancel")
            await stream.wait_count(1, event="ai_response_complete")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_concurrent_first_use_migrates_once(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as settings:
        stores = [
            Store(settings["database_url"], schema=settings.get("database_schema"))
            for _ in range(3)
        ]
        for store in stores:
            await store.start()
        try:
            created = await asyncio.gather(*(s.create_conversation("erin") for s in stores))
            listed = await stores[0].list_conversations("erin")
            assert {c.id for c in listed} == {c.id for c in created}
        finally:
            for store in stores:
                await store.close()


@pytest.mark.slow
async def test_sigterm_mid_answer_saves_it_as_interrupted(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/serve.db"
    env = {"SSEHUB_DATABASE_URL": url, "SSEHUB_DEMO_PACE_SECONDS": "0.2"}
    process = await asyncio.to_thread(start_hub_process, tmp_path, env)
    try:
        cid = await create_conversation(client, process.url)
        async with open_stream(client, stream_url(process.url, cid)) as stream:
            await send(client, process.url, cid, "Go")
            await stream.wait_count(2, event="ai_response_chunk")
            assert await asyncio.to_thread(process.terminate) == 0
    finally:
        if process.process.poll() is None:
            process.kill()
    store = Store(url)
    await store.start()
    answer = (await store.messages(cid))[-1]
    await store.close()
    assert (answer.status, answer.error) == ("error", "interrupted: the server shut down")
    assert answer.content.startswith("[demo ")


@pytest.mark.slow
async def test_a_hub_killed_mid_answer_ends_it_interrupted_and_frees_the_conversation(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """Two hubs on one store and one Redis; the one answering is killed (``kill -9``)."""
    db = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/killed.db"}
    shared = {"broker_url": shared_redis_url(), "redis_prefix": unique_prefix()}
    lease = {"chat_answer_lease_seconds": 2.0}
    env = {f"SSEHUB_{k.upper()}": str(v) for k, v in {**db, **shared, **lease}.items()}
    doomed = await asyncio.to_thread(
        start_hub_process, tmp_path, {**env, "SSEHUB_DEMO_PACE_SECONDS": "0.2"}
    )
    try:
        async with chat_hub(db, **shared, **lease) as survivor:
            cid = await create_conversation(client, doomed.url)
            async with open_stream(client, stream_url(survivor.url, cid)) as stream:
                await send(client, doomed.url, cid, "Go")
                await stream.wait_count(2, event="ai_response_chunk", timeout=20)
                doomed.kill()
                await stream.wait_count(1, event="conversation_error", timeout=20)
            (error,) = payloads(stream.events, "conversation_error")
            assert error["code"] == "interrupted"
            assert error["error"].startswith("interrupted")
            stored = (await messages(client, survivor.url, cid))[-1]
            assert (stored["id"], stored["status"]) == (error["message_id"], "error")
            await send(client, survivor.url, cid, "Again")  # the conversation is free
    finally:
        if doomed.process.poll() is None:
            doomed.kill()
        delete_prefix(shared["broker_url"], shared["redis_prefix"])

"""Chat end to end against a local OpenAI-compatible server, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from chat_support import (
    FINAL,
    chat_hub,
    create_conversation,
    database,
    messages,
    payloads,
    send,
    stream_url,
    turn_events,
)
from fake_openai import ANSWER, MID_CHUNKS, FakeOpenAI, steady_words
from harness import open_stream
from ssehub.parser import SSEDecoder


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with database(request.param, tmp_path) as settings:
        yield settings


async def test_full_sequence_lands_in_the_database(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake) as hub:
        cid = await create_conversation(client, hub.url, system_prompt="Be brief.", model="ok")
        async with open_stream(client, stream_url(hub.url, cid)) as stream:
            accepted = await send(client, hub.url, cid, "Hi there")
            await stream.wait_count(1, event="ai_response_complete")
            events = list(stream.events)

        names = turn_events(events)
        assert names == [
            "user_message",
            "ai_response_start",
            *["ai_response_chunk"] * len(ANSWER),
            "ai_response_complete",
        ]
        assert payloads(events, "user_message") == [
            {"message_id": accepted["user_message_id"], "content": "Hi there"}
        ]
        start = payloads(events, "ai_response_start")[0]
        assert start["message_id"] == accepted["message_id"]
        assert (start["model"], start["provider"]) == ("ok", "openai")
        chunks = payloads(events, "ai_response_chunk")
        assert [c["content"] for c in chunks] == ANSWER
        assert [c["accumulated_content"] for c in chunks] == [
            "".join(ANSWER[: i + 1]) for i in range(len(ANSWER))
        ]
        done = payloads(events, "ai_response_complete")[0]
        assert done["final_content"] == "".join(ANSWER)
        assert done["status"] == "complete"
        assert done["tokens"] == len(ANSWER)
        ids = [e.id for e in events if e.event != "connected"]
        assert len(set(ids)) == len(ids)

        stored = await messages(client, hub.url, cid)
        assert [(m["role"], m["status"]) for m in stored] == [
            ("user", "complete"),
            ("assistant", "complete"),
        ]
        user, answer = stored
        assert (user["id"], user["content"]) == (accepted["user_message_id"], "Hi there")
        assert answer["id"] == accepted["message_id"]
        assert answer["content"] == "".join(ANSWER)
        assert answer["tokens"] == len(ANSWER)
        assert answer["latency_ms"] >= 0
        assert answer["model"] == "ok"
        assert fake.requests[0]["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi there"},
        ]

        # The next turn sends the whole conversation so far.
        async with open_stream(client, stream_url(hub.url, cid)) as stream:
            await send(client, hub.url, cid, "And again?")
            await stream.wait_count(1, event="ai_response_complete")
        assert fake.requests[1]["messages"][1:] == [
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "".join(ANSWER)},
            {"role": "user", "content": "And again?"},
        ]
        assert len(await messages(client, hub.url, cid)) == 4


async def test_error_mid_stream_saves_the_partial_answer(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake) as hub:
        cid = await create_conversation(client, hub.url, model="fail-mid")
        other = await create_conversation(client, hub.url, model="ok")
        async with open_stream(client, stream_url(hub.url, cid)) as stream:
            accepted = await send(client, hub.url, cid, "Hi")
            await stream.wait_count(1, event="conversation_error")
            events = list(stream.events)
        assert turn_events(events) == [
            "user_message",
            "ai_response_start",
            *["ai_response_chunk"] * len(MID_CHUNKS),
            "conversation_error",
        ]
        error = payloads(events, "conversation_error")[0]
        assert "model overloaded" in error["error"]
        assert error["code"] == "provider_error"
        assert error["message_id"] == accepted["message_id"]
        assert error["partial_content"] == "".join(MID_CHUNKS)
        answer = (await messages(client, hub.url, cid))[-1]
        assert (answer["status"], answer["content"]) == ("error", "".join(MID_CHUNKS))
        assert "model overloaded" in answer["error"]

        # The hub keeps serving everyone else.
        async with open_stream(client, stream_url(hub.url, other)) as stream:
            await send(client, hub.url, other, "Still there?")
            await stream.wait_count(1, event="ai_response_complete")
        assert (await client.get(f"{hub.url}/readyz")).status_code == 200


async def test_cancel_stops_the_model_call_and_saves_the_partial_answer(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake) as hub:
        cid = await create_conversation(client, hub.url, model="slow")
        async with open_stream(client, stream_url(hub.url, cid)) as stream:
            accepted = await send(client, hub.url, cid, "Tell me everything")
            await stream.wait_count(3, event="ai_response_chunk")
            response = await client.post(f"{hub.url}/api/v1/conversations/{cid}/cancel")
            assert response.status_code == 200, response.text
            assert response.json() == {"cancelled": True, "message_id": accepted["message_id"]}
            await stream.wait_count(1, event="ai_response_complete")
            events = list(stream.events)
        assert turn_events(events)[-1] == "ai_response_complete"
        done = payloads(events, "ai_response_complete")[0]
        last_chunk = payloads(events, "ai_response_chunk")[-1]
        assert done["status"] == "cancelled"
        assert done["final_content"] == last_chunk["accumulated_content"]
        # The upstream request was closed: no more tokens are generated.
        await fake.wait_for(lambda f: f.disconnects == 1)
        assert fake.finished == 0
        answer = (await messages(client, hub.url, cid))[-1]
        assert (answer["status"], answer["content"]) == ("cancelled", done["final_content"])
        assert answer["content"].startswith("s0 s1 s2 ")

        # Nothing runs any more: a second cancel says so, and a new message is accepted.
        response = await client.post(f"{hub.url}/api/v1/conversations/{cid}/cancel")
        assert response.json() == {"cancelled": False, "message_id": None}


async def test_resume_mid_answer_with_last_event_id(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    words = steady_words()
    async with chat_hub(db, fake) as hub:
        cid = await create_conversation(client, hub.url, model="steady")
        async with open_stream(client, stream_url(hub.url, cid)) as first:
            await send(client, hub.url, cid, "Count")
            await first.wait_count(5, event="ai_response_chunk")
            seen = list(first.events)
        assert "ai_response_complete" not in turn_events(seen), "the answer ended too early"
        last_id = seen[-1].id
        headers = {"Last-Event-ID": last_id}
        async with open_stream(client, stream_url(hub.url, cid), headers=headers) as second:
            await second.wait_count(1, event="ai_response_complete")
            resumed = list(second.events)
        connected = orjson.loads(resumed[0].data)
        assert connected["resumed"] is True
        chunks = payloads(seen, "ai_response_chunk") + payloads(resumed, "ai_response_chunk")
        assert [c["content"] for c in chunks] == words  # no gap, no duplicate
        final = payloads(resumed, "ai_response_complete")[0]["final_content"]
        assert chunks[-1]["accumulated_content"] == final == "".join(words)
        answer = (await messages(client, hub.url, cid))[-1]
        assert answer["content"] == final
        assert answer["status"] == "complete"


async def test_post_stream_answers_on_the_post(
    tmp_path: Path, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with database("sqlite", tmp_path) as db, chat_hub(db, fake) as hub:
        cid = await create_conversation(client, hub.url, model="ok")
        url = f"{hub.url}/api/v1/conversations/{cid}/messages/stream"
        async with client.stream("POST", url, json={"content": "Hi"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            body = await response.aread()
        events = SSEDecoder().feed(body)
        assert [e.event for e in events] == [
            "user_message",
            "ai_response_start",
            *["ai_response_chunk"] * len(ANSWER),
            "ai_response_complete",
        ]
        assert all(e.id for e in events)
        done = payloads(events, "ai_response_complete")[0]
        assert done["final_content"] == "".join(ANSWER)

        # Its ids are those of the conversation stream: the history replays the same events.
        replay = await client.get(
            f"{hub.url}/api/v1/channels/conversation:{cid}/events", params={"limit": 100}
        )
        assert [e["id"] for e in replay.json()["events"]] == [e.id for e in events]

        # Failures end the POST stream with conversation_error.
        broken = await create_conversation(client, hub.url, model="unauthorized")
        url = f"{hub.url}/api/v1/conversations/{broken}/messages/stream"
        async with client.stream("POST", url, json={"content": "Hi"}) as response:
            events = SSEDecoder().feed(await response.aread())
        assert [e.event for e in events][-1] == "conversation_error"
        assert payloads(events, "conversation_error")[0]["code"] == "provider_unauthorized"


@pytest.mark.parametrize(
    ("model", "code", "words"),
    [
        ("unauthorized", "provider_unauthorized", "rejected the API key (401)"),
        ("rate-limited", "provider_rate_limited", "rate limiting requests (429)"),
        ("stall", "provider_timeout", "timed out"),
        ("refused", "provider_unavailable", "cannot connect to the model provider"),
    ],
)
async def test_provider_failures_become_conversation_error(
    model: str, code: str, words: str, tmp_path: Path, fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    overrides: dict[str, Any] = {"llm_timeout_seconds": 0.5}
    if model == "refused":
        from harness import free_port

        overrides["llm_base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    async with database("sqlite", tmp_path) as db, chat_hub(db, fake, **overrides) as hub:
        cid = await create_conversation(client, hub.url, model=model)
        async with open_stream(client, stream_url(hub.url, cid)) as stream:
            await send(client, hub.url, cid, "Hi")
            await stream.wait_count(1, event="conversation_error", timeout=15)
            events = list(stream.events)
        assert turn_events(events)[-1] in FINAL
        error = payloads(events, "conversation_error")[0]
        assert error["code"] == code
        assert words in error["error"]
        answer = (await messages(client, hub.url, cid))[-1]
        assert answer["status"] == "error"
        assert answer["content"] == ("Thinking " if model == "stall" else "")
        assert words in answer["error"]

"""Conversation API: ownership under JWT, input errors, one answer at a time, the demo provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from chat_support import chat_hub, create_conversation, database, messages, payloads, send
from fake_openai import FakeOpenAI
from harness import RunningHub, open_stream
from ssehub.llm.demo import LABEL

SECRET = "chat-test-secret-long-enough-for-hs256"


def bearer(sub: str) -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode({"sub": sub, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with database("sqlite", tmp_path) as settings:
        yield settings


def api(hub: RunningHub, path: str = "") -> str:
    return f"{hub.url}/api/v1/conversations{path}"


async def test_only_the_owner_reads_or_writes_a_conversation(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    alice, bob = bearer("alice"), bearer("bob")
    async with chat_hub(db, jwt_secret=SECRET) as hub:
        cid = await create_conversation(client, hub.url, headers=alice, title="mine")
        async with open_stream(client, api(hub, f"/{cid}/stream"), headers=alice) as stream:
            await send(client, hub.url, cid, "Hi", headers=alice)
            await stream.wait_count(1, event="ai_response_complete")

        for method, path, body in [
            ("GET", f"/{cid}", None),
            ("GET", f"/{cid}/stream", None),
            ("POST", f"/{cid}/messages", {"content": "x"}),
            ("POST", f"/{cid}/messages/stream", {"content": "x"}),
            ("POST", f"/{cid}/cancel", None),
            ("DELETE", f"/{cid}", None),
        ]:
            response = await client.request(method, api(hub, path), json=body, headers=bob)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
        listed = await client.get(api(hub), headers=bob)
        assert listed.json() == {"conversations": []}
        # Nor through the generic channel stream: bob holds no right on that channel.
        channel = await client.get(f"{hub.url}/api/v1/sse/stream/conversation:{cid}", headers=bob)
        assert channel.status_code == 403

        # Without a token there is no owner: 401 asking for one.
        anonymous = await client.get(api(hub))
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")

        listed = await client.get(api(hub), headers=alice)
        assert [c["id"] for c in listed.json()["conversations"]] == [cid]
        assert len(await messages(client, hub.url, cid, headers=alice)) == 2
        assert (await client.delete(api(hub, f"/{cid}"), headers=alice)).status_code == 204
        assert (await client.get(api(hub, f"/{cid}"), headers=alice)).status_code == 404


async def test_open_access_owner_is_anonymous(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    async with chat_hub(db) as hub:
        cid = await create_conversation(client, hub.url)
        listed = (await client.get(api(hub))).json()["conversations"]
        assert [c["id"] for c in listed] == [cid]
        assert listed[0]["channel"] == f"conversation:{cid}"
        assert (listed[0]["provider"], listed[0]["model"]) == ("demo", "demo")


async def test_bad_input_gets_json_errors(db: dict[str, Any], client: httpx.AsyncClient) -> None:
    async with chat_hub(db, chat_max_message_chars=100) as hub:
        cid = await create_conversation(client, hub.url)
        for body in [{"content": ""}, {"content": "   "}, {"content": "x" * 101}, {}, {"x": 1}]:
            response = await client.post(api(hub, f"/{cid}/messages"), json=body)
            assert response.status_code == 400, body
            assert response.json()["error"]["code"] == "bad_request"
        response = await client.post(api(hub), json={"title": "t" * 201})
        assert response.status_code == 400
        for cid_bad in ["nope", "x" * 500]:
            response = await client.post(api(hub, f"/{cid_bad}/messages"), json={"content": "hi"})
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"
        assert (await client.get(api(hub), params={"limit": 0})).status_code == 400
        assert await messages(client, hub.url, cid) == []


async def test_one_answer_at_a_time(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake) as hub:
        cid = await create_conversation(client, hub.url, model="slow")
        async with open_stream(client, api(hub, f"/{cid}/stream")) as stream:
            await send(client, hub.url, cid, "First")
            await stream.wait_count(1, event="ai_response_chunk")
            response = await client.post(api(hub, f"/{cid}/messages"), json={"content": "Again"})
            assert response.status_code == 409
            assert response.json()["error"]["code"] == "conflict"
            await client.post(api(hub, f"/{cid}/cancel"))
            await stream.wait_count(1, event="ai_response_complete")
            await send(client, hub.url, cid, "Now?")
            await stream.wait_count(2, event="ai_response_chunk")
            # Deleting a conversation stops its running answer.
            assert (await client.delete(api(hub, f"/{cid}"))).status_code == 204
        await fake.wait_for(lambda f: f.disconnects == 2)


async def test_demo_provider_is_the_default(db: dict[str, Any], client: httpx.AsyncClient) -> None:
    async with chat_hub(db) as hub:
        cid = await create_conversation(client, hub.url)
        async with open_stream(client, api(hub, f"/{cid}/stream")) as stream:
            await send(client, hub.url, cid, "What are you?")
            await stream.wait_count(1, event="ai_response_complete")
            events = list(stream.events)
        start = payloads(events, "ai_response_start")[0]
        assert (start["provider"], start["model"]) == ("demo", "demo")
        final = payloads(events, "ai_response_complete")[0]["final_content"]
        assert final.startswith(LABEL)
        assert "What are you?" in final
        assert len(payloads(events, "ai_response_chunk")) > 20
        assert (await messages(client, hub.url, cid))[-1]["content"] == final


async def test_stream_type_filter(db: dict[str, Any], client: httpx.AsyncClient) -> None:
    async with chat_hub(db) as hub:
        cid = await create_conversation(client, hub.url)
        url = api(hub, f"/{cid}/stream?types=user_message,ai_response_complete")
        async with open_stream(client, url) as stream:
            await send(client, hub.url, cid, "Short please")
            await stream.wait_count(1, event="ai_response_complete")
        assert [e.event for e in stream.events] == [
            "connected",
            "user_message",
            "ai_response_complete",
        ]


async def test_post_stream_ends_when_the_hub_closes_streams(
    db: dict[str, Any], fake: FakeOpenAI, client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, fake) as hub:
        cid = await create_conversation(client, hub.url, model="slow")
        url = api(hub, f"/{cid}/messages/stream")
        async with client.stream("POST", url, json={"content": "Go"}) as response:
            received = b""
            chunks = response.aiter_raw()
            while b"ai_response_chunk" not in received:
                received += await anext(chunks)
            hub.hub.close_all()  # what SIGTERM does
            async with asyncio.timeout(5):
                async for chunk in chunks:
                    received += chunk
        assert b"ai_response_complete" not in received
        stopped = await client.post(api(hub, f"/{cid}/cancel"))
        assert stopped.json()["cancelled"] is True
        refused = await client.post(url, json={"content": "Again"})
        assert refused.status_code == 503

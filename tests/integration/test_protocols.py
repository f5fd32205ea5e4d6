"""The AI SDK and AG-UI endpoints over HTTP: ownership, bad input, rejoining ended answers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from chat_support import chat_hub, database
from tokens import SECRET, bearer, hs256

AI_SDK = "/api/v1/ai-sdk/chat"
AG_UI = "/api/v1/ag-ui/chat"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with database("sqlite", tmp_path) as settings:
        yield settings


def sdk_body(chat_id: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}
    return {"id": chat_id, "messages": [message], "trigger": "submit-message", **extra}


def agui_body(thread_id: str, text: str = "hello") -> dict[str, Any]:
    message = {"id": "u1", "role": "user", "content": text}
    return {"threadId": thread_id, "runId": "r1", "messages": [message]}


def parts(body: str) -> list[Any]:
    """The JSON of every ``data:`` line (``[DONE]`` as a string)."""
    found: list[Any] = []
    for line in body.splitlines():
        if line.startswith("data: "):
            value = line[6:]
            found.append(value if value == "[DONE]" else orjson.loads(value))
    return found


def frames(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, event) of every AG-UI frame."""
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["id"], orjson.loads(fields["data"])))
    return out


async def test_ui_message_stream_shape_rejoin_and_ownership(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    chat_id = uuid.uuid4().hex[:12]
    alice, bob = bearer(hs256("alice")), bearer(hs256("bob"))
    async with chat_hub(db, jwt_secret=SECRET) as hub:
        url = f"{hub.url}{AI_SDK}"
        answer = await client.post(url, json=sdk_body(chat_id), headers=alice)
        assert answer.status_code == 200
        assert answer.headers["x-vercel-ai-ui-message-stream"] == "v1"
        got = parts(answer.text)
        assert [p if p == "[DONE]" else p["type"] for p in (got[:2] + got[-3:])] == [
            "start",
            "text-start",
            "text-end",
            "finish",
            "[DONE]",
        ]
        text = "".join(p["delta"] for p in got if isinstance(p, dict) and "delta" in p)
        message_id = got[0]["messageId"]

        # Nothing runs: the SDK's reconnect gets 204; naming the ended answer rejoins it.
        idle = await client.get(f"{url}/{chat_id}/stream", headers=alice)
        assert idle.status_code == 204
        again = await client.get(f"{url}/{chat_id}/stream?answer={message_id}", headers=alice)
        assert again.status_code == 200
        replay = parts(again.text)
        assert replay[0] == {"type": "start", "messageId": message_id}
        assert "".join(p.get("delta", "") for p in replay if isinstance(p, dict)) == text
        assert replay[-2:] == [{"type": "finish", "finishReason": "stop"}, "[DONE]"]

        stored = (await client.get(f"{url}/{chat_id}/messages", headers=alice)).json()
        assert [(m["id"], m["role"]) for m in stored][-1] == (message_id, "assistant")
        assert stored[-1]["parts"] == [{"type": "text", "text": text}]

        # Another user's chat id is nobody's business: 404, and no answer is started in it.
        for response in (
            await client.post(url, json=sdk_body(chat_id), headers=bob),
            await client.get(f"{url}/{chat_id}/stream", headers=bob),
            await client.post(f"{url}/{chat_id}/stop", headers=bob),
            await client.post(f"{hub.url}{AG_UI}", json=agui_body(chat_id), headers=bob),
        ):
            assert response.status_code == 404, response.text
        assert (await client.post(url, json=sdk_body(chat_id))).status_code == 401


async def test_bad_protocol_input_gets_json_errors(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    async with chat_hub(db) as hub:
        url = f"{hub.url}{AI_SDK}"
        cases = [
            (url, sdk_body("../etc")),
            (url, sdk_body("x" * 33)),
            (url, sdk_body("ok-id", "   ")),
            (url, {**sdk_body("ok-id"), "trigger": "regenerate-message"}),
            (url, {"id": "ok-id", "messages": []}),
            (url, {"id": "ok-id", "messages": [{"role": "assistant", "parts": []}]}),
            (f"{hub.url}{AG_UI}", {"threadId": "t1", "runId": "r1", "messages": []}),
            (f"{hub.url}{AG_UI}", {"threadId": "t/1", "runId": "r1", "messages": []}),
        ]
        for target, body in cases:
            response = await client.post(target, json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"]["code"] == "bad_request"
        missing = await client.get(f"{url}/nochat/stream")
        assert missing.status_code == 404
        assert (await client.get(f"{url}/nochat/stream?answer=nope")).status_code in (400, 404)


async def test_ag_ui_reconnect_after_the_end_closes_the_run(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    thread = uuid.uuid4().hex[:12]
    async with chat_hub(db) as hub:
        run = await client.post(f"{hub.url}{AG_UI}", json=agui_body(thread))
        events = frames(run.text)
        types = [e["type"] for _, e in events]
        assert types[:2] == ["RUN_STARTED", "TEXT_MESSAGE_START"]
        assert types[-2:] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]
        last_id = events[-1][0]

        # With the last id: nothing left but the run's close, re-opened and finished.
        again = await client.post(
            f"{hub.url}{AG_UI}", json=agui_body(thread), headers={"Last-Event-ID": last_id}
        )
        assert [e["type"] for _, e in frames(again.text)] == ["RUN_STARTED", "RUN_FINISHED"]
        # From the middle: exactly the text after that id.
        middle = 5
        rest = await client.post(
            f"{hub.url}{AG_UI}/join",
            json=agui_body(thread),
            headers={"Last-Event-ID": events[middle][0]},
        )
        tail = [e for _, e in frames(rest.text)]
        seen = "".join(e.get("delta", "") for _, e in events[: middle + 1])
        rest_text = "".join(e.get("delta", "") for e in tail)
        whole = "".join(e.get("delta", "") for _, e in events)
        assert seen + rest_text == whole
        assert [e["type"] for e in tail[:2]] == ["RUN_STARTED", "TEXT_MESSAGE_START"]

        nothing = await client.post(f"{hub.url}{AG_UI}/join", json=agui_body("fresh-thread"))
        assert nothing.status_code == 404

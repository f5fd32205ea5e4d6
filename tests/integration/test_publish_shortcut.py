"""The single-event publish shortcut answers exactly as the FastAPI route, and is taken.

Two hubs with the same settings, one without ``PublishShortcut``, get the same requests: plain
publishes the shortcut serves and every kind of body, head or caller it hands to FastAPI.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.middleware import Middleware

from harness import RunningHub, serve_app
from ssehub.app import create_app
from ssehub.routes.publish_shortcut import PublishShortcut
from ssehub.settings import Settings
from tokens import SECRET, bearer, hs256

ID = re.compile(r"[0-9a-z]+-[0-9]+")
ALICE = bearer(hs256("alice", publish=["news", "news:*"]))
JSON = {"content-type": "application/json"}


def hub_settings(**extra: Any) -> Settings:
    return Settings(_env_file=None, jwt_secret=SECRET, max_event_bytes=1024, **extra)  # type: ignore[call-arg]


def build(shortcut: bool, settings: Settings) -> Any:
    app = create_app(settings)
    if not shortcut:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not PublishShortcut]
    return app


@contextlib.asynccontextmanager
async def hub_pair(**extra: Any) -> AsyncIterator[tuple[RunningHub, RunningHub]]:
    async with (
        serve_app(build(True, hub_settings(**extra))) as fast,
        serve_app(build(False, hub_settings(**extra))) as plain,
    ):
        yield fast, plain


def outcome(answer: httpx.Response) -> tuple[Any, ...]:
    """What a caller sees, with the event id reduced to its shape."""
    body = answer.json()
    if answer.status_code == 200:
        assert ID.fullmatch(body.pop("id")), body
    heads = ("content-type", "www-authenticate", "retry-after")
    return answer.status_code, body, {h: answer.headers.get(h) for h in heads}


CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    ("plain", "news", {**ALICE, **JSON}, b'{"event":"token","data":"hello"}'),
    ("json data", "news:1", {**ALICE, **JSON}, b'{"data":{"a":[1,2.5,null]},"retry":5}'),
    ("no content type", "news", ALICE, b'{"data":"x"}'),
    ("charset", "news", {**ALICE, "content-type": "application/json; charset=utf-8"}, b"{}"),
    ("retry as text", "news", {**ALICE, **JSON}, b'{"data":"x","retry":"5"}'),
    ("retry as float", "news", {**ALICE, **JSON}, b'{"data":"x","retry":5.0}'),
    ("retry as bool", "news", {**ALICE, **JSON}, b'{"data":"x","retry":true}'),
    ("negative retry", "news", {**ALICE, **JSON}, b'{"data":"x","retry":-1}'),
    ("retry too long", "news", {**ALICE, **JSON}, b'{"data":"x","retry":999999999}'),
    ("event not text", "news", {**ALICE, **JSON}, b'{"event":5,"data":"x"}'),
    ("event with newline", "news", {**ALICE, **JSON}, b'{"event":"a\\nb","data":"x"}'),
    ("other hub's shape", "news", {**ALICE, **JSON}, b'{"type":"a","payload":1}'),
    ("a list", "news", {**ALICE, **JSON}, b"[1,2]"),
    ("empty", "news", {**ALICE, **JSON}, b""),
    ("broken JSON", "news", {**ALICE, **JSON}, b'{"data":'),
    ("NaN", "news", {**ALICE, **JSON}, b'{"data":NaN}'),
    ("big integer", "news", {**ALICE, **JSON}, b'{"data":123456789012345678901234567890}'),
    ("below 64 bits", "news", {**ALICE, **JSON}, b'{"data":-9223372036854775809}'),
    ("infinite", "news", {**ALICE, **JSON}, b'{"data":1e400}'),
    ("byte order mark", "news", {**ALICE, **JSON}, b'\xef\xbb\xbf{"data":"x"}'),
    ("lone surrogate", "news", {**ALICE, **JSON}, b'{"data":"\\ud800"}'),
    ("text body", "news", {**ALICE, "content-type": "text/plain"}, b'{"data":"x"}'),
    ("data too large", "news", {**ALICE, **JSON}, b'{"data":"' + b"x" * 2000 + b'"}'),
    ("long key", "news", {**ALICE, **JSON, "idempotency-key": "k" * 201}, b'{"data":"x"}'),
    ("no token", "news", JSON, b'{"data":"x"}'),
    ("bad token", "news", {**JSON, "authorization": "Bearer nope"}, b'{"data":"x"}'),
    ("no right", "sports", {**ALICE, **JSON}, b'{"data":"x"}'),
    ("bad channel", "news%20x", {**ALICE, **JSON}, b'{"data":"x"}'),
]


async def test_every_request_gets_the_routes_answer(client: httpx.AsyncClient) -> None:
    async with hub_pair() as (fast, plain):
        for name, channel, headers, body in CASES:
            answers = [
                await client.post(
                    f"{h.url}/api/v1/publish/{channel}", content=body, headers=headers
                )
                for h in (fast, plain)
            ]
            assert outcome(answers[0]) == outcome(answers[1]), name


async def test_an_idempotency_key_returns_the_first_id(client: httpx.AsyncClient) -> None:
    async with hub_pair() as (fast, _):
        url = f"{fast.url}/api/v1/publish/news"
        headers = {**ALICE, "Idempotency-Key": "once"}
        first = await client.post(url, json={"data": "x"}, headers=headers)
        again = await client.post(url, json={"data": "x"}, headers=headers)
        other = await client.post(url, json={"data": "x"}, headers=ALICE)
        assert first.json()["id"] == again.json()["id"] != other.json()["id"]
        kept = await client.get(f"{fast.url}/api/v1/channels/news/events", headers=ALICE)
        assert kept.status_code == 403  # alice may publish, not read: the events are not shown


async def test_rate_limits_refuse_alike(client: httpx.AsyncClient) -> None:
    async with hub_pair(publish_rate_per_user=0.001, publish_burst_per_user=1) as (fast, plain):
        for hub in (fast, plain):
            url = f"{hub.url}/api/v1/publish/news"
            assert (await client.post(url, json={"data": 1}, headers=ALICE)).status_code == 200
        refused = [
            await client.post(f"{h.url}/api/v1/publish/news", json={"data": 1}, headers=ALICE)
            for h in (fast, plain)
        ]
        assert refused[0].status_code == 429
        # The seconds to wait differ by the time between the two requests.
        fast, plain = outcome(refused[0]), outcome(refused[1])
        assert fast[::2] == plain[::2]
        for _, body, _ in (fast, plain):
            body["error"]["message"] = body["error"]["message"].rpartition(" in ")[0]
        assert fast[1] == plain[1]


class Routed:
    """Records the HTTP requests that reach FastAPI's routing."""

    def __init__(self, app: Any, calls: list[str]) -> None:
        self.app, self.calls = app, calls

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.mark.parametrize(
    ("body", "status", "routed"),
    [(b'{"data":"x"}', 200, 0), (b'{"data":"x","retry":-1}', 400, 1)],
)
async def test_a_plain_publish_skips_fastapi_routing(
    client: httpx.AsyncClient, body: bytes, status: int, routed: int
) -> None:
    app = build(True, hub_settings())
    calls: list[str] = []
    app.user_middleware.append(Middleware(Routed, calls=calls))  # innermost: before routing
    async with serve_app(app) as hub:
        url = f"{hub.url}/api/v1/publish/news"
        answer = await client.post(url, content=body, headers={**ALICE, **JSON})
    assert answer.status_code == status
    assert len(calls) == routed

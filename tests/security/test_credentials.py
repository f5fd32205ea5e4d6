"""Each credential opens only what it was made for: stream tickets, anonymous rights, tokens
without ``sub``, anonymous project streams, chat answers on the POST response, ``retry`` and
token lifetime. Every test runs a real hub on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt
import pytest

from chat_support import chat_hub, create_conversation
from harness import open_stream, running_hub
from limits_support import expect_rate_limited, jwt_settings, stream_status
from ssehub.app import create_app
from tokens import SECRET, bearer, expect_error, hs256


async def ticket_for(client: httpx.AsyncClient, base: str, channels: list[str], **kw: Any) -> str:
    response = await client.post(f"{base}/api/v1/sse/tickets", json={"channels": channels}, **kw)
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


async def test_a_ticket_opens_streams_only(db: dict[str, Any], client: httpx.AsyncClient) -> None:
    alice = bearer(hs256("alice", subscribe=["user:alice:*"]))
    async with chat_hub(db, jwt_secret=SECRET) as hub:
        cid = await create_conversation(client, hub.url, alice)
        other = await create_conversation(client, hub.url, alice)
        ticket = await ticket_for(client, hub.url, ["user:alice:inbox"], headers=alice)
        api = f"{hub.url}/api/v1/conversations"
        listed = await client.get(api, params={"ticket": ticket})
        expect_error(listed, 401, "unauthorized", "ticket")
        deleted = await client.delete(f"{api}/{cid}", params={"ticket": ticket})
        expect_error(deleted, 401, "unauthorized", "ticket")
        assert (await client.get(f"{api}/{cid}", headers=alice)).status_code == 200
        # A ticket for one channel does not open the user's conversation streams either.
        refused = await stream_status(client, f"{api}/{other}/stream", params={"ticket": ticket})
        expect_error(refused, 403, "forbidden")
        # Refused requests did not use it up... except the stream GET above, which took it.
        ticket = await ticket_for(client, hub.url, ["user:alice:inbox"], headers=alice)
        await client.get(api, params={"ticket": ticket})
        stream = f"{hub.url}/api/v1/sse/stream/user:alice:inbox?ticket={ticket}"
        async with open_stream(client, stream) as reader:
            assert reader.of_type("connected")


async def test_no_chat_without_a_real_identity(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    async with chat_hub(db, jwt_secret=SECRET, anonymous_subscribe=["public:*"]) as hub:
        api = f"{hub.url}/api/v1/conversations"
        cid = await create_conversation(client, hub.url, bearer(hs256("alice")))
        anonymous_ticket = await ticket_for(client, hub.url, ["public:news"])
        with_ticket = await stream_status(
            client, f"{api}/{cid}/stream", params={"ticket": anonymous_ticket}
        )
        expect_error(with_ticket, 401, "unauthorized", "token is required")
        nosub = bearer(hs256(None, subscribe=["public:*"]))
        expect_error(await client.post(api, json={}, headers=nosub), 403, "forbidden", "sub")
        expect_error(await client.get(api, headers=nosub), 403, "forbidden", "sub")
        assert (await client.post(api, json={}, headers=bearer(hs256("alice")))).status_code == 201


async def test_anonymous_project_streams_refuse_wildcards_and_are_limited_per_address(
    client: httpx.AsyncClient,
) -> None:
    settings = jwt_settings(max_connections_per_ip=2)
    async with running_hub(settings) as hub:
        base = f"{hub.url}/api/v1/sse/projects"
        for path in ("/*/", "/1*/stages/x/", "/1/stages/*/", "/*/stream/"):
            expect_error(await stream_status(client, base + path), 400, "bad_request", "'*'")
        async with open_stream(client, f"{base}/1/"), open_stream(client, f"{base}/2/"):
            third = await stream_status(client, f"{base}/3/")
            expect_rate_limited(third, "too_many_connections")
        async with open_stream(client, f"{base}/3/"):  # the slots came back
            pass


def test_anonymous_project_streams_beside_jwt_log_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="ssehub.auth"):
        create_app(jwt_settings())
    assert any("project streams" in r.getMessage() for r in caplog.records), caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ssehub.auth"):
        create_app(jwt_settings(anonymous_project_streams=False))
    assert not any("project streams" in r.getMessage() for r in caplog.records)


def active_gauge(metrics_text: str) -> float:
    """The sum of ``ssehub_connections_active`` over its families."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("ssehub_connections_active{")
    )


async def test_chat_answers_on_the_post_response_count_as_streams(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    async with chat_hub(
        db, jwt_secret=SECRET, demo_pace_seconds=0.3, max_connections_per_user=2
    ) as hub:
        alice = bearer(hs256("alice"))
        admin = bearer(hs256("root", admin=True))
        api = f"{hub.url}/api/v1/conversations"
        cids = [await create_conversation(client, hub.url, alice) for _ in range(3)]
        async with (
            client.stream(
                "POST", f"{api}/{cids[0]}/messages/stream", json={"content": "a"}, headers=alice
            ) as first,
            client.stream(
                "POST", f"{api}/{cids[1]}/messages/stream", json={"content": "b"}, headers=alice
            ) as second,
        ):
            assert first.status_code == second.status_code == 200
            third = await client.post(
                f"{api}/{cids[2]}/messages/stream", json={"content": "c"}, headers=alice
            )
            expect_rate_limited(third, "too_many_connections")
            stats = (await client.get(f"{hub.url}/api/v1/sse/stats", headers=admin)).json()
            assert stats["statistics"]["active_connections"] == 2
            assert active_gauge((await client.get(f"{hub.url}/metrics")).text) == 2
            for cid, response in zip(cids, (first, second), strict=False):
                # Each response ends with its answer: cancelled here rather than waited for.
                assert (await client.post(f"{api}/{cid}/cancel", headers=alice)).status_code == 200
                async with asyncio.timeout(30):
                    async for _ in response.aiter_raw():
                        pass
        async with asyncio.timeout(10):
            while active_gauge((await client.get(f"{hub.url}/metrics")).text) != 0:
                await asyncio.sleep(0.05)
        stats = (await client.get(f"{hub.url}/api/v1/sse/stats", headers=admin)).json()
        assert stats["statistics"]["active_connections"] == 0


async def test_publish_retry_is_bounded(client: httpx.AsyncClient) -> None:
    async with running_hub(jwt_settings(max_retry_ms=60_000)) as hub:
        alice = bearer(hs256("alice", publish=["r:*"]))
        url = f"{hub.url}/api/v1/publish"
        for retry in (10**30, 60_001):
            refused = await client.post(f"{url}/r:1", json={"retry": retry}, headers=alice)
            expect_error(refused, 400, "bad_request", "retry")
        batch = [{"channel": "r:1", "data": 1}, {"channel": "r:2", "retry": 10**30}]
        expect_error(await client.post(url, json=batch, headers=alice), 400, "bad_request")
        ok = await client.post(f"{url}/r:1", json={"retry": 60_000}, headers=alice)
        assert ok.status_code == 200


async def test_token_lifetime_is_bounded(client: httpx.AsyncClient) -> None:
    async with running_hub(jwt_settings(jwt_max_lifetime_seconds=3600)) as hub:
        url = f"{hub.url}/api/v1/publish/p"
        now = int(time.time())

        def token(**claims: Any) -> dict[str, str]:
            return bearer(jwt.encode({"sub": "a", "publish": ["p"], **claims}, SECRET, "HS256"))

        for claims in ({"exp": 10**30}, {"exp": now + 7200}, {"iat": now - 7200, "exp": now + 60}):
            refused = await client.post(url, json={}, headers=token(**claims))
            expect_error(refused, 401, "unauthorized", "lives longer")
        ok = await client.post(url, json={}, headers=token(iat=now, exp=now + 3000))
        assert ok.status_code == 200

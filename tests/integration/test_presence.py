"""Presence: who is subscribed to a channel, and join/leave events where enabled."""

from __future__ import annotations

import json

from harness import open_stream, running_hub, wait_until
from ssehub.settings import Settings
from tokens import SECRET, bearer, expect_error, hs256


def user(name: str, *patterns: str) -> dict[str, str]:
    return bearer(hs256(name, subscribe=list(patterns or ["room:*"])))


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, jwt_secret=SECRET, heartbeat_seconds=0, **kw)  # type: ignore[call-arg]


async def test_presence_lists_exactly_the_connected_users(client) -> None:
    async with running_hub(settings()) as hub:
        base = f"{hub.url}/api/v1/sse/stream"
        presence = f"{hub.url}/api/v1/channels/room:1/presence"
        async with (
            open_stream(client, f"{base}/room:1", headers=user("alice")) as a,
            open_stream(client, f"{base}/room:1", headers=user("bob")) as b,
            open_stream(client, f"{base}/room:2", headers=user("carol")),
            open_stream(client, f"{base}/room:*", headers=user("dave")) as d,
        ):
            response = await client.get(presence, headers=user("alice"))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["channel"] == "room:1"
            assert body["users"] == ["alice", "bob", "dave"]
            ids = [json.loads(r.events[0].data)["client_id"] for r in (a, b, d)]
            assert sorted(c["client_id"] for c in body["clients"]) == sorted(ids)
            await b.aclose()
            await wait_until(lambda: len(hub.hub.connections) == 3)
            body = (await client.get(presence, headers=user("alice"))).json()
            assert body["users"] == ["alice", "dave"]
        response = await client.get(presence, headers=user("erin", "lobby"))
        expect_error(response, 403, "forbidden", "room:1")
        response = await client.get(presence)
        expect_error(response, 401, "unauthorized")
        response = await client.get(f"{hub.url}/api/v1/channels/room:*/presence", headers=user("x"))
        expect_error(response, 400, "invalid_channel")


async def test_join_and_leave_events_where_enabled(client) -> None:
    async with running_hub(settings(presence_events=["room:*"])) as hub:
        base = f"{hub.url}/api/v1/sse/stream"
        async with open_stream(client, f"{base}/room:1", headers=user("alice")) as a:
            await a.wait_count(1, event="join")  # its own join
            async with open_stream(client, f"{base}/room:1", headers=user("bob")) as b:
                bob_id = json.loads(b.events[0].data)["client_id"]
                await a.wait_count(2, event="join")
                joined = json.loads(a.of_type("join")[1].data)
                assert joined == {"user_id": "bob", "client_id": bob_id}
            await a.wait_count(1, event="leave")
            assert json.loads(a.of_type("leave")[0].data) == {"user_id": "bob", "client_id": bob_id}
        async with open_stream(client, f"{base}/lobby", headers=user("carol", "lobby")) as c:
            async with open_stream(client, f"{base}/lobby", headers=user("dan", "lobby")):
                pass
            await wait_until(lambda: len(hub.hub.connections) == 1)
            assert c.of_type("join") == []
            assert c.of_type("leave") == []

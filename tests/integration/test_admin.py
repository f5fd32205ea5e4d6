"""Admin API (seed 003): broadcast, send, disconnect, stats, clients, on a real server."""

from __future__ import annotations

import json

import pytest

from harness import open_stream, publish, running_hub, wait_until
from ssehub.settings import Settings
from tokens import SECRET, bearer, expect_error, hs256

ADMIN = bearer(hs256("ops", admin=True))
ALICE = bearer(hs256("alice", subscribe=["news"]))
BOB = bearer(hs256("bob", subscribe=["news"]))


@pytest.fixture
async def hub():  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None, jwt_secret=SECRET, heartbeat_seconds=0)  # type: ignore[call-arg]
    async with running_hub(settings) as running:
        yield running


def client_id(reader) -> str:  # type: ignore[no-untyped-def]
    return json.loads(reader.events[0].data)["client_id"]  # type: ignore[no-any-return]


def connect(client, hub, headers):  # type: ignore[no-untyped-def]
    return open_stream(
        client, f"{hub.url}/api/v1/sse/connect", headers={**headers, "User-Agent": "test-agent/1"}
    )


def news(client, hub, headers=ADMIN):  # type: ignore[no-untyped-def]
    return open_stream(client, f"{hub.url}/api/v1/sse/stream/news", headers=headers)


async def post(client, hub, path: str, headers=ADMIN, **body):  # type: ignore[no-untyped-def]
    return await client.post(f"{hub.url}/api/v1/sse/{path}", json=body, headers=headers)


async def test_broadcast_reaches_every_connect_client_and_no_channel_stream(hub, client) -> None:
    async with (
        connect(client, hub, ALICE) as a,
        connect(client, hub, BOB) as b,
        news(client, hub) as s,
    ):
        response = await post(client, hub, "broadcast", event="notice", data={"m": 1})
        assert response.status_code == 200, response.text
        assert response.json()["message"] == "broadcast sent"
        await a.wait_count(1)
        await b.wait_count(1)
        assert [(e.event, e.data) for e in a.events[1:]] == [("notice", '{"m":1}')]
        assert [(e.event, e.data) for e in b.events[1:]] == [("notice", '{"m":1}')]
        await publish(client, hub.url, "news", "marker", headers=ADMIN)
        await s.wait_count(1)
        assert s.data == ["marker"]


async def test_send_reaches_exactly_one_client(hub, client) -> None:
    async with connect(client, hub, ALICE) as a, connect(client, hub, BOB) as b:
        response = await post(client, hub, f"send/{client_id(a)}", event="personal", data="hi")
        assert response.status_code == 200, response.text
        assert response.json()["message"] == "message sent"
        await a.wait_count(1)
        await post(client, hub, "broadcast", data="marker")
        await b.wait_count(1)
        await a.wait_count(2)
        assert b.data == ["marker"]
        assert a.data == ["hi", "marker"]
        assert a.events[1].event == "personal"


async def test_send_rights_and_unknown_clients(hub, client) -> None:
    async with (
        connect(client, hub, ALICE) as a,
        connect(client, hub, BOB) as b,
        news(client, hub) as s,
    ):
        # a user may message their own client ids without admin
        response = await post(client, hub, f"send/{client_id(a)}", headers=ALICE, data="self")
        assert response.status_code == 200, response.text
        await a.wait_count(1)
        response = await post(client, hub, f"send/{client_id(b)}", headers=ALICE, data="x")
        expect_error(response, 403, "forbidden", "admin")
        response = await post(client, hub, f"send/{client_id(b)}", headers={}, data="x")
        expect_error(response, 401, "unauthorized")
        response = await post(client, hub, "send/no-such-client", data="x")
        expect_error(response, 404, "not_found", "no client 'no-such-client'")
        response = await post(client, hub, f"send/{client_id(s)}", data="x")
        expect_error(response, 404, "not_found", "not a /connect client")
        response = await post(client, hub, "broadcast", headers=ALICE, data="x")
        expect_error(response, 403, "forbidden", "admin")
        assert b.data == []


async def test_disconnect_closes_exactly_one(hub, client) -> None:
    async with connect(client, hub, ALICE) as a, connect(client, hub, BOB) as b:
        response = await post(client, hub, f"disconnect/{client_id(a)}")
        assert response.status_code == 200, response.text
        assert response.json()["message"] == "disconnected"
        await a.closed.wait()
        await wait_until(lambda: hub.hub.stats.closed.get("disconnected_by_admin") == 1)
        assert not b.closed.is_set()
        await post(client, hub, f"send/{client_id(b)}", data="still-here")
        await b.wait_count(1)
        response = await post(client, hub, f"disconnect/{client_id(a)}")
        expect_error(response, 404, "not_found")
        response = await post(client, hub, f"disconnect/{client_id(b)}", headers=ALICE)
        expect_error(response, 403, "forbidden")
        response = await post(client, hub, f"disconnect/{client_id(b)}", headers=BOB)
        assert response.status_code == 200
        await b.closed.wait()


async def test_stats_and_clients_report_what_happened(hub, client) -> None:
    async with (
        connect(client, hub, ALICE) as a,
        connect(client, hub, BOB) as b,
        news(client, hub, ALICE) as s,
    ):
        await post(client, hub, "broadcast", data="all")
        await post(client, hub, f"send/{client_id(a)}", data="just-a")
        await publish(client, hub.url, "news", "n1", headers=ADMIN)
        await a.wait_count(2)
        await b.wait_count(1)
        await s.wait_count(1)
        response = await client.get(f"{hub.url}/api/v1/sse/stats", headers=ADMIN)
        assert response.status_code == 200, response.text
        stats = response.json()["statistics"]
        assert stats["active_connections"] == 3
        assert stats["total_connections"] == 3
        assert stats["total_messages"] == 4
        assert stats["total_bytes"] == len(a.raw) + len(b.raw) + len(s.raw)
        assert stats["channels"]["news"] == {"subscribers": 1, "publishes": 1}
        assert stats["channels"]["$broadcast"]["subscribers"] == 2
        assert stats["publishes"] == 1
        assert stats["reconnects"] == 0
        assert stats["slow_consumer_disconnects"] == 0
        assert stats["uptime_seconds"] > 0

        response = await client.get(f"{hub.url}/api/v1/sse/clients", headers=ADMIN)
        listed = {c["id"]: c for c in response.json()["clients"]}
        assert set(listed) == {client_id(a), client_id(b), client_id(s)}
        info = listed[client_id(a)]
        assert info["user_id"] == "alice"
        assert info["ip"] == "127.0.0.1"
        assert info["user_agent"] == "test-agent/1"
        assert info["message_count"] == 2
        assert info["bytes"] == len(a.raw)
        assert info["channels"] == ["$broadcast", f"$client:{client_id(a)}"]
        assert info["uptime_seconds"] >= 0
        assert listed[client_id(s)]["channels"] == ["news"]

        response = await client.get(f"{hub.url}/api/v1/sse/clients/{client_id(a)}", headers=ALICE)
        assert response.json()["message_count"] == 2
        response = await client.get(f"{hub.url}/api/v1/sse/clients/{client_id(a)}", headers=BOB)
        expect_error(response, 403, "forbidden")
        response = await client.get(f"{hub.url}/api/v1/sse/clients/nope", headers=ADMIN)
        expect_error(response, 404, "not_found")
        for path in ("stats", "clients"):
            response = await client.get(f"{hub.url}/api/v1/sse/{path}", headers=ALICE)
            expect_error(response, 403, "forbidden", "admin")
            response = await client.get(f"{hub.url}/api/v1/sse/{path}")
            expect_error(response, 401, "unauthorized")
    await wait_until(lambda: not hub.hub.connections)
    stats = (await client.get(f"{hub.url}/api/v1/sse/stats", headers=ADMIN)).json()["statistics"]
    assert stats["active_connections"] == 0
    assert stats["total_connections"] == 3
    assert stats["total_messages"] == 4

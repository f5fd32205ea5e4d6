"""Connection limits, rate limits, payload size and the idle-client timeout on a real server."""

from __future__ import annotations

import asyncio
import contextlib

from harness import open_stream, publish, running_hub, wait_until
from ssehub.settings import Settings
from tokens import SECRET, bearer, expect_error, hs256


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, jwt_secret=SECRET, **kw)  # type: ignore[call-arg]


def url(hub, channel: str = "room") -> str:  # type: ignore[no-untyped-def]
    return f"{hub.url}/api/v1/sse/stream/{channel}"


async def test_sixth_stream_of_a_user_is_429_until_one_closes(client) -> None:
    async with running_hub(settings()) as hub:
        alice = bearer(hs256("alice", subscribe=["*"]))
        bob = bearer(hs256("bob", subscribe=["*"]))
        async with contextlib.AsyncExitStack() as stack:
            readers = [
                await stack.enter_async_context(open_stream(client, url(hub), headers=alice))
                for _ in range(5)
            ]
            response = await client.get(url(hub), headers=alice)
            body = expect_error(response, 429, "too_many_connections", "already has 5 open streams")
            assert "alice" in body["error"]["message"]
            assert int(response.headers["retry-after"]) >= 1
            async with open_stream(client, url(hub), headers=bob) as other:
                assert other.events[0].event == "connected"
            cluster = hub.app.state.cluster
            await readers[0].aclose()
            await wait_until(lambda: _count(cluster, "alice", 4))
            async with open_stream(client, url(hub), headers=alice) as again:
                assert again.events[0].event == "connected"


async def _count(cluster, user: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    records = await cluster.list_clients()
    return sum(r["user_id"] == user for r in records) == n


async def test_global_limit_gives_503_with_retry_after(client) -> None:
    async with running_hub(Settings(_env_file=None, max_connections=2)) as hub:  # type: ignore[call-arg]
        async with open_stream(client, url(hub)), open_stream(client, url(hub)):
            response = await client.get(url(hub))
            expect_error(response, 503, "unavailable", "limit of 2 concurrent streams")
            assert int(response.headers["retry-after"]) >= 1
        await wait_until(lambda: not hub.app.state.hub.connections)
        async with open_stream(client, url(hub)) as reader:
            assert reader.events[0].event == "connected"


async def test_stream_rate_limit_per_user_triggers_and_recovers(client) -> None:
    async with running_hub(settings(stream_rate_per_user=2, stream_burst_per_user=2)) as hub:
        alice = bearer(hs256("alice", subscribe=["*"]))
        for _ in range(2):
            async with open_stream(client, url(hub), headers=alice):
                pass
        response = await client.get(url(hub), headers=alice)
        expect_error(response, 429, "rate_limited", "too many stream requests from this user")
        retry = int(response.headers["retry-after"])
        assert retry >= 1
        # another user is not affected
        async with open_stream(client, url(hub), headers=bearer(hs256("bob", subscribe=["*"]))):
            pass
        await asyncio.sleep(retry)  # the bucket refills at 2/s; Retry-After is the promise
        async with open_stream(client, url(hub), headers=alice) as reader:
            assert reader.events[0].event == "connected"


async def test_publish_rate_limit_per_ip_triggers_and_recovers(client) -> None:
    async with running_hub(settings(publish_rate_per_ip=4, publish_burst_per_ip=3)) as hub:
        admin = bearer(hs256("svc", admin=True))
        for i in range(3):
            await publish(client, hub.url, "room", i, headers=admin)
        response = await client.post(
            f"{hub.url}/api/v1/publish/room", json={"data": 3}, headers=admin
        )
        expect_error(response, 429, "rate_limited", "from this address")
        retry = int(response.headers["retry-after"])
        await asyncio.sleep(retry)
        await publish(client, hub.url, "room", 4, headers=admin)


async def test_behind_a_local_proxy_limits_count_the_forwarded_address(client) -> None:
    async with running_hub(settings(stream_rate_per_ip=0.01, stream_burst_per_ip=1)) as hub:
        reader = bearer(hs256("svc", subscribe=["*"], admin=True))
        first = {**reader, "X-Forwarded-For": "203.0.113.7"}
        async with open_stream(client, url(hub), headers=first):
            again = await client.get(url(hub), headers=first)
            expect_error(again, 429, "rate_limited", "from this address")
            other = {**reader, "X-Forwarded-For": "203.0.113.8"}  # another client, own bucket
            async with open_stream(client, url(hub), headers=other):
                listed = (await client.get(f"{hub.url}/api/v1/sse/clients", headers=reader)).json()
                assert sorted(c["ip"] for c in listed["clients"]) == ["203.0.113.7", "203.0.113.8"]


async def test_publish_rate_limit_per_user(client) -> None:
    async with running_hub(settings(publish_rate_per_user=1, publish_burst_per_user=2)) as hub:
        alice = bearer(hs256("alice", publish=["room"]))
        await publish(client, hub.url, "room", 1, headers=alice)
        await publish(client, hub.url, "room", 2, headers=alice)
        response = await client.post(
            f"{hub.url}/api/v1/publish/room", json={"data": 3}, headers=alice
        )
        expect_error(response, 429, "rate_limited", "from this user")
        assert response.headers["retry-after"] == "1"


async def test_payload_too_large_is_413(client) -> None:
    async with running_hub(settings(max_event_bytes=16)) as hub:
        admin = bearer(hs256("svc", admin=True))
        await publish(client, hub.url, "room", "x" * 16, headers=admin)
        response = await client.post(
            f"{hub.url}/api/v1/publish/room", json={"data": "x" * 17}, headers=admin
        )
        expect_error(response, 413, "payload_too_large", "exceeds 16 bytes")
        response = await client.post(
            f"{hub.url}/api/v1/sse/broadcast", json={"data": "x" * 17}, headers=admin
        )
        expect_error(response, 413, "payload_too_large", "exceeds 16 bytes")


async def test_idle_client_is_closed(client) -> None:
    quiet = Settings(_env_file=None, heartbeat_seconds=0, client_timeout_seconds=0.3)  # type: ignore[call-arg]
    async with running_hub(quiet) as hub, open_stream(client, url(hub)) as reader:
        await asyncio.wait_for(reader.closed.wait(), 5)
        await wait_until(lambda: hub.hub.stats.closed.get("idle_timeout") == 1)


async def test_client_that_receives_heartbeats_is_not_idle(client) -> None:
    beating = Settings(_env_file=None, heartbeat_seconds=0.05, client_timeout_seconds=0.3)  # type: ignore[call-arg]
    async with running_hub(beating) as hub, open_stream(client, url(hub)) as reader:
        # 15 heartbeats take ~0.75 s, well past the 0.3 s timeout
        await reader.wait_for(lambda r: r.raw.count(b": ping") >= 15, 10)
        assert not reader.closed.is_set()
        assert "idle_timeout" not in hub.hub.stats.closed

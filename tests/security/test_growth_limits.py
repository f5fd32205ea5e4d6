"""Every store a caller can fill is bounded: idempotency keys, tickets, conversations, answers,
batch publishes and callers whose token has no ``sub``.

Each test drives a real hub on loopback (or the real memory broker) past a limit and checks
the JSON refusal (429 with Retry-After) and that other callers are not affected.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import httpx

from chat_support import chat_hub, create_conversation
from harness import open_stream, running_hub
from limits_support import expect_rate_limited, jwt_settings, stream_status
from ssehub.brokers.memory import MemoryBroker
from ssehub.channels import Selector
from ssehub.event import make_event
from tokens import SECRET, bearer, expect_error, hs256

# -- idempotency cache -------------------------------------------------------------------------


async def test_idempotency_cache_keeps_no_event_data() -> None:
    """200 keyed 64 KiB publishes with a history of one event: the cache must not keep them."""
    broker = MemoryBroker(history_size=1)
    await broker.start(lambda event: None)
    try:
        payload = "x" * 65536
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            await broker.publish(make_event("big", None, payload + str(i)), idempotency_key=f"k{i}")
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert held < 2 * 1024 * 1024, f"the idempotency cache holds {held} bytes"  # was ~13 MB
        again = await broker.publish(make_event("big", None, "retry"), idempotency_key="k199")
        assert again.channel == "big" and again.seq == 200
    finally:
        await broker.close()


async def test_idempotency_keys_are_bounded_oldest_first() -> None:
    broker = MemoryBroker(idempotency_max_keys=3)
    await broker.start(lambda event: None)
    try:
        first = [
            await broker.publish(make_event("c", None, i), idempotency_key=f"k{i}")
            for i in range(4)
        ]
        # k3 evicted k0: a repeat of k0 is a new event, a repeat of k3 is still answered.
        assert (await broker.publish(make_event("c", None, 0), idempotency_key="k0")).seq == 5
        assert (await broker.publish(make_event("c", None, 3), idempotency_key="k3")).id == first[
            3
        ].id
        assert len(await broker.recent(Selector.of(["c"]), limit=10)) == 5
    finally:
        await broker.close()


async def test_idempotency_keys_are_scoped_to_publisher_and_channel(
    client: httpx.AsyncClient,
) -> None:
    alice = bearer(hs256("alice", publish=["shared", "shared2"], subscribe=["shared"]))
    bob = bearer(hs256("bob", publish=["shared"]))
    async with running_hub(jwt_settings()) as hub:
        url = f"{hub.url}/api/v1/publish"
        key = {"Idempotency-Key": "order-1"}
        a = await client.post(f"{url}/shared", json={"data": "a"}, headers={**alice, **key})
        b = await client.post(f"{url}/shared", json={"data": "b"}, headers={**bob, **key})
        a2 = await client.post(f"{url}/shared2", json={"data": "a2"}, headers={**alice, **key})
        again = await client.post(f"{url}/shared", json={"data": "a"}, headers={**alice, **key})
        assert a.status_code == b.status_code == a2.status_code == again.status_code == 200
        ids = [r.json()["id"] for r in (a, b, a2)]
        assert len(set(ids)) == 3, "bob's event was answered with alice's id and dropped"
        assert again.json()["id"] == ids[0]  # alice's own retry is still deduplicated
        kept = await client.get(f"{hub.url}/api/v1/channels/shared/events", headers=alice)
        assert [e["data"] for e in kept.json()["events"]] == ["a", "b"]


# -- tickets, conversations, concurrent answers -------------------------------------------------


async def test_ticket_creation_is_rate_limited_per_user(client: httpx.AsyncClient) -> None:
    settings = jwt_settings(ticket_rate_per_user=0.01, ticket_burst_per_user=3)
    alice = bearer(hs256("alice", subscribe=["user:alice:*"]))
    bob = bearer(hs256("bob", subscribe=["user:bob:*"]))
    async with running_hub(settings) as hub:
        url = f"{hub.url}/api/v1/sse/tickets"
        answers = [
            await client.post(url, json={"channels": ["user:alice:x"]}, headers=alice)
            for _ in range(5)
        ]
        assert [r.status_code for r in answers] == [201, 201, 201, 429, 429]
        expect_rate_limited(answers[3])
        other = await client.post(url, json={"channels": ["user:bob:x"]}, headers=bob)
        assert other.status_code == 201


async def test_conversation_creation_is_rate_limited_per_user(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    limits = {"conversation_rate_per_user": 0.01, "conversation_burst_per_user": 2}
    async with chat_hub(db, jwt_secret=SECRET, **limits) as hub:
        url = f"{hub.url}/api/v1/conversations"
        alice = bearer(hs256("alice"))
        answers = [await client.post(url, json={}, headers=alice) for _ in range(4)]
        assert [r.status_code for r in answers] == [201, 201, 429, 429]
        expect_rate_limited(answers[2])
        assert (await client.post(url, json={}, headers=bearer(hs256("bob")))).status_code == 201


async def test_concurrent_answers_are_capped_per_user(
    db: dict[str, Any], client: httpx.AsyncClient
) -> None:
    async with chat_hub(
        db, jwt_secret=SECRET, demo_pace_seconds=2.0, max_answers_per_user=2
    ) as hub:
        alice, bob = bearer(hs256("alice")), bearer(hs256("bob"))
        base = f"{hub.url}/api/v1/conversations"
        cids = [await create_conversation(client, hub.url, alice) for _ in range(3)]
        sent = [
            await client.post(f"{base}/{cid}/messages", json={"content": "hi"}, headers=alice)
            for cid in cids
        ]
        assert [r.status_code for r in sent] == [202, 202, 429]
        expect_rate_limited(sent[2], "too_many_answers")
        bob_cid = await create_conversation(client, hub.url, bob)
        ok = await client.post(f"{base}/{bob_cid}/messages", json={"content": "hi"}, headers=bob)
        assert ok.status_code == 202
        # Ending one answer gives its slot back.
        assert (await client.post(f"{base}/{cids[0]}/cancel", headers=alice)).status_code == 200
        retry = await client.post(
            f"{base}/{cids[2]}/messages", json={"content": "hi"}, headers=alice
        )
        assert retry.status_code == 202, retry.text
        for cid in cids[1:]:
            await client.post(f"{base}/{cid}/cancel", headers=alice)


# -- batch publish and rate limits --------------------------------------------------------------


async def test_batch_publish_charges_each_event(client: httpx.AsyncClient) -> None:
    settings = jwt_settings(publish_rate_per_user=1.0, publish_burst_per_user=20)
    alice = bearer(hs256("alice", publish=["batch:*"]))
    async with running_hub(settings) as hub:
        url = f"{hub.url}/api/v1/publish"
        batch = [{"channel": f"batch:{i % 3}", "data": i} for i in range(50)]
        first = await client.post(url, json=batch, headers=alice)
        assert first.status_code == 200 and len(first.json()["events"]) == 50
        # The 50 events left the bucket 30 in debt: nothing more passes for ~30 s.
        second = await client.post(url, json=batch, headers=alice)
        expect_rate_limited(second)
        assert int(second.headers["retry-after"]) >= 25
        single = await client.post(f"{url}/batch:0", json={"data": 1}, headers=alice)
        expect_rate_limited(single)


async def test_publish_bytes_are_rate_limited(client: httpx.AsyncClient) -> None:
    settings = jwt_settings(publish_bytes_rate_per_user=100.0, publish_bytes_burst_per_user=3000)
    alice = bearer(hs256("alice", publish=["bytes"]))
    async with running_hub(settings) as hub:
        url = f"{hub.url}/api/v1/publish/bytes"
        ok = await client.post(url, json={"data": "x" * 2500}, headers=alice)
        assert ok.status_code == 200
        expect_rate_limited(await client.post(url, json={"data": "x" * 2500}, headers=alice))
        assert (await client.post(url, json={"data": "x" * 100}, headers=alice)).status_code == 200


# -- tokens without sub --------------------------------------------------------------------------


async def test_tokens_without_sub_are_limited_per_address(client: httpx.AsyncClient) -> None:
    settings = jwt_settings(
        max_connections_per_ip=3, publish_rate_per_user=0.01, publish_burst_per_user=2
    )
    nosub = bearer(hs256(None, subscribe=["feed:*"], publish=["feed:*"]))
    other_nosub = bearer(hs256(None, subscribe=["feed:*"], publish=["feed:*"], jti="2"))
    async with running_hub(settings) as hub:
        url = f"{hub.url}/api/v1/sse/stream/feed:1"
        async with (
            open_stream(client, url, headers=nosub),
            open_stream(client, url, headers=nosub),
            open_stream(client, url, headers=other_nosub),
        ):
            fourth = await stream_status(client, url, headers=nosub)
            expect_error(fourth, 429, "too_many_connections", "address")
        publish = f"{hub.url}/api/v1/publish/feed:1"
        codes = [
            (await client.post(publish, json={"data": i}, headers=h)).status_code
            for i, h in enumerate([nosub, other_nosub, nosub])
        ]
        assert codes == [200, 200, 429]  # one bucket per address, whatever the token

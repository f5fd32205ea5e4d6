"""The ClusterState contract on memory and on Redis, and Redis leases outliving dead processes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from redis_support import RedisKeys
from ssehub.clusterstate import ClientRecord, MemoryClusterState
from ssehub.clusterstate.redis import RedisClusterState

StateFactory = Callable[..., Any]


@pytest.fixture(params=["memory", "redis"])
async def make_state(request: pytest.FixtureRequest) -> AsyncIterator[StateFactory]:
    """Build cluster states of one kind; Redis ones share a prefix, like processes of a hub."""
    keys = request.getfixturevalue("redis_keys") if request.param == "redis" else None
    made: list[Any] = []
    memory = MemoryClusterState()

    async def build(**options: Any) -> Any:
        state = RedisClusterState(keys.url, prefix=keys.prefix, **options) if keys else memory
        await state.start()
        made.append(state)
        return state

    yield build
    for state in made:
        await state.close()


async def take_token(state: Any, key: str, rate: float, burst: int, cost: int = 1) -> float:
    """One bucket's wait, taken alone."""
    return (await state.take_tokens([(key, rate, burst, cost)]))[0]  # type: ignore[no-any-return]


def record(client_id: str, user: str = "alice") -> ClientRecord:
    return {
        "client_id": client_id,
        "user_id": user,
        "ip": "127.0.0.1",
        "user_agent": "test",
        "channels": ["a"],
        "connected_at": time.time(),
        "node": "n1",
    }


async def test_a_ticket_works_once(make_state: StateFactory) -> None:
    one, two = await make_state(), await make_state()
    await one.put_ticket("t1", {"sub": "alice", "channels": ["a"]}, 5)
    assert await two.take_ticket("t1") == {"sub": "alice", "channels": ["a"]}
    assert await one.take_ticket("t1") is None
    await one.put_ticket("t2", {"x": 1}, 0.05)
    await asyncio.sleep(0.15)
    assert await two.take_ticket("t2") is None


async def test_slots_are_shared_and_freed(make_state: StateFactory) -> None:
    one, two = await make_state(), await make_state()
    assert await one.acquire_slot("user:a", "c1", 2)
    assert await two.acquire_slot("user:a", "c2", 2)
    assert await one.acquire_slot("user:a", "c1", 2)  # a holder already in counts once
    assert not await one.acquire_slot("user:a", "c3", 2)
    assert await one.acquire_slot("user:b", "c3", 2)
    await two.release_slot("user:a", "c2")
    assert await one.acquire_slot("user:a", "c3", 2)


async def test_token_bucket(make_state: StateFactory) -> None:
    state = await make_state()
    assert [await take_token(state, "k", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await take_token(state, "k", 2.0, 3)
    assert 0 < wait <= 0.5 + 1e-6
    await asyncio.sleep(wait + 0.05)
    assert await take_token(state, "k", 2.0, 3) == 0.0


async def test_token_bucket_charges_a_cost_and_lends_past_the_burst(
    make_state: StateFactory,
) -> None:
    state = await make_state()
    assert await take_token(state, "batch", 10.0, 20, 5) == 0.0  # 15 left
    assert await take_token(state, "batch", 10.0, 20, 50) > 0  # needs a full bucket first
    await asyncio.sleep(0.6)  # full again (20)
    assert await take_token(state, "batch", 10.0, 20, 50) == 0.0  # passes, 30 in debt
    wait = await take_token(state, "batch", 10.0, 20, 1)
    assert 1.0 < wait <= 3.1 + 1e-6  # the debt is paid back at 10/s before one more


async def test_several_buckets_are_taken_all_or_none(make_state: StateFactory) -> None:
    one, two = await make_state(), await make_state()
    assert await one.take_tokens([("n", 0.001, 2, 1), ("bytes", 0.001, 10, 8)]) == [0.0, 0.0]
    # The bytes bucket lacks 6: the count bucket is not charged either.
    short = await two.take_tokens([("n", 0.001, 2, 1), ("bytes", 0.001, 10, 8)])
    assert short[0] == 0.0 and short[1] > 0
    assert await one.take_tokens([("n", 0.001, 2, 1), ("bytes", 0.001, 10, 2)]) == [0.0, 0.0]
    assert (await two.take_tokens([("n", 0.001, 2, 1)]))[0] > 0  # both counted now


async def test_client_registry(make_state: StateFactory) -> None:
    one, two = await make_state(), await make_state()
    await one.register_client(record("c1"))
    await two.register_client(record("c2", "bob"))
    assert (await two.locate_client("c1"))["user_id"] == "alice"  # type: ignore[index]
    assert sorted(r["client_id"] for r in await one.list_clients()) == ["c1", "c2"]
    assert await one.active_connections() == 2
    await one.unregister_client("c1")
    assert await two.locate_client("c1") is None
    assert await two.active_connections() == 1


async def test_a_client_s_slots_and_record_come_and_go_independently(
    make_state: StateFactory,
) -> None:
    state = await make_state()
    assert await state.acquire_slot("global", "c1", 1)
    assert await state.acquire_slot("user:alice", "c1", 1)
    await state.register_client(record("c1"))
    await state.register_client(record("c1"))  # the same client again counts once
    assert await state.active_connections() == 1
    await state.release_slot("global", "c1")
    await state.release_slot("global", "c1")  # twice, or a scope never held: no-op
    await state.release_slot("user:bob", "c1")
    assert (await state.locate_client("c1"))["channels"] == ["a"]  # type: ignore[index]
    assert not await state.acquire_slot("user:alice", "c2", 1)  # c1 still holds it
    await state.unregister_client("c1")
    assert await state.locate_client("c1") is None
    assert not await state.acquire_slot("user:alice", "c2", 1)  # the slot outlives the record
    assert await state.acquire_slot("global", "c2", 1)  # given back above
    await state.release_slot("user:alice", "c1")
    assert await state.acquire_slot("user:alice", "c2", 1)
    assert await state.list_clients() == []


async def test_a_dead_process_leases_expire_and_keepalive_extends_them(
    redis_keys: RedisKeys,
) -> None:
    url, prefix = redis_keys.url, redis_keys.prefix
    alive = RedisClusterState(url, prefix=prefix, lease=0.6)
    dead = RedisClusterState(url, prefix=prefix, lease=0.6)
    await alive.start()
    await dead.start()
    try:
        for state, cid in ((alive, "a1"), (dead, "d1")):
            assert await state.acquire_slot("user:u", cid, 2)
            await state.register_client(record(cid, "u"))
        assert not await alive.acquire_slot("user:u", "a2", 2)
        for _ in range(4):
            await asyncio.sleep(0.25)
            await alive.keepalive(["a1"])  # the dead process stopped refreshing
        assert [r["client_id"] for r in await alive.list_clients()] == ["a1"]
        assert await alive.active_connections() == 1
        assert await alive.locate_client("d1") is None
        assert await alive.acquire_slot("user:u", "a2", 2)
        assert not await alive.acquire_slot("user:u", "a3", 2)
    finally:
        await alive.close()
        await dead.close()


async def test_keepalive_of_thousands_of_streams_renews_every_lease(redis_keys: RedisKeys) -> None:
    url, prefix = redis_keys.url, redis_keys.prefix
    state = RedisClusterState(url, prefix=prefix, lease=1.0)
    await state.start()
    ids = [f"c{n}" for n in range(2500)]  # several ZADD chunks and pipelines
    try:
        for n, cid in enumerate(ids):
            assert await state.acquire_slot("global", cid, 10_000)
            assert await state.acquire_slot(f"user:u{n % 3}", cid, 10_000)
            await state.register_client(record(cid, f"u{n % 3}"))
        renewed_at = time.time()
        await state.keepalive(ids)
        slots = [f"{state.prefix}slot:{s}" for s in ("global", "user:u0", "user:u1", "user:u2")]
        for key in [state._expiry, *slots]:
            scores = [score for _, score in await state.redis.zrange(key, 0, -1, withscores=True)]
            assert scores and min(scores) >= renewed_at + 0.9, key
        assert len(await state.redis.zrange(state._expiry, 0, -1)) == 2500
        assert await state.active_connections() == 2500
    finally:
        await state.close()


async def test_slots_of_a_killed_process_free_as_soon_as_its_heartbeat_stops(
    redis_keys: RedisKeys,
) -> None:
    url, prefix = redis_keys.url, redis_keys.prefix
    alive = RedisClusterState(url, prefix=prefix, node_ttl=0.4)
    killed = RedisClusterState(url, prefix=prefix, node_ttl=0.4)
    await alive.start()
    await killed.start()
    try:
        assert await killed.acquire_slot("user:k", "k1", 2)
        assert await killed.acquire_slot("user:k", "k2", 2)
        assert not await alive.acquire_slot("user:k", "a1", 2)
        assert killed._beat is not None
        killed._beat.cancel()  # like kill -9: no more heartbeats, nothing released
        async with asyncio.timeout(5):
            while not await alive.acquire_slot("user:k", "a1", 2):
                await asyncio.sleep(0.1)
        assert await alive.acquire_slot("user:k", "a2", 2)
        assert not await alive.acquire_slot("user:k", "a3", 2)
    finally:
        await alive.close()
        await killed.close()


async def test_memory_and_redis_buckets_answer_a_random_sequence_alike(
    redis_keys: RedisKeys,
) -> None:
    """The memory buckets (one 'full again at' time each) and the Redis ones (tokens and a
    stamp) take and refuse the same requests of a random sequence, with the same waits: several
    buckets at once, costs of 0 and above the burst (debts). Rates are slow enough that the
    test's own time refills far less than a token."""
    rng = random.Random(20261202)
    limits = {f"k{i}": (rng.choice([0.001, 0.002, 0.0005]), rng.randint(1, 60)) for i in range(8)}
    memory = MemoryClusterState()
    shared = RedisClusterState(redis_keys.url, prefix=redis_keys.prefix)
    await shared.start()
    started, taken = time.monotonic(), 0
    try:
        for step in range(400):
            keys = rng.sample(sorted(limits), rng.randint(1, 3))
            buckets = [(k, *limits[k], rng.choice([0, 1, 1, 1, 2, limits[k][1] + 2])) for k in keys]
            got = [await state.take_tokens(buckets) for state in (memory, shared)]
            taken += not any(got[0])
            elapsed = time.monotonic() - started
            assert [w > 0 for w in got[0]] == [w > 0 for w in got[1]], (step, buckets, got)
            for mine, theirs in zip(*got, strict=True):
                assert abs(mine - theirs) <= elapsed + 1e-6, (step, buckets, got)
        assert taken > 20
    finally:
        await shared.close()

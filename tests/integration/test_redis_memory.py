"""The Redis broker under Redis's own memory bound: a private redis-server with a small maxmemory.

With a ``volatile-*`` policy Redis evicts only keys with a TTL (streams, Idempotency-Keys); the
keys that define ids (epoch, seq, incarnation) and the marks that detect gaps have none, so ids
never go back and a resume over an evicted stream gets a reset, never a silent gap.
"""

from __future__ import annotations

import logging

import pytest
import redis

from redis_support import RedisServer
from ssehub.brokers import format_id
from ssehub.brokers.redis import RedisBroker
from ssehub.channels import Selector
from ssehub.event import make_event

pytestmark = pytest.mark.redis


async def test_maxmemory_with_a_volatile_policy_evicts_history_but_never_ids() -> None:
    server = RedisServer(options=["--maxmemory", "3mb", "--maxmemory-policy", "volatile-lru"])
    server.start()
    broker = RedisBroker(server.url, prefix="m:", max_channels=400)
    await broker.start(lambda event: None)
    try:
        start = await broker.head()
        ids = []
        for i in range(1500):  # 1500 events of 4 KB: well past 3 MB
            stored = await broker.publish(make_event(f"ch:{i}", "e", "x" * 4000))
            ids.append(stored.seq)
        direct = redis.Redis(port=server.port, decode_responses=True)
        assert int(direct.info("stats")["evicted_keys"]) > 0
        assert ids == list(range(1, 1501))
        assert direct.get("m:seq") == "1500"
        assert direct.get("m:epoch") == broker.epoch
        assert direct.hget("m:incarnation", "run") == direct.info("server")["run_id"]
        assert direct.zcard("m:channels") <= 400  # the broker's own channel bound
        # Every resume either gets its event or a reset: never a silent gap.
        outcomes = {"kept": 0, "reset": 0}
        for i in range(1000, 1500):
            resume = await broker.history(Selector.of([f"ch:{i}"]), format_id(broker.epoch, i))
            if resume.gap:
                outcomes["reset"] += 1
            else:
                assert [e.seq for e in resume.events] == [i + 1]
                outcomes["kept"] += 1
        assert outcomes["kept"] and outcomes["reset"], outcomes
        assert (await broker.history(Selector.of(["ch:*"]), start)).gap
    finally:
        await broker.close()
        server.stop(save=False)


async def test_an_allkeys_policy_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(options=["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
    server.start()
    broker = RedisBroker(server.url, prefix="w:")
    try:
        with caplog.at_level(logging.WARNING, logger="ssehub.redis"):
            await broker.start(lambda event: None)
        assert any("allkeys-lru" in r.getMessage() for r in caplog.records)
    finally:
        await broker.close()
        server.stop(save=False)

"""Chaos: Redis paused (SIGSTOP) for 5 s under two hub processes with steady publishing.

The Redis server is a private child of the test (never the machine's). Publishers retry with an
Idempotency-Key until accepted; subscribers on both hubs stay connected (or resume). Afterwards
every subscriber holds exactly the accepted events, in order, each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from harness import HubProcess, StreamReader, open_stream, running_hub, start_hub_process
from redis_support import RedisServer, unique_prefix
from ssehub.settings import Settings

pytestmark = pytest.mark.redis


def start_hubs(tmp_path: Path, env: dict[str, str], count: int) -> list[HubProcess]:
    with ThreadPoolExecutor(count) as pool:  # at once: start-up is mostly imports
        return list(pool.map(lambda _: start_hub_process(tmp_path, env), range(count)))


async def publish_until(
    client: httpx.AsyncClient,
    bases: list[str],
    stop: asyncio.Event,
    accepted: list[str],
    stalled: list[float],
) -> None:
    """Publish 0, 1, 2... alternating hubs every 20 ms; each retried until accepted.

    ``stalled`` gets the duration of every attempt that failed or took over a second.
    """
    n = 0
    while not stop.is_set():
        while True:
            base = bases[n % len(bases)]
            started = time.monotonic()
            with contextlib.suppress(httpx.TransportError):
                answer = await client.post(
                    f"{base}/api/v1/publish/chaos:x",
                    json={"data": n},
                    headers={"Idempotency-Key": f"chaos-{n}"},
                )
                took = time.monotonic() - started
                if answer.status_code == 200:
                    accepted.append(str(n))
                    if took > 1:
                        stalled.append(took)
                    break
                assert answer.status_code == 503, answer.text
            stalled.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
        n += 1
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_redis_paused_5s_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    assert server.process is not None
    env = {
        "SSEHUB_BROKER_URL": server.url,
        "SSEHUB_REDIS_PREFIX": unique_prefix(),
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_HEARTBEAT_SECONDS": "1",
        "SSEHUB_LOG_LEVEL": "warning",
    }
    hubs = await asyncio.to_thread(start_hubs, tmp_path, env, 2)
    paused = False
    try:
        timeout = httpx.Timeout(10, read=None)
        async with httpx.AsyncClient(timeout=timeout) as client, contextlib.AsyncExitStack() as st:
            readers: list[StreamReader] = [
                await st.enter_async_context(
                    open_stream(client, f"{hub.url}/api/v1/sse/stream/chaos:x")
                )
                for hub in hubs
                for _ in range(2)
            ]
            accepted: list[str] = []
            stalled: list[float] = []
            stop = asyncio.Event()
            publisher = asyncio.create_task(
                publish_until(client, [h.url for h in hubs], stop, accepted, stalled)
            )
            await asyncio.sleep(1)
            os.kill(server.process.pid, signal.SIGSTOP)
            paused = True
            paused_at = time.monotonic()
            await asyncio.sleep(5)
            os.kill(server.process.pid, signal.SIGCONT)
            paused = False
            await asyncio.sleep(1.5)
            stop.set()
            await publisher
            assert time.monotonic() - paused_at >= 5
            for reader in readers:
                await reader.wait_for(lambda r: len(r.data) >= len(accepted), timeout=30)
        assert len(accepted) >= 40
        assert stalled  # the pause was felt by the publisher (503s or slow answers)
        for reader in readers:
            assert reader.data == accepted  # exactly once, in order
            assert not reader.of_type("reset")
    finally:
        if paused:
            os.kill(server.process.pid, signal.SIGCONT)
        for hub in hubs:
            if hub.process.poll() is None:
                hub.kill()
        server.stop(save=False)


# -- Redis restarts under one hub: without its data, and from a stale snapshot ------------------


def redis_settings(server: RedisServer) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        broker_url=server.url,
        redis_prefix=unique_prefix(),
        open_access=True,
        heartbeat_seconds=1,
        log_level="warning",
    )


async def publish_retrying(client: httpx.AsyncClient, base: str, data: str) -> str:
    """Publish until accepted (503 while the hub's Redis comes back); the event's id."""
    async with asyncio.timeout(20):
        while True:
            answer = await client.post(f"{base}/api/v1/publish/chaos:r", json={"data": data})
            if answer.status_code == 200:
                return str(answer.json()["id"])
            assert answer.status_code == 503, answer.text
            await asyncio.sleep(0.05)


async def resume_after_restart(server: RedisServer, *, snapshot_after: int | None) -> None:
    """Publish 10 events (a snapshot after ``snapshot_after`` of them, when given), kill Redis,
    start it again (empty, or from that snapshot), publish 6 more; a client resuming from the
    10th gets ``reset`` and then exactly the 6 events accepted since."""
    server.start()
    try:
        async with (
            running_hub(redis_settings(server)) as hub,
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        ):
            stream = f"{hub.url}/api/v1/sse/stream/chaos:r"
            async with open_stream(client, stream) as live:
                for i in range(10):
                    await publish_retrying(client, hub.url, f"old{i}")
                    if i + 1 == snapshot_after:
                        redis.Redis(port=server.port).save()
                await live.wait_count(10)
                last = live.events[-1].id
                server.stop(save=False)  # killed: what it saved (if anything) comes back
                server.start()
                # The hub finds out and ends the stream, so its client resumes.
                async with asyncio.timeout(20):
                    await live.closed.wait()
            accepted = [await publish_retrying(client, hub.url, f"new{i}") for i in range(6)]
            async with open_stream(client, stream, headers={"Last-Event-ID": last}) as resumed:
                await resumed.wait_count(7)
                assert [e.event for e in resumed.events[1:]] == ["reset"] + ["message"] * 6
                assert [e.id for e in resumed.events[2:]] == accepted
                assert resumed.data[1:] == [f"new{i}" for i in range(6)]
    finally:
        server.stop(save=False)


async def test_redis_restarted_without_data_replays_the_new_epoch_after_reset() -> None:
    await resume_after_restart(RedisServer(), snapshot_after=None)


async def test_redis_restarted_from_a_stale_snapshot_is_a_new_epoch() -> None:
    await resume_after_restart(RedisServer(), snapshot_after=4)

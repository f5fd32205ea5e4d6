"""Graceful deploy: a rolling restart of two Redis-backed hubs behind nginx loses nothing.

Streams and publishes go through deploy/nginx.conf. Each hub in turn gets SIGTERM (its streams
end at once, new ones get 503 and nginx tries the other hub), exits 0 and is started again on
its port. Publishers retry with an Idempotency-Key; subscribers reconnect with Last-Event-ID.
Every subscriber must end with exactly the accepted events, in order, each once.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import free_port, start_hub_process
from nginx_support import requires_nginx, running_nginx
from redis_support import delete_prefix, shared_redis_url, unique_prefix
from ssehub.client import Backoff, SSEClient
from ssehub.parser import ServerSentEvent

pytestmark = [requires_nginx, pytest.mark.redis, pytest.mark.slow]

SUBSCRIBERS = 4


async def subscribe(url: str, got: list[ServerSentEvent], clients: list[SSEClient]) -> None:
    async with SSEClient(url, backoff=Backoff(initial=0.1, maximum=0.5)) as client:
        clients.append(client)
        async for event in client:
            if event.event != "connected":
                got.append(event)


async def publish_until(
    client: httpx.AsyncClient, front: str, stop: asyncio.Event, accepted: list[tuple[str, str]]
) -> None:
    """Publish 0, 1, 2... through nginx every 20 ms; each retried until accepted."""
    n = 0
    while not stop.is_set():
        key = f"deploy-{n}"
        while True:
            with contextlib.suppress(httpx.TransportError):
                answer = await client.post(
                    f"{front}/api/v1/publish/deploy:x",
                    json={"event": "step", "data": n},
                    headers={"Idempotency-Key": key},
                )
                if answer.status_code == 200:
                    accepted.append((answer.json()["id"], str(n)))
                    break
                assert answer.status_code in (502, 503, 504), answer.text
            await asyncio.sleep(0.05)
        n += 1
        await asyncio.sleep(0.02)


def test_rolling_restart_behind_nginx_loses_nothing(tmp_path: Path) -> None:
    url, prefix = shared_redis_url(), unique_prefix()
    env = {
        "SSEHUB_BROKER_URL": url,
        "SSEHUB_REDIS_PREFIX": prefix,
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_RETRY_MS": "100",
        "SSEHUB_HEARTBEAT_SECONDS": "1",
        "SSEHUB_SHUTDOWN_GRACE_SECONDS": "2",
        "SSEHUB_LOG_LEVEL": "warning",
    }
    ports = [free_port(), free_port()]
    with ThreadPoolExecutor(2) as pool:
        hubs = list(pool.map(lambda p: start_hub_process(tmp_path, env, port=p), ports))
    try:
        with running_nginx(tmp_path / "nginx", free_port(), ports) as front:
            clients: list[SSEClient] = []

            async def scenario() -> tuple[list[tuple[str, str]], list[list[ServerSentEvent]]]:
                received: list[list[ServerSentEvent]] = [[] for _ in range(SUBSCRIBERS)]
                stream = f"{front}/api/v1/sse/stream/deploy:x"
                readers = [asyncio.create_task(subscribe(stream, got, clients)) for got in received]
                accepted: list[tuple[str, str]] = []
                stop = asyncio.Event()
                async with httpx.AsyncClient(timeout=10) as client:
                    for _ in range(100):  # every subscriber connected before the first event
                        states = await client.get(f"{front}/api/v1/sse/stats")
                        if states.json()["statistics"]["active_connections"] >= SUBSCRIBERS:
                            break
                        await asyncio.sleep(0.1)
                    publisher = asyncio.create_task(publish_until(client, front, stop, accepted))
                    for index, port in enumerate(ports):
                        await asyncio.sleep(0.5)
                        code = await asyncio.to_thread(hubs[index].terminate)
                        assert code == 0, hubs[index].log()
                        hubs[index] = await asyncio.to_thread(
                            start_hub_process, tmp_path, env, port=port
                        )
                    await asyncio.sleep(0.5)
                    stop.set()
                    await publisher
                    async with asyncio.timeout(30):
                        while any(len(got) < len(accepted) for got in received):
                            await asyncio.sleep(0.05)
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
                return accepted, received

            accepted, received = asyncio.run(scenario())
        assert len(accepted) >= 20
        assert all(c.connections >= 2 for c in clients)  # each lived through its hub's restart
        for got in received:
            assert [(e.id, e.data) for e in got] == accepted  # exactly once, in order
            assert all(e.event == "step" for e in got)  # no `reset`
    finally:
        for hub in hubs:
            if hub.process.poll() is None:
                hub.terminate()
        delete_prefix(url, prefix)

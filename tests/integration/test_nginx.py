"""deploy/nginx.conf as shipped, run by Debian's nginx on loopback in front of two hub processes.

nginx runs as our own non-daemon child with its own prefix, config and port under tmp; a system
nginx is never touched. Each hub has its own memory broker, so events are published to both
hubs directly and every stream opened through nginx, whichever hub it landed on, must get each
event promptly (before the next is published: no buffering on the way).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import HubProcess, free_port, open_stream, start_hub_process
from nginx_support import nginx_config, requires_nginx, start_nginx

pytestmark = requires_nginx


async def active_streams(client: httpx.AsyncClient, hub: HubProcess) -> float:
    text = (await client.get(f"{hub.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith('ssehub_connections_active{family="through"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow
def test_streams_through_nginx_unbuffered_to_both_hubs(tmp_path: Path) -> None:
    env = {"SSEHUB_HEARTBEAT_SECONDS": "1"}
    with ThreadPoolExecutor(2) as pool:  # both start at once: startup is mostly imports
        hubs = list(pool.map(lambda _: start_hub_process(tmp_path, env), range(2)))
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    nginx = None
    try:
        nginx = start_nginx(prefix, nginx_config(prefix, port, [h.port for h in hubs]), port)
        front = f"http://127.0.0.1:{port}"

        async def scenario() -> None:
            timeout = httpx.Timeout(10, read=None)
            async with httpx.AsyncClient(timeout=timeout) as client:
                url = f"{front}/api/v1/sse/stream/through"
                async with (
                    open_stream(client, url) as s1,
                    open_stream(client, url) as s2,
                    open_stream(client, url) as s3,
                    open_stream(client, url) as s4,
                ):
                    streams = [s1, s2, s3, s4]
                    for s in streams:
                        assert s.response.headers["content-type"].startswith("text/event-stream")
                    counts = [await active_streams(client, hub) for hub in hubs]
                    assert sum(counts) == 4 and all(counts), counts  # both hubs behind nginx
                    for n in range(5):
                        for hub in hubs:
                            body = {"event": "tick", "data": n}
                            r = await client.post(f"{hub.url}/api/v1/publish/through", json=body)
                            assert r.status_code == 200
                        for s in streams:  # arrives before the next publish: not buffered
                            await s.wait_count(n + 1, timeout=5, event="tick")
                    for s in streams:
                        assert [e.data for e in s.of_type("tick")] == [str(n) for n in range(5)]
                        # heartbeats (1 s) also pass through nginx unbuffered
                        await s.wait_for(lambda r: b": ping" in r.raw, timeout=10)
                published = await client.post(
                    f"{front}/api/v1/publish/through",
                    json={"data": "via nginx"},
                    headers={"X-Request-ID": "through-nginx-1"},
                )
                assert published.status_code == 200 and published.json()["channel"] == "through"
                assert published.headers["x-request-id"] == "through-nginx-1"
                refused = await client.post(f"{front}/api/v1/publish/bad%20name", json={})
                assert refused.status_code == 400
                assert refused.json()["error"]["code"] == "invalid_channel"

        asyncio.run(scenario())
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(15)
        for hub in hubs:
            hub.terminate()


@requires_nginx
def test_streams_over_tls_terminated_by_nginx(tmp_path: Path) -> None:
    """deploy/nginx.conf ends TLS: an HTTPS client streams and publishes through it."""
    hub = start_hub_process(tmp_path)  # both upstream lines: one hub, so one event history
    prefix = tmp_path / "nginx-tls"
    prefix.mkdir()
    port, tls_port = free_port(), free_port()
    config = nginx_config(prefix, port, [hub.port, hub.port], tls_port=tls_port)
    nginx = start_nginx(prefix, config, port)
    base = f"https://127.0.0.1:{tls_port}"
    channel = f"tls-{time.monotonic_ns()}"
    try:
        trust = ssl.create_default_context(cafile=str(prefix / "fullchain.pem"))
        with (
            httpx.Client(verify=trust, timeout=10) as client,
            client.stream("GET", f"{base}/api/v1/sse/stream/{channel}") as stream,
        ):
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == ("event: connected")
            sent = client.post(f"{base}/api/v1/publish/{channel}", json={"data": {"n": 1}})
            assert sent.status_code == 200
            assert f"id: {sent.json()['id']}" in lines  # reads on until the event arrives
    finally:
        nginx.terminate()
        nginx.wait(15)
        hub.terminate()

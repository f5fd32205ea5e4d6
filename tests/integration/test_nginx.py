"""deploy/nginx.conf as shipped, run by Debian's nginx on loopback in front of two hub processes.

nginx runs as our own non-daemon child with its own prefix, config and port under tmp; a system
nginx is never touched. Each hub has its own memory broker, so events are published to both
hubs directly and every stream opened through nginx, whichever hub it landed on, must get each
event promptly (before the next is published: no buffering on the way).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import ROOT, HubProcess, free_port, open_stream, start_hub_process

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
pytestmark = pytest.mark.skipif(
    NGINX is None,
    reason="NGINX IS NOT INSTALLED: deploy/nginx.conf was NOT tested "
    "(`make test` installs Debian's nginx when run as root; else `apt-get install -y nginx`)",
)


def nginx_config(prefix: Path, port: int, hubs: list[HubProcess]) -> Path:
    """A main config for ``prefix`` that includes deploy/nginx.conf with our ports."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "127.0.0.1:8001" in site and "127.0.0.1:8002" in site and "listen 80;" in site
    site = site.replace("127.0.0.1:8001", f"127.0.0.1:{hubs[0].port}")
    site = site.replace("127.0.0.1:8002", f"127.0.0.1:{hubs[1].port}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (prefix / "ssehub.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
    include {prefix}/ssehub.conf;
}}
"""
    path = prefix / "nginx.conf"
    path.write_text(main)
    return path


def start_nginx(prefix: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    assert NGINX is not None
    args = [NGINX, "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    check = subprocess.run([*args, "-t"], capture_output=True, timeout=20)
    assert check.returncode == 0, check.stderr.decode()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError("nginx did not start")
        time.sleep(0.05)


async def active_streams(client: httpx.AsyncClient, hub: HubProcess) -> float:
    text = (await client.get(f"{hub.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith('ssehub_connections_active{family="through"}'):
            return float(line.split()[-1])
    return 0.0


def test_streams_through_nginx_unbuffered_to_both_hubs(tmp_path: Path) -> None:
    env = {"SSEHUB_HEARTBEAT_SECONDS": "1"}
    with ThreadPoolExecutor(2) as pool:  # both start at once: startup is mostly imports
        hubs = list(pool.map(lambda _: start_hub_process(tmp_path, env), range(2)))
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    nginx = None
    try:
        nginx = start_nginx(prefix, nginx_config(prefix, port, hubs), port)
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
                    await asyncio.sleep(1.5)  # heartbeats (1 s) also pass through
                    for s in streams:
                        assert [e.data for e in s.of_type("tick")] == [str(n) for n in range(5)]
                        assert b": ping" in s.raw
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

"""Attacks on a hub's edges, measured: worst /healthz latency during each one and RSS growth.

Each scenario starts a fresh ``ssehub serve`` (memory broker, open access) on 127.0.0.1, runs
one bounded attack while a prober asks /healthz every 50 ms, and prints one JSON line. With
``--src DIR`` the hub runs that source tree instead (e.g. an older checkout, for "before").

    python bench/edges.py --scenarios pattern,resume,body,batch,slow,header
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import psutil

HOSTILE = "user:u1:" + "*a" * 7 + "*b"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def hub(src: str | None, env: dict[str, str]) -> AsyncIterator[tuple[str, psutil.Process]]:
    port = free_port()
    full = {**os.environ, "SSEHUB_OPEN_ACCESS": "true", "SSEHUB_LOG_LEVEL": "warning", **env}
    if src:
        full["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measured part
        cmd, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        yield url, psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)


class Prober:
    """GET /healthz every 50 ms on a kept connection; the worst latency and peak RSS seen."""

    def __init__(self, url: str, process: psutil.Process) -> None:
        self.url, self.process = url, process
        self.worst = 0.0
        self.rss0 = process.memory_info().rss
        self.peak = self.rss0
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            while True:
                start = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(f"{self.url}/healthz")
                self.worst = max(self.worst, time.perf_counter() - start)
                with contextlib.suppress(psutil.Error):
                    self.peak = max(self.peak, self.process.memory_info().rss)
                await asyncio.sleep(0.05)

    def report(self, **extra: Any) -> dict[str, Any]:
        rss = self.process.memory_info().rss
        return {
            "worst_healthz_ms": round(self.worst * 1000, 1),
            "rss_peak_growth_mb": round((self.peak - self.rss0) / 2**20, 1),
            "rss_growth_mb": round((rss - self.rss0) / 2**20, 1),
            **extra,
        }


async def open_streams(client: httpx.AsyncClient, urls: list[str]) -> list[httpx.Response]:
    streams = []
    for url in urls:
        response = await client.send(client.build_request("GET", url), stream=True)
        streams.append(response)
    return streams


async def pattern(url: str, client: httpx.AsyncClient) -> dict[str, Any]:
    """Streams on the hostile pattern, then events on 60-character channels it nearly matches.

    Set ``SSEHUB_BROKER_URL=redis://...`` in the environment to run it on the Redis broker.
    """
    quoted = urllib.parse.quote(HOSTILE, safe="")
    urls = [f"{url}/api/v1/sse/stream/{quoted}"] * 3
    # A plain pattern too: on Redis, events reach the hub (and its matching) only when some
    # stream's pattern matched them there.
    streams = await open_streams(client, [*urls, f"{url}/api/v1/sse/stream/user:u1:*"])
    statuses = [s.status_code for s in streams]
    for i in range(3):
        channel = "user:u1:" + "a" * 51 + "cdefg"[i]
        await client.post(f"{url}/api/v1/publish/{channel}", json={"data": i})
    for s in streams:
        await s.aclose()
    return {"stream_status": statuses}


async def resume(url: str, client: httpx.AsyncClient) -> dict[str, Any]:
    """100k kept channels, then one resume over 100 patterns that all share one prefix."""
    first = None
    for start in range(0, 100_000, 1000):
        items = [{"channel": f"r:{i}:x", "data": 1} for i in range(start, start + 1000)]
        answer = (await client.post(f"{url}/api/v1/publish", json=items)).json()
        first = first or answer["events"][0]["id"]
    query = "&".join(f"channel=r:*:y{j}" for j in range(100))
    began = time.perf_counter()
    headers = {"Last-Event-ID": first}
    request = client.build_request("GET", f"{url}/api/v1/sse/stream?{query}", headers=headers)
    response = await client.send(request, stream=True)
    opened = time.perf_counter() - began
    head = b""
    async for chunk in response.aiter_raw():
        head += chunk
        if b"\n\n" in head:
            break
    await response.aclose()
    reset = b"event: reset" in head
    return {"resume_open_s": round(opened, 2), "status": response.status_code, "reset": reset}


async def body(url: str, client: httpx.AsyncClient) -> dict[str, Any]:
    """One 15 MB JSON publish body."""
    payload = b'{"data": "' + b"a" * 15_000_000 + b'"}'
    headers = {"content-type": "application/json"}
    answer = await client.post(f"{url}/api/v1/publish/big", content=payload, headers=headers)
    return {"status": answer.status_code}


async def batch(url: str, client: httpx.AsyncClient) -> dict[str, Any]:
    """A 15 MB batch (1000 events of 15 kB) to a channel with 200 streams."""
    streams = await open_streams(client, [f"{url}/api/v1/sse/stream/busy"] * 200)
    items = [{"channel": "busy", "data": "b" * 15_000} for _ in range(1000)]
    answer = await client.post(f"{url}/api/v1/publish", json=items)
    for s in streams:
        await s.aclose()
    return {"status": answer.status_code}


async def batch_fits(url: str, client: httpx.AsyncClient) -> dict[str, Any]:
    """A batch within the limits (1000 events of 900 B) to a channel with 200 streams, 5 times."""
    streams = await open_streams(client, [f"{url}/api/v1/sse/stream/busy"] * 200)
    items = [{"channel": "busy", "data": "b" * 900} for _ in range(1000)]
    statuses = [(await client.post(f"{url}/api/v1/publish", json=items)).status_code]
    for _ in range(4):
        statuses.append((await client.post(f"{url}/api/v1/publish", json=items)).status_code)
    for s in streams:
        await s.aclose()
    return {"statuses": statuses}


async def slow(url: str, client: httpx.AsyncClient) -> dict[str, Any]:
    """40 chunked bodies of (up to) 15 MB that never end, held 8 s (body timeout set to 5 s)."""
    parsed = urllib.parse.urlsplit(url)
    head = (
        b"POST /api/v1/sse/tickets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b" " * (1 << 20))
    pairs = [await asyncio.open_connection(parsed.hostname, parsed.port) for _ in range(40)]
    for _, writer in pairs:
        writer.write(head)
    for _ in range(15):
        for _, writer in pairs:
            with contextlib.suppress(ConnectionError):
                writer.write(chunk)
                await writer.drain()
    await asyncio.sleep(8)
    closed = 0
    for reader, writer in pairs:
        try:
            await asyncio.wait_for(reader.read(), 0.5)
            closed += 1
        except ConnectionError:
            closed += 1
        except TimeoutError:
            pass
        writer.close()
    return {"connections": 40, "closed_by_hub": closed}


async def header(url: str, client: httpx.AsyncClient) -> dict[str, Any]:
    """A 16 MB header, and 50 connections that send nothing (are they closed in 15 s?)."""
    parsed = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    status = b""
    with contextlib.suppress(ConnectionError):
        for _ in range(256):
            writer.write(b"a" * 65536)
            await writer.drain()
        writer.write(b"\r\n\r\n")
        await writer.drain()
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        status = (await asyncio.wait_for(reader.read(200), 20)).split(b"\r\n")[0]
    writer.close()
    idle = [await asyncio.open_connection(parsed.hostname, parsed.port) for _ in range(50)]
    closed = 0
    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(15):
            for idle_reader, _ in idle:
                with contextlib.suppress(ConnectionError):
                    await idle_reader.read()
                closed += 1
    for _, idle_writer in idle:
        idle_writer.close()
    return {"big_header_answer": status.decode(errors="replace"), "idle_closed_in_15s": closed}


SCENARIOS: dict[str, Callable[[str, httpx.AsyncClient], Awaitable[dict[str, Any]]]] = {
    "pattern": pattern,
    "resume": resume,
    "body": body,
    "batch": batch,
    "batch-fits": batch_fits,
    "slow": slow,
    "header": header,
}
ENV = {"slow": {"SSEHUB_BODY_TIMEOUT_SECONDS": "5"}}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--src", help="Source tree to run the hub from (PYTHONPATH).")
    parser.add_argument("--timeout", type=float, default=120.0, help="Bound of one scenario.")
    args = parser.parse_args()
    for name in args.scenarios.split(","):
        async with hub(args.src, ENV.get(name, {})) as (url, process):
            prober = Prober(url, process)
            prober.task = asyncio.create_task(prober.run())
            await asyncio.sleep(0.2)
            limits = httpx.Limits(max_connections=500)
            timeout = httpx.Timeout(args.timeout, read=args.timeout)
            async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
                began = time.perf_counter()
                try:
                    extra = await asyncio.wait_for(SCENARIOS[name](url, client), args.timeout)
                except (TimeoutError, httpx.HTTPError) as exc:
                    extra = {"error": repr(exc)}
                extra["attack_s"] = round(time.perf_counter() - began, 2)
            await asyncio.sleep(0.3)
            prober.task.cancel()
            print(json.dumps({"scenario": name, **prober.report(**extra)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

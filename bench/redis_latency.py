"""Publish-to-deliver latency across two hubs through Redis, and one process's publish rate.

    .venv/bin/python bench/redis_latency.py [--redis redis://127.0.0.1:6379/0] [--events 2000]

Starts two `ssehub serve` processes on one Redis (under a fresh key prefix), streams a channel
from hub A, publishes to it through hub B at a steady pace and reports the latency from just
before each POST to the event's arrival on A's stream (p50/p99). Then measures the publishes/s
that hub B answers with 200 under ``--concurrency`` closed-loop clients, and the raw rate of
``RedisBroker.publish`` in this process (no HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ssehub.brokers.redis import RedisBroker  # noqa: E402
from ssehub.event import make_event  # noqa: E402
from ssehub.parser import SSEDecoder  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_hub(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("hub did not start")
        time.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(a: str, b: str, events: int, rate: float) -> list[float]:
    """Milliseconds from POST on B to arrival on A's stream, one per event."""
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    done = asyncio.Event()
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client:

        async def read() -> None:
            decoder = SSEDecoder()
            async with client.stream("GET", f"{a}/api/v1/sse/stream/bench:lat") as response:
                async for chunk in response.aiter_raw():
                    now = time.perf_counter()
                    for event in decoder.feed(chunk):
                        if event.event == "connected":
                            ready.set()
                        elif event.data.startswith("L"):
                            got[event.data] = now
                    if len(got) >= events:
                        done.set()
                        return

        ready = asyncio.Event()
        reader = asyncio.create_task(read())
        await asyncio.wait_for(ready.wait(), 30)
        start = time.perf_counter()
        for i in range(events):
            key = f"L{i}"
            sent[key] = time.perf_counter()
            answer = await client.post(f"{b}/api/v1/publish/bench:lat", json={"data": key})
            answer.raise_for_status()
            pause = start + (i + 1) / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
        await asyncio.wait_for(done.wait(), 60)
        reader.cancel()
    return [(got[k] - sent[k]) * 1000 for k in sent]


async def http_rate(url: str, seconds: float, concurrency: int) -> float:
    """Publishes/s one hub answers with 200 under ``concurrency`` closed-loop keep-alive clients.

    A minimal raw HTTP/1.1 client, so the load generator is not the bottleneck (httpx is).
    """
    host, port = url.removeprefix("http://").split(":")
    body = b'{"data": "' + b"x" * 100 + b'"}'
    ok = 0
    stop = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection(host, int(port))
        request = (
            f"POST /api/v1/publish/bench:rate:{n % 8} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        while time.perf_counter() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            ok += head.startswith(b"HTTP/1.1 200")
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return ok / (time.perf_counter() - start)


async def broker_rate(url: str, prefix: str, seconds: float, concurrency: int) -> float:
    """Raw ``RedisBroker.publish`` calls/s from this one process."""
    broker = RedisBroker(url, prefix=prefix)
    await broker.start(lambda event: None)
    count = 0
    stop = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await broker.publish(make_event(f"bench:raw:{n % 8}", None, "x" * 100))
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - start
    await broker.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis", default=os.environ.get("SSEHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="Latency run: events/s.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Rate runs: duration.")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    prefix = f"ssehub-bench:{uuid.uuid4().hex[:8]}:"
    env = {
        "SSEHUB_BROKER_URL": args.redis,
        "SSEHUB_REDIS_PREFIX": prefix,
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_LOG_LEVEL": "warning",
    }
    hubs = [start_hub(env) for _ in range(2)]
    try:
        (_, a), (_, b) = hubs
        lat = asyncio.run(latency(a, b, args.events, args.rate))
        print(
            f"latency B->Redis->A over {len(lat)} events at {args.rate:g}/s: "
            f"p50 {statistics.median(lat):.2f} ms, p99 {percentile(lat, 0.99):.2f} ms, "
            f"max {max(lat):.2f} ms"
        )
        rate = asyncio.run(http_rate(b, args.seconds, args.concurrency))
        print(f"HTTP publish rate of one hub process: {rate:.0f}/s ({args.concurrency} clients)")
    finally:
        for process, _ in hubs:
            process.terminate()
            process.wait(20)
    raw = asyncio.run(broker_rate(args.redis, prefix, args.seconds, args.concurrency))
    print(f"RedisBroker.publish rate of one process (no HTTP): {raw:.0f}/s")
    client = redis.Redis.from_url(args.redis)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


if __name__ == "__main__":
    main()

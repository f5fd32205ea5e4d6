"""Accepted versus delivered events across a Redis restart: without its data, or from a stale
snapshot (RDB saved mid-run, then the server killed and started again from it).

One `ssehub serve` process on a private redis-server; a publisher posts numbered events every
10 ms (retrying 503s under one Idempotency-Key each); a client reads the stream and, when it
ends, reconnects with `Last-Event-ID` as a browser does. Reported: events accepted, events the
client got (each once), events lost, `reset`s seen.

    .venv/bin/python bench/redis_restart.py --mode stale
    .venv/bin/python bench/redis_restart.py --mode empty
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_latency import free_port, start_hub

from ssehub.parser import SSEDecoder


def start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=port).ping()
            return process
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)


async def read_forever(
    client: httpx.AsyncClient, url: str, got: list[str], resets: list[str]
) -> None:
    """Read the stream, reconnecting with the last id whenever it ends."""
    last = None
    while True:
        headers = {"Last-Event-ID": last} if last else {}
        with contextlib.suppress(httpx.HTTPError):
            async with client.stream("GET", url, headers=headers) as response:
                decoder = SSEDecoder()
                async for chunk in response.aiter_raw():
                    for event in decoder.feed(chunk):
                        if event.event == "reset":
                            resets.append(event.data)
                        elif event.event != "connected":
                            got.append(event.data)
                        if event.id:
                            last = event.id
        await asyncio.sleep(0.2)


async def publish(client: httpx.AsyncClient, url: str, n: int) -> None:
    key = uuid.uuid4().hex
    while True:
        with contextlib.suppress(httpx.HTTPError):
            answer = await client.post(url, json={"data": n}, headers={"Idempotency-Key": key})
            if answer.status_code == 200:
                return
        await asyncio.sleep(0.05)


async def run(mode: str, before: int, saved_at: int, after: int) -> None:
    port, workdir = free_port(), tempfile.mkdtemp()
    server = start_redis(port, workdir)
    env = {
        "SSEHUB_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_LOG_LEVEL": "warning",
    }
    hub, base = start_hub(env)
    accepted: list[str] = []
    got: list[str] = []
    resets: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
            reader = asyncio.create_task(
                read_forever(client, f"{base}/api/v1/sse/stream/probe", got, resets)
            )
            await asyncio.sleep(0.5)
            for n in range(before + after):
                if n == before:
                    server.kill()
                    server.wait()
                    server = start_redis(port, workdir)
                if mode == "stale" and n == saved_at:
                    redis.Redis(port=port).save()
                await publish(client, f"{base}/api/v1/publish/probe", n)
                accepted.append(str(n))
                await asyncio.sleep(0.01)
            await asyncio.sleep(3)
            reader.cancel()
    finally:
        hub.kill()
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    lost = [n for n in accepted if n not in set(got)]
    print(
        f"{mode}: accepted {len(accepted)}, delivered {len(set(got))} "
        f"(duplicates {len(got) - len(set(got))}), lost {len(lost)}, resets {len(resets)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["stale", "empty"], default="stale")
    parser.add_argument("--before", type=int, default=500, help="Events before the restart.")
    parser.add_argument("--saved-at", type=int, default=360, help="Events in the snapshot.")
    parser.add_argument("--after", type=int, default=136, help="Events after the restart.")
    args = parser.parse_args()
    asyncio.run(run(args.mode, args.before, args.saved_at, args.after))


if __name__ == "__main__":
    main()

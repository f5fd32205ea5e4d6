"""The Durable Streams scenario of ``bench/run.py``: ssehub against the Node reference server.

N live readers follow one text stream in the protocol's SSE mode (``offset=now&live=sse``);
appends carry ``B <append time> <seq>``, which the load generator turns into append-to-delivery
latency, loss and duplicates. Two phases: appends at a fixed rate (latency), then as many
appends as ``--ds-writers`` concurrent writers get acknowledged (appends per second, every one
delivered to every reader). ssehub stores on SQLite (fsync on commit); the reference server
keeps streams in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from fleet import Fleet

DS_NODE_DIR = Path(__file__).resolve().parent.parent / "tests" / "durable" / "js"
STREAM = "/ds/bench/live"
TEXT = {"Content-Type": "text/plain"}


def install_ds_node() -> None:
    """The pinned npm packages of the reference server (tests/durable/js), when missing."""
    if (DS_NODE_DIR / "node_modules" / "@durable-streams" / "server").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("the durable scenario needs node and npm (the reference server)")
    command = [npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error"]
    subprocess.run(command, cwd=DS_NODE_DIR, check=True, timeout=600)


class Appender:
    """Appends ``B <time> <seq>`` to the stream; counts acknowledged appends."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=64)
        )
        self.seq = itertools.count(1)
        self.acked = 0
        self.failed = 0

    async def append(self) -> None:
        body = f"B {time.time():.6f} {next(self.seq)}"
        response = await self.client.post(STREAM, headers=TEXT, content=body)
        if response.status_code in (200, 204):
            self.acked += 1
        else:
            self.failed += 1

    async def at_rate(self, rate: float, seconds: float) -> None:
        """One append every 1/rate seconds (sequential: the latency of an idle writer)."""
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.append()

    async def flat_out(self, writers: int, seconds: float) -> float:
        """``writers`` concurrent append loops for ``seconds``; returns the seconds taken."""
        start = time.perf_counter()
        ends = start + seconds

        async def loop() -> None:
            while time.perf_counter() < ends:
                await self.append()

        await asyncio.gather(*(loop() for _ in range(writers)))
        return time.perf_counter() - start

    async def close(self) -> None:
        await self.client.aclose()


async def durable(server: Any, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """N SSE readers of one stream: latency at a fixed append rate, then appends per second."""
    from run import drain, percentiles

    appender = Appender(server.url)
    created = await appender.client.put(STREAM, headers=TEXT)
    assert created.status_code in (200, 201), created.text
    path = f"{STREAM}?offset=now&live=sse"
    took = await fleet.open_many([(path, "ds")] * args.n)
    await asyncio.sleep(1.0)
    await fleet.reset_window()
    await appender.at_rate(args.ds_rate, args.seconds)
    owed = appender.acked * args.n
    counts = await drain(fleet, owed, 20)
    latency = percentiles(await fleet.latencies())
    loss = owed - counts["received"]
    await fleet.reset_window()
    before = appender.acked
    spent = await appender.flat_out(args.ds_writers, args.seconds)
    appended = appender.acked - before
    counts_flat = await drain(fleet, appended * args.n, 60)
    flat = percentiles(await fleet.latencies())
    await appender.close()
    return {
        "streams": (await fleet.counts())["open"],
        "connect_s": round(took, 2),
        "rate_per_s": args.ds_rate,
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "appends_per_s": round(appended / spent),
        "flat_p99_ms": flat["p99_ms"],
        # Concurrent writers' appends commit out of their sequence order, which the load
        # generator counts as duplicates: there, only the total delivered tells loss.
        "loss": loss + appended * args.n - counts_flat["received"] - counts_flat["duplicates"],
        "duplicates": counts["duplicates"],
        "failed_appends": appender.failed,
    }

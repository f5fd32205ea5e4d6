"""The benchmark publisher: batches of ``B <time.time()> <seq>`` events at a rate or closed-loop."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import httpx

MAX_BATCH = 1000


class Publisher:
    """Publishes benchmark events through a target's batch endpoint; counts them per channel."""

    def __init__(self, base_url: str, path: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.path = path
        self.seq: dict[str, int] = {}
        self.errors = 0

    def counts(self) -> dict[str, int]:
        """Events published so far per channel."""
        return dict(self.seq)

    async def send(self, channels: Sequence[str]) -> None:
        """One batch: the next event of each channel named (repeats allowed)."""
        items = []
        now = time.time()
        for channel in channels:
            seq = self.seq.get(channel, 0) + 1
            self.seq[channel] = seq
            items.append({"channel": channel, "data": f"B {now:.6f} {seq}"})
        response = await self.client.post(self.path, json=items)
        if response.status_code != 200:
            self.errors += 1

    async def at_rate(
        self, channels: Sequence[str], rate: float, seconds: float, tick: float = 0.01
    ) -> float:
        """Publish ``rate`` events/s spread round-robin over ``channels``; returns the real rate."""
        cycle = itertools.cycle(channels)
        start = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = min(int(rate * elapsed) + 1 - sent, MAX_BATCH)
            if due > 0:
                await self.send([next(cycle) for _ in range(due)])
                sent += due
            await asyncio.sleep(tick)
        return sent / max(time.perf_counter() - start, 1e-9)

    async def rounds(self, channels: Sequence[str], count: int, in_flight: int = 1) -> float:
        """Closed loop: ``count`` rounds of one event per channel; returns seconds taken."""
        start = time.perf_counter()
        sem = asyncio.Semaphore(in_flight)
        chunks = [channels[i : i + MAX_BATCH] for i in range(0, len(channels), MAX_BATCH)]

        async def one(chunk: Sequence[str]) -> None:
            try:
                await self.send(chunk)
            finally:
                sem.release()

        tasks = []
        for _ in range(count):
            for chunk in chunks:
                await sem.acquire()
                tasks.append(asyncio.create_task(one(chunk)))
        await asyncio.gather(*tasks)
        return time.perf_counter() - start

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

"""The load generator in K child processes (each a Swarm on its own uvloop), or in this one.

The benchmark process keeps only the publisher and the bookkeeping. Streams are dealt to the
children round-robin, each child with its own 127.0.0.x source addresses (every process has
its own file-descriptor limit, and ephemeral ports are per source address). Commands go over
a pipe; the parent waits for answers in a thread so its event loop keeps publishing.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import psutil
import uvloop
from loadgen import Swarm, raise_fd_limit


class Fleet:
    """K Swarm processes behaving as one load generator (see module doc)."""

    def __init__(self, host: str, port: int, *, procs: int = 1, sources: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        # procs=0: one Swarm in this process (one process fewer competing for the cores).
        self.local = Swarm(host, port, _addresses(0, sources)) if procs == 0 else None
        for index in range(procs):
            parent, child = context.Pipe()
            process = context.Process(
                target=_child_main,
                args=(child, host, port, _addresses(index, sources)),
                daemon=True,
            )
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        self.channels: Counter[str] = Counter()  # opened streams per channel
        self.failures = 0

    # -- the commands, sent to every child at once ---------------------------------------------

    async def _all(self, command: str, *args: Any) -> list[Any]:
        if self.local is not None:
            return [await _handle(self.local, command, args)]
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            pipe.send((command, args))
        return list(
            await asyncio.gather(*(loop.run_in_executor(None, pipe.recv) for pipe in self.pipes))
        )

    async def open_many(
        self, targets: Sequence[tuple[str, str]], *, concurrency: int = 500
    ) -> float:
        """Open one stream per ``(path, channel)``; returns seconds until all answered."""
        start = time.perf_counter()
        if self.local is not None:
            answers = [await _handle(self.local, "open", (targets, concurrency))]
        else:
            k = len(self.pipes)
            for index, pipe in enumerate(self.pipes):
                pipe.send(("open", (list(targets[index::k]), max(1, concurrency // k))))
            loop = asyncio.get_running_loop()
            answers = await asyncio.gather(
                *(loop.run_in_executor(None, pipe.recv) for pipe in self.pipes)
            )
        for failures, channels in answers:
            self.failures += failures
            self.channels.update(channels)
        return time.perf_counter() - start

    async def reopen_all(self) -> float:
        """Drop every stream at once and reconnect each with its Last-Event-ID."""
        return max(await self._all("reopen"))

    async def reset_window(self) -> None:
        """Start a new measurement window in every child."""
        await self._all("reset")

    async def counts(self) -> dict[str, Any]:
        """Summed counters: received, duplicates, open streams, last receive time..."""
        total: Counter[str] = Counter()
        last = 0.0
        for answer in await self._all("counts"):
            last = max(last, answer.pop("last_receive"))
            total.update(answer)
        return {**total, "last_receive": last}

    async def latencies(self) -> array:
        """Every latency sample (ms) of the window, from all children."""
        samples = array("f")
        for raw in await self._all("latencies"):
            samples.frombytes(raw)
        return samples

    async def behind(self, published: dict[str, int]) -> tuple[int, int]:
        """Streams not yet caught up with ``published`` and the events they still miss."""
        answers = await self._all("behind", published)
        return sum(a[0] for a in answers), sum(a[1] for a in answers)

    def expected(self, before: dict[str, int], after: dict[str, int]) -> int:
        """Deliveries owed to the opened streams for what was published between two counts."""
        return sum(n * (after.get(ch, 0) - before.get(ch, 0)) for ch, n in self.channels.items())

    def cpu(self) -> float:
        """CPU seconds used by the children so far (by this process, in local mode)."""
        if self.local is not None:
            times = os.times()
            return times.user + times.system
        total = 0.0
        for process in self.processes:
            times = psutil.Process(process.pid).cpu_times()
            total += times.user + times.system
        return total

    async def close(self) -> None:
        """Close every stream and stop the children."""
        await self._all("close")
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()


def _addresses(index: int, sources: int) -> list[str]:
    return [f"127.0.0.{index * sources + j + 1}" for j in range(sources)]


def _child_main(pipe: Connection, host: str, port: int, sources: list[str]) -> None:
    raise_fd_limit()
    gc.disable()
    uvloop.run(_serve(pipe, Swarm(host, port, sources)))


async def _serve(pipe: Connection, swarm: Swarm) -> None:
    """Answer the parent's commands until ``close``."""
    loop = asyncio.get_running_loop()
    while True:
        command, args = await loop.run_in_executor(None, pipe.recv)
        pipe.send(await _handle(swarm, command, args))
        if command == "close":
            return


async def _handle(swarm: Swarm, command: str, args: tuple[Any, ...]) -> Any:
    """Carry out one command on ``swarm``; the answer goes back to the Fleet."""
    totals = swarm.totals
    if command == "open":
        targets, concurrency = args
        failed, known = swarm.failures, len(swarm.streams)
        await swarm.open_many(targets, concurrency=concurrency)
        opened = Counter(s.channel for s in swarm.streams[known:])
        return swarm.failures - failed, opened
    if command == "reopen":
        return await swarm.reopen_all()
    if command == "reset":
        gc.collect()  # between windows: the collector is off while they are measured
        totals.reset_window()
        return None
    if command == "counts":
        return {
            "received": totals.received,
            "duplicates": totals.duplicates,
            "framing_errors": totals.framing_errors,
            "open": swarm.open_count(),
            "streams": len(swarm.streams),
            "last_receive": totals.last_receive,
        }
    if command == "latencies":
        return totals.latencies_ms.tobytes()
    if command == "behind":
        (published,) = args
        gaps = [max(0, published.get(s.channel, 0) - s.seen) for s in swarm.streams]
        return sum(1 for g in gaps if g), sum(gaps)
    if command == "close":
        await swarm.close_all()
        return None
    raise ValueError(f"unknown command {command}")

"""Where an idle stream's memory goes: tracemalloc in the hub, before and after N streams.

    python bench/mem_trace.py --n 2000 [--frames 8] [--top 25] [--src DIR]

Starts ssehub (the benchmark's settings) with tracemalloc on, opens a few warm-up streams,
takes a snapshot, opens N more over 100 channels, takes another and prints what the N streams
added per stream, grouped by the allocating line (and by traceback with ``--frames`` > 1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

WARM_UP = 200


def serve(port: int, frames: int, out: str) -> None:
    """The server side: ssehub with tracemalloc, a snapshot to ``out`` on each SIGUSR1."""
    tracemalloc.start(frames)
    taken = [0]

    def dump(signum: int, frame: object) -> None:
        taken[0] += 1
        tracemalloc.take_snapshot().dump(f"{out}.{taken[0]}")
        Path(f"{out}.{taken[0]}.done").touch()

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["ssehub", "serve", "--port", str(port)]
    runpy.run_module("ssehub.cli", run_name="__main__")


async def snapshot(process: subprocess.Popen[bytes], out: str, index: int) -> tracemalloc.Snapshot:
    process.send_signal(signal.SIGUSR1)
    done = Path(f"{out}.{index}.done")
    for _ in range(1200):
        if done.exists():  # noqa: ASYNC240 (a poll between sleeps)
            return tracemalloc.Snapshot.load(f"{out}.{index}")
        await asyncio.sleep(0.05)
    raise TimeoutError("no snapshot")


async def measure(args: argparse.Namespace) -> None:
    import httpx
    from loadgen import Swarm, raise_fd_limit
    from run import SSEHUB_ENV, free_port

    raise_fd_limit()
    port = free_port()
    out = tempfile.mktemp(prefix="ssehub-trace-")
    env = {**os.environ, **SSEHUB_ENV}
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve() / "src")  # noqa: ASYNC240
    command = [sys.executable, __file__, "--serve", str(port), "--frames", str(args.frames)]
    process = subprocess.Popen([*command, "--out", out], env=env, cwd=ROOT)  # noqa: ASYNC220
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        swarm = Swarm("127.0.0.1", port)
        paths = [(f"/api/v1/sse/stream/hold{i % 100}", f"hold{i % 100}") for i in range(args.n)]
        await swarm.open_many(paths[:WARM_UP])
        await asyncio.sleep(args.settle)  # background start-up work (lazy imports) ends
        before = await snapshot(process, out, 1)
        await swarm.open_many(paths[WARM_UP:] + paths[:WARM_UP])
        await asyncio.sleep(1.5)
        after = await snapshot(process, out, 2)
        held = swarm.open_count() - WARM_UP
        report(before, after, held, args)
    finally:
        process.terminate()
        process.wait(15)
        for path in Path(out).parent.glob(Path(out).name + "*"):
            path.unlink()


def report(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, held: int, args: argparse.Namespace
) -> None:
    key = "traceback" if args.frames > 1 else "lineno"
    stats = after.compare_to(before, key)
    total = sum(s.size_diff for s in stats)
    print(f"{held} streams: {total / held:.0f} B per stream traced (Python heap, not RSS)")
    for stat in stats[: args.top]:
        per = stat.size_diff / held
        if abs(per) < 2:
            continue
        count = stat.count_diff / held
        lines = stat.traceback.format(limit=args.frames, most_recent_first=True)
        where = "\n      ".join(line.strip() for line in lines if line.strip())
        print(f"{per:7.1f} B {count:5.2f} blocks  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--settle", type=float, default=8.0, help="Seconds before the first.")
    parser.add_argument("--src", default="", help="Trace the ssehub of DIR/src instead.")
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.frames, args.out)
        return
    started = time.perf_counter()
    asyncio.run(measure(args))
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()

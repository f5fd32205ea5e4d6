"""The hub's own CPU per broadcast, in-process: dispatch to N direct streams and their flush.

    python bench/fanout_cpu.py --n 10000 [--events 1] [--rounds 30] [--src DIR]

N Connections on one channel, each written by a ``DirectStream`` over a transport that only
counts its writes (no socket: the kernel's sends, which dominate a real broadcast, are left
out). Each round publishes ``--events`` events in one loop turn through ``Hub.dispatch`` and
lets the flush run; prints CPU µs per round and per stream. ``--src`` measures another checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any


class CountingTransport(asyncio.Transport):
    """A transport that accepts every write and counts it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        pass


class State:
    """The part of uvicorn's ServerState a DirectStream touches."""

    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.tasks: set[Any] = set()


async def measure(args: argparse.Namespace) -> dict[str, float]:
    from ssehub.app import settle_heap
    from ssehub.brokers.memory import MemoryBroker
    from ssehub.channels import Selector
    from ssehub.connection import Connection
    from ssehub.event import make_event
    from ssehub.fastpath import DirectStream
    from ssehub.hub import Hub
    from ssehub.metrics import Metrics

    metrics = Metrics()
    hub = Hub(MemoryBroker(), metrics=metrics, heartbeat_seconds=0)
    await hub.start()
    state = State()
    transports = []

    async def closer() -> None:
        pass

    for _ in range(args.n):
        conn = Connection(client_id=f"c{len(transports)}", selector=Selector.of(["bcast"]))
        await hub.open(conn, None)
        transport = CountingTransport()
        stream = DirectStream(transport, conn, closer, metrics, state)  # type: ignore[arg-type]
        conn.attach(stream)
        transports.append(transport)
    await asyncio.sleep(0)  # the opening frames
    settle_heap()  # the serving process's collector settings
    events = [
        [make_event("bcast", "tick", {"round": r, "i": i}) for i in range(args.events)]
        for r in range(args.rounds + 3)
    ]
    for batch in events[:3]:  # warm-up
        for event in batch:
            hub.dispatch(event)
        await asyncio.sleep(0)
    writes = sum(t.writes for t in transports)
    start = time.process_time()
    for batch in events[3:]:
        for event in batch:
            event.frame  # noqa: B018  (framed by the broker's publish in a real hub)
            hub.dispatch(event)
        await asyncio.sleep(0)
    took = time.process_time() - start
    writes = sum(t.writes for t in transports) - writes
    assert writes == args.n * args.rounds, (writes, args.n * args.rounds)
    return {
        "ms_per_round": round(took * 1000 / args.rounds, 2),
        "us_per_stream": round(took * 1e6 / args.rounds / args.n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1, help="Events per round (a burst).")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--src", default="", help="Measure the ssehub of DIR/src.")
    args = parser.parse_args()
    if args.src:
        sys.path.insert(0, str(Path(args.src).resolve() / "src"))
    import uvloop

    result = uvloop.run(measure(args))
    import ssehub

    print(f"{Path(ssehub.__file__).parent}: n={args.n} events={args.events} {result}")


if __name__ == "__main__":
    main()

"""Memory taken by history when one publisher writes one event to each of N new channels.

Memory broker: RSS growth of this process. Redis broker: growth of Redis ``used_memory`` (keys
under a fresh prefix, deleted afterwards). Both with the default settings of the tree it runs in.

    .venv/bin/python bench/history_growth.py --channels 300000
    .venv/bin/python bench/history_growth.py --channels 100000 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid

import redis

from ssehub.brokers import create_broker
from ssehub.event import make_event
from ssehub.settings import Settings


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def attack(channels: int, size: int, url: str | None) -> None:
    prefix = f"bench-growth:{uuid.uuid4().hex[:8]}:"
    values = {"broker_url": url or "memory://", "redis_prefix": prefix}
    broker = create_broker(Settings(_env_file=None, **values))  # type: ignore[call-arg]
    await broker.start(lambda event: None)
    direct = redis.Redis.from_url(url) if url else None
    used = (lambda: int(direct.info("memory")["used_memory"]) / 2**20) if direct else rss_mib
    gc.collect()
    before, started = used(), time.monotonic()
    payload = "x" * size
    for i in range(channels):
        await broker.publish(make_event(f"attack:{i}", "e", payload))
    took = time.monotonic() - started
    gc.collect()
    after = used()
    kind = "Redis used_memory" if direct else "RSS"
    print(
        f"{channels} channels, {size}-byte events in {took:.1f} s: {kind} +{after - before:.0f} MiB"
    )
    await broker.close()
    if direct is not None:
        keys = list(direct.scan_iter(match=prefix + "*", count=5000))
        for start in range(0, len(keys), 5000):
            direct.delete(*keys[start : start + 5000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, default=300_000)
    parser.add_argument("--bytes", type=int, default=100, help="Event data size.")
    parser.add_argument("--redis", default=None, help="Redis URL (default: memory broker).")
    args = parser.parse_args()
    asyncio.run(attack(args.channels, args.bytes, args.redis))


if __name__ == "__main__":
    main()

"""Redis round trips and commands per publish through ``Hub.publish``, on a private redis-server.

Publishes stage messages the way the SDK does (a ``run_id`` and an Idempotency-Key each), then
without a run id (raw HTTP publishes), then plain events, and reports per message: requests
this process sent to Redis (a pipeline or one EVALSHA is one round trip), commands Redis ran
(``INFO commandstats`` deltas, calls inside scripts included), this process's CPU time and
redis-server's (``INFO cpu``).
Run it against another checkout with ``PYTHONPATH=<dir>/src``.

    python bench/redis_round_trips.py [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any

import redis
from redis.asyncio.connection import AbstractConnection

import ssehub
from ssehub.backends import create_backends
from ssehub.event import make_event
from ssehub.hub import Hub
from ssehub.settings import Settings

SENT = [0]
_send = AbstractConnection.send_packed_command


async def counted_send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
    SENT[0] += 1
    await _send(self, command, check_health)


AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_cpu(client: redis.Redis) -> float:
    """CPU seconds redis-server used so far (its main thread and the rest)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def measure(hub: Hub, client: redis.Redis, label: str, events: list[Any]) -> dict[str, Any]:
    """Publish ``events`` (event, key) one after the other; per-message figures."""
    before_calls, before_sent = command_calls(client), SENT[0]
    server_cpu = redis_cpu(client)
    cpu = time.process_time()
    for event, key in events:
        await hub.publish(event, key=key)
    cpu = time.process_time() - cpu
    server_cpu = redis_cpu(client) - server_cpu
    sent = SENT[0] - before_sent - 2  # the two INFOs are not among them
    after = command_calls(client)
    n = len(events)
    deltas = {c: after[c] - before_calls.get(c, 0) for c in after}
    deltas["info"] -= 2
    top = {c: round(d / n, 2) for c, d in sorted(deltas.items(), key=lambda i: -i[1]) if d}
    return {
        "case": label,
        "round_trips": round(sent / n, 2),
        "commands": round(sum(deltas.values()) / n, 2),
        "cpu_us": round(cpu / n * 1e6, 1),
        "redis_cpu_us": round(server_cpu / n * 1e6, 1),
        "by_command": top,
    }


async def run_cases(url: str, client: redis.Redis, n: int) -> list[dict[str, Any]]:
    settings = Settings(_env_file=None, broker_url=url, redis_prefix="rt:")  # type: ignore[call-arg]
    backends = create_backends(settings)
    hub = Hub(backends.broker, heartbeat_seconds=0, runs=backends.runs)
    await hub.start()
    channel = "ai_story:project:p1:stage:answer"
    rid = uuid.uuid4().hex
    await hub.publish(make_event(channel, "stage_update", {"status": "running", "run_id": rid}))
    await hub.publish(make_event("warm:1", "m", "x"))
    text = "tok " * 16
    sdk = [
        (make_event(channel, "token", {"content": text, "run_id": rid}), uuid.uuid4().hex)
        for _ in range(n)
    ]
    bare = [(make_event(channel, "token", {"content": text}), None) for _ in range(n)]
    plain = [(make_event("orders:1", "m", {"n": i}), None) for i in range(n)]
    results = [
        await measure(hub, client, "stage, SDK (run_id + key)", sdk),
        await measure(hub, client, "stage, no run_id, no key", bare),
        await measure(hub, client, "plain event", plain),
    ]
    run = await backends.runs.get(channel)
    if run is None or len(run.full_text) != 2 * n * len(text):
        raise AssertionError("the run state lost tokens")
    await backends.runs.close()
    await hub.close()
    return results


def main(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp()
    port = free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, decode_responses=True)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        results = asyncio.run(run_cases(f"redis://127.0.0.1:{port}/0", client, args.n))
        print(json.dumps({"ssehub": ssehub.__file__, "n": args.n, "results": results}, indent=1))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="Messages per case.")
    main(parser.parse_args())

"""Probe a hub's limits at the edges: growth (RSS), accepted versus refused, credential scope.

Starts ``ssehub serve`` child processes on 127.0.0.1 (each probe its own hub, bounded in count
and time) and prints one JSON line per probe. Run it against another checkout by putting that
checkout's ``src`` first on ``PYTHONPATH`` (the child processes inherit it)::

    .venv/bin/python bench/edge_limits.py                 # this tree
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/edge_limits.py
    .venv/bin/python bench/edge_limits.py --only batch_speed
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
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

SECRET = "edge-limits-probe-secret-long-enough-for-hs256"


def token(sub: str | None, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    body: dict[str, Any] = {"iat": now, "exp": now + 600, **claims}
    if sub is not None:
        body["sub"] = sub
    return {"Authorization": "Bearer " + jwt.encode(body, SECRET, algorithm="HS256")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def spawn(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start ``ssehub serve`` on a free loopback port with ``env``: (process, url, log file)."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="edge-limits-"))
    full = {
        **os.environ,
        "SSEHUB_LOG_LEVEL": "warning",
        "SSEHUB_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/chat.db",
        **env,
    }
    log_path = workdir / "hub.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port)],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    return process, f"http://127.0.0.1:{port}", log_path


@contextlib.asynccontextmanager
async def hub(env: dict[str, str]) -> AsyncIterator[tuple[str, int]]:
    """A hub process with ``env`` until the block ends; yields (url, pid)."""
    process, url, log_path = spawn(env)
    try:
        async with httpx.AsyncClient() as c:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get(f"{url}/healthz", timeout=1)).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the hub did not start; see {log_path}")
                await asyncio.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


JWT = {"SSEHUB_JWT_SECRET": SECRET}
OPEN = {"SSEHUB_OPEN_ACCESS": "true"}


def client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), limits=limits)


async def statuses(
    calls: list[Callable[[], Awaitable[httpx.Response]]], width: int = 8
) -> dict[str, int]:
    """Run the calls ``width`` at a time; count answers by status."""
    counts: dict[str, int] = {}
    queue = list(calls)

    async def worker() -> None:
        while queue:
            response = await queue.pop()()
            counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1

    await asyncio.gather(*(worker() for _ in range(width)))
    return counts


async def probe_idempotency_rss() -> dict[str, Any]:
    """2,000 keyed 60 KB publishes to one channel keeping 1 event of history."""
    async with hub({**OPEN, "SSEHUB_HISTORY_SIZE": "1"}) as (url, pid), client() as c:
        before = rss_mib(pid)
        data = "x" * 60_000

        def call(i: int) -> Callable[[], Awaitable[httpx.Response]]:
            headers = {"Idempotency-Key": f"key-{i}"}
            return lambda: c.post(f"{url}/api/v1/publish/big", json={"data": data}, headers=headers)

        counts = await statuses([call(i) for i in range(2000)])
        return {"publishes": counts, "rss_growth_mib": round(rss_mib(pid) - before, 1)}


async def probe_idempotency_scope() -> dict[str, Any]:
    """50 keys each sent by alice then bob on the same channel: bob's events kept as his own?"""
    async with hub(JWT) as (url, _), client() as c:
        alice, bob = token("alice", publish=["shared"]), token("bob", publish=["shared"])
        own = 0
        for i in range(50):
            key = {"Idempotency-Key": f"k{i}"}
            a = await c.post(
                f"{url}/api/v1/publish/shared", json={"data": 1}, headers={**alice, **key}
            )
            b = await c.post(
                f"{url}/api/v1/publish/shared", json={"data": 2}, headers={**bob, **key}
            )
            own += a.json()["id"] != b.json()["id"]
        return {"bob_events_accepted_as_his_own": own, "of": 50}


async def probe_tickets() -> dict[str, Any]:
    """One user asks for tickets of 100 long channel names, 1,500 times."""
    async with hub(JWT) as (url, pid), client() as c:
        alice = token("alice", subscribe=["user:alice:*"])
        body = {"channels": [f"user:alice:{i:03d}-" + "n" * 180 for i in range(100)]}
        before = rss_mib(pid)
        calls = [lambda: c.post(f"{url}/api/v1/sse/tickets", json=body, headers=alice)] * 1500
        counts = await statuses(calls)
        return {"tickets": counts, "rss_growth_mib": round(rss_mib(pid) - before, 1)}


async def probe_conversations() -> dict[str, Any]:
    """One user creates 300 conversations as fast as it can."""
    async with hub(JWT) as (url, _), client() as c:
        alice = token("alice")
        calls = [lambda: c.post(f"{url}/api/v1/conversations", json={}, headers=alice)] * 300
        return {"conversations": await statuses(calls)}


async def probe_answers() -> dict[str, Any]:
    """One user starts an answer in each of 20 conversations at once (slow demo provider)."""
    env = {**JWT, "SSEHUB_DEMO_PACE_SECONDS": "0.5"}
    async with hub(env) as (url, _), client() as c:
        alice = token("alice")
        api = f"{url}/api/v1/conversations"
        cids = [(await c.post(api, json={}, headers=alice)).json()["id"] for _ in range(20)]
        calls = [
            (lambda cid=cid: c.post(f"{api}/{cid}/messages", json={"content": "hi"}, headers=alice))
            for cid in cids
        ]
        counts = await statuses(calls, width=20)
        for cid in cids:
            await c.post(f"{api}/{cid}/cancel", headers=alice)
        return {"answers_started": counts}


async def probe_batch_rate() -> dict[str, Any]:
    """One user (limit 100/s, burst 500) sends batches of 1,000 events for 5 s."""
    async with hub(JWT) as (url, _), client() as c:
        alice = token("alice", publish=["b:*"])
        batch = [{"channel": f"b:{i % 10}", "data": i} for i in range(1000)]
        accepted = refused = 0
        end = time.monotonic() + 5
        while time.monotonic() < end:
            response = await c.post(f"{url}/api/v1/publish", json=batch, headers=alice)
            if response.status_code == 200:
                accepted += len(response.json()["events"])
            else:
                refused += 1
        return {"events_accepted_in_5s": accepted, "batches_refused": refused}


async def probe_nosub_streams() -> dict[str, Any]:
    """30 streams opened with one token without `sub` (per-user limit 5, per address 20)."""
    async with hub(JWT) as (url, _), client() as c:
        nosub = token(None, subscribe=["feed:*"])
        opened, counts = [], {}
        for _ in range(30):
            request = c.build_request("GET", f"{url}/api/v1/sse/stream/feed:1", headers=nosub)
            response = await c.send(request, stream=True)
            counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1
            opened.append(response)
        for response in opened:
            await response.aclose()
        return {"streams": counts}


async def probe_anonymous_projects() -> dict[str, Any]:
    """With JWT on: project id `*`, then 40 anonymous project streams from one address."""
    async with hub(JWT) as (url, _), client() as c:
        star = await c.send(c.build_request("GET", f"{url}/api/v1/sse/projects/*/"), stream=True)
        star_status = star.status_code
        await star.aclose()
        opened, counts = [], {}
        for i in range(40):
            request = c.build_request("GET", f"{url}/api/v1/sse/projects/{i}/")
            response = await c.send(request, stream=True)
            counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1
            opened.append(response)
        for response in opened:
            await response.aclose()
        return {"project_star": star_status, "anonymous_streams": counts}


async def probe_credentials() -> dict[str, Any]:
    """A stream ticket on the conversation API, chat without sub, retry 10^30, exp 10^30."""
    async with (
        hub({**JWT, "SSEHUB_ANONYMOUS_SUBSCRIBE": '["public:*"]'}) as (url, _),
        client() as c,
    ):
        alice = token("alice", subscribe=["user:alice:*"], publish=["p"])
        tickets = f"{url}/api/v1/sse/tickets"
        ticket = (await c.post(tickets, json={"channels": ["user:alice:x"]}, headers=alice)).json()
        listed = await c.get(f"{url}/api/v1/conversations", params={"ticket": ticket["ticket"]})
        nosub = await c.post(f"{url}/api/v1/conversations", json={}, headers=token(None))
        retry = await c.post(f"{url}/api/v1/publish/p", json={"retry": 10**30}, headers=alice)
        forever = {"Authorization": "Bearer " + jwt.encode({"sub": "a", "exp": 10**30}, SECRET)}
        exp = await c.get(f"{url}/api/v1/channels/p/events", headers=forever)
        return {
            "ticket_lists_conversations": listed.status_code,
            "token_without_sub_creates_conversation": nosub.status_code,
            "publish_retry_1e30": retry.status_code,
            "token_exp_1e30": exp.status_code,
        }


async def probe_chat_post_streams() -> dict[str, Any]:
    """One user (limit 5 streams) opens 10 answers on POST responses; stats and gauge."""
    env = {**JWT, "SSEHUB_DEMO_PACE_SECONDS": "0.2", "SSEHUB_MAX_ANSWERS_PER_USER": "20"}
    async with hub(env) as (url, _), client() as c:
        alice, admin = token("alice"), token("root", admin=True)
        api = f"{url}/api/v1/conversations"
        cids = [(await c.post(api, json={}, headers=alice)).json()["id"] for _ in range(10)]
        opened, counts = [], {}
        for cid in cids:
            request = c.build_request(
                "POST", f"{api}/{cid}/messages/stream", json={"content": "hi"}, headers=alice
            )
            response = await c.send(request, stream=True)
            counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1
            opened.append(response)
        stats = (await c.get(f"{url}/api/v1/sse/stats", headers=admin)).json()["statistics"]
        for response in opened:
            if response.status_code == 200:
                async for _ in response.aiter_raw():
                    pass
            await response.aclose()
        await asyncio.sleep(0.5)
        text = (await c.get(f"{url}/metrics")).text
        gauge = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("ssehub_connections_active{")
        )
        return {
            "post_streams": counts,
            "stats_active_connections_while_open": stats["active_connections"],
            "active_gauge_after_all_ended": gauge,
        }


async def probe_batch_speed() -> dict[str, Any]:
    """Publish time of 200 batches of 1,000 small events as a user whose limits never bite."""
    env = {
        **JWT,
        "SSEHUB_PUBLISH_RATE_PER_USER": "1e9",
        "SSEHUB_PUBLISH_BURST_PER_USER": "1000000000",
        "SSEHUB_HISTORY_SIZE": "100",
    }
    async with hub(env) as (url, _), client() as c:
        alice = token("alice", publish=["s:*"])
        batch = [{"channel": f"s:{i % 10}", "data": {"n": i}} for i in range(1000)]
        for _ in range(10):  # warm up
            await c.post(f"{url}/api/v1/publish", json=batch, headers=alice)
        times = []
        for _ in range(200):
            started = time.perf_counter()
            response = await c.post(f"{url}/api/v1/publish", json=batch, headers=alice)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        times.sort()
        return {
            "batch_ms_median": round(times[len(times) // 2] * 1000, 1),
            "batch_ms_p90": round(times[int(len(times) * 0.9)] * 1000, 1),
            "events_per_s": round(1000 / times[len(times) // 2]),
        }


PROBES = {name[len("probe_") :]: fn for name, fn in globals().items() if name.startswith("probe_")}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(PROBES))
    args = parser.parse_args()
    for name in args.only or PROBES:
        result = await asyncio.wait_for(PROBES[name](), 180)
        print(json.dumps({"probe": name, **result}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

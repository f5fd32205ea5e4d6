"""Run the benchmark scenarios against ssehub and the seed-000 peer, side by side, on loopback.

Every server is a fresh child process per scenario (uvloop + httptools, access log off). The
load generator runs in ``--loadgen-procs`` child processes (fleet.py), the publisher in this
process on uvloop. Each scenario prints one JSON line per target and a Markdown table at the
end; ``--save`` writes ``bench/results/<date>.*``.

    python bench/run.py --n 1000 --scenarios hold,broadcast --targets ssehub,peer
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import gc
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import Fleet
from loadgen import raise_fd_limit
from publisher import Publisher

from durable import DS_NODE_DIR, durable, install_ds_node

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Target:
    """How to start one server and where its stream and batch-publish endpoints are."""

    name: str
    command: Callable[[int], list[str]]
    env: dict[str, str]
    stream_path: Callable[[str], str]
    publish_path: str


# No auth and no admission limits: the benchmark measures the stream path, not the gate.
SSEHUB_ENV = {
    "SSEHUB_LOG_LEVEL": "warning",
    "SSEHUB_OPEN_ACCESS": "true",
    "SSEHUB_MAX_CONNECTIONS": "1000000",
    "SSEHUB_MAX_CONNECTIONS_PER_USER": "1000000",
    "SSEHUB_STREAM_RATE_PER_USER": "0",
    "SSEHUB_STREAM_RATE_PER_IP": "0",
    "SSEHUB_PUBLISH_RATE_PER_USER": "0",
    "SSEHUB_PUBLISH_RATE_PER_IP": "0",
}


REDIS_ENV = {
    "SSEHUB_BROKER_URL": os.environ.get("SSEHUB_BENCH_REDIS", "redis://127.0.0.1:6379/0"),
    "SSEHUB_REDIS_PREFIX": f"ssehub-bench-{os.getpid()}:",
}


def ssehub_target(name: str, *args: str, **env: str) -> Target:
    return Target(
        name=name,
        command=lambda port: [
            *(sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port), *args)
        ],
        env={**SSEHUB_ENV, **env},
        stream_path=lambda ch: f"/api/v1/sse/stream/{ch}",
        publish_path="/api/v1/publish",
    )


TARGETS = {
    "ssehub": ssehub_target("ssehub"),
    # Durable Streams: ssehub on its embedded store (SQLite) and the Node reference server.
    "ssehub-ds": ssehub_target(
        "ssehub-ds",
        SSEHUB_DATABASE_URL=f"sqlite+aiosqlite:///{RESULTS}/.ds-{os.getpid()}.db",
        SSEHUB_DS_SSE_SECONDS="600",  # no reconnects within a run (the peer never closes)
    ),
    "ds-node": Target(
        name="ds-node",
        command=lambda port: ["node", str(DS_NODE_DIR / "reference_server.mjs"), str(port)],
        env={},
        stream_path=lambda ch: f"/ds/{ch}",
        publish_path="",
    ),
    "ssehub-asgi": ssehub_target("ssehub-asgi", SSEHUB_FAST_STREAMS="false"),
    # Scenario 6: one and two hub processes (one port) behind the Redis broker (machine Redis).
    "ssehub-redis1": ssehub_target("ssehub-redis1", **REDIS_ENV),
    "ssehub-redis2": ssehub_target("ssehub-redis2", "--workers", "2", **REDIS_ENV),
    # The stream floor: a bare uvloop Protocol, what any Python SSE server pays at least.
    "protocol-floor": Target(
        name="protocol-floor",
        command=lambda port: [
            sys.executable,
            str(ROOT / "bench" / "peers" / "protocol_floor.py"),
            str(port),
        ],
        env={},
        stream_path=lambda ch: f"/sse/{ch}",
        publish_path="/publish",
    ),
    "peer": Target(
        name="peer",
        command=lambda port: [
            *(sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench" / "peers")),
            *("seed000:app", "--host", HOST, "--port", str(port)),
            *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
            *("--log-level", "warning"),
        ],
        env={},
        stream_path=lambda ch: f"/sse/{ch}",
        publish_path="/publish",
    ),
}


def at_source(target: Target, src: str) -> Target:
    """``target`` running the ssehub code of checkout ``src`` (``<name>@base``)."""
    env = {**target.env, "PYTHONPATH": str(Path(src).resolve() / "src")}
    return dataclasses.replace(target, name=f"{target.name}@base", env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server process and its resource counters."""

    target: Target
    port: int
    process: subprocess.Popen[bytes]
    ps: psutil.Process

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def processes(self) -> list[psutil.Process]:
        """The server and its worker processes (``--workers``)."""
        with contextlib.suppress(psutil.Error):
            return [self.ps, *self.ps.children(recursive=True)]
        return [self.ps]

    def rss(self) -> int:
        return sum(int(p.memory_info().rss) for p in self.processes())

    def cpu(self) -> float:
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """User and system CPU seconds of all its processes."""
        times = [p.cpu_times() for p in self.processes()]
        return sum(float(t.user) for t in times), sum(float(t.system) for t in times)

    def on_cpu_ns(self) -> int:
        """Nanoseconds its threads ran (Linux schedstat): exact, where the user/system split
        is sampled at the clock tick (10 ms)."""
        total = 0
        for process in self.processes():
            for task in Path(f"/proc/{process.pid}/task").glob("*"):
                with contextlib.suppress(OSError):
                    total += int((task / "schedstat").read_text().split()[0])
        return total


@contextlib.asynccontextmanager
async def serve(target: Target) -> AsyncIterator[Server]:
    """Start ``target`` on a free port, wait for /healthz (20 s at most), stop it afterwards."""
    port = free_port()
    log = open(RESULTS / f".{target.name}-{port}.log", "wb")  # noqa: SIM115, ASYNC230
    process = subprocess.Popen(  # noqa: ASYNC220 (started once per scenario, returns at once)
        target.command(port),
        env={**os.environ, **target.env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(target, port, process, psutil.Process(process.pid))
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                if process.poll() is not None:
                    raise RuntimeError(f"{target.name} exited: {process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{server.url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError(f"{target.name} did not start")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def percentiles(samples: Any) -> dict[str, float]:
    """p50/p99/max of latency samples in ms (0 when there are none)."""
    if not samples:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(samples)
    last = len(ordered) - 1
    return {
        "p50_ms": round(ordered[last // 2], 1),
        "p99_ms": round(ordered[min(last, int(last * 0.99))], 1),
        "max_ms": round(ordered[last], 1),
    }


async def drain(fleet: Fleet, want: int, timeout: float) -> dict[str, Any]:
    """Wait (bounded) until ``want`` events arrived or nothing came for a while; the counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await fleet.counts()
        quiet = counts["last_receive"] and time.time() - counts["last_receive"] > 2.0
        if counts["received"] >= want or quiet or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.05)


def busy_percent(before: Any, after: Any) -> float:
    """How busy all cores were between two ``psutil.cpu_times()`` (every process, the kernel)."""
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return round(100 * (1 - idle / total), 1) if total > 0 else 0.0


def spread(n: int, channels: int, target: Target, prefix: str) -> list[tuple[str, str]]:
    names = [f"{prefix}{i % channels}" for i in range(n)]
    return [(target.stream_path(name), name) for name in names]


# -- scenarios -----------------------------------------------------------------------------------


async def settled(server: Server, args: argparse.Namespace) -> None:
    """Return ``--settle`` seconds after the server started (at least 0.5 s from now).

    Start-up work done once in a server's first seconds is neither memory per stream nor CPU
    per broadcast: ssehub's chat reaper migrates its SQLite store ~6 s after start (~10 MB,
    1 KB per stream at 10k, and tens of ms of CPU).
    """
    up = time.time() - server.ps.create_time()
    await asyncio.sleep(max(0.5, args.settle - up))


async def hold(server: Server, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """N idle streams over 100 channels: connect time, failures and server memory per stream."""
    await settled(server, args)
    base = server.rss()
    took = await fleet.open_many(spread(args.n, 100, server.target, "hold"))
    await asyncio.sleep(1.5)
    held = (await fleet.counts())["open"]
    rss = server.rss()
    return {
        "streams": held,
        "failures": args.n - held,
        "connect_s": round(took, 2),
        "connects_per_s": round(args.n / took),
        "rss_base_mb": round(base / 2**20, 1),
        "rss_mb": round(rss / 2**20, 1),
        "kb_per_stream": round((rss - base) / 1024 / max(held, 1), 2),
    }


async def broadcast(server: Server, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """One channel, N subscribers: single broadcasts, then a fixed event rate."""
    target = server.target
    await fleet.open_many([(target.stream_path("bcast"), "bcast")] * args.n)
    streams = fleet.channels["bcast"]
    pub = Publisher(server.url, target.publish_path)
    await settled(server, args)
    await fleet.reset_window()
    user, system = server.cpu_split()
    on_cpu = server.on_cpu_ns()
    for _ in range(5):
        await pub.send(["bcast"])
        await asyncio.sleep(0.5)
    counts = await drain(fleet, 5 * streams, 10)
    # Server CPU per broadcast, in its own code (user) and in the kernel's sends (system):
    # steadier than latency on a shared machine.
    user_after, system_after = server.cpu_split()
    single_user_ms = (user_after - user) * 1000 / 5
    single_system_ms = (system_after - system) * 1000 / 5
    single_cpu_ms = (server.on_cpu_ns() - on_cpu) / 1e6 / 5
    single = percentiles(await fleet.latencies())
    single_loss = 5 * streams - counts["received"]
    rate = args.broadcast_rate or max(1, 20_000 // args.n)
    await fleet.reset_window()
    before = pub.counts()
    start = time.perf_counter()
    real = await pub.at_rate(["bcast"], rate, args.seconds)
    owed = fleet.expected(before, pub.counts())
    counts = await drain(fleet, owed, 15)
    took = time.perf_counter() - start
    await pub.close()
    return {
        "streams": streams,
        "single_p99_ms": single["p99_ms"],
        "single_max_ms": single["max_ms"],
        "single_loss": single_loss,
        "single_user_ms": round(single_user_ms, 1),
        "single_system_ms": round(single_system_ms, 1),
        "single_cpu_ms": round(single_cpu_ms, 1),
        "events_per_s": round(real, 1),
        "deliveries_per_s": round(counts["received"] / took),
        **percentiles(await fleet.latencies()),
        "loss": owed - counts["received"],
        "duplicates": counts["duplicates"],
        "dropped_streams": streams - counts["open"],
    }


async def many_channels(server: Server, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """N subscribers over N/10 (``--channels``) channels; raise the rate while p99 < 50 ms."""
    channels = args.channels or max(1, args.n // 10)
    await fleet.open_many(spread(args.n, channels, server.target, "many"))
    names = [f"many{i}" for i in range(channels)]
    pub = Publisher(server.url, server.target.publish_path)
    per_event = args.n / channels
    steps, best = [], 0
    for deliveries in args.rates:
        await fleet.reset_window()
        before = pub.counts()
        cpu = server.cpu(), fleet.cpu()
        machine = psutil.cpu_times()
        start = time.perf_counter()
        real = await pub.at_rate(names, deliveries / per_event, args.seconds)
        owed = fleet.expected(before, pub.counts())
        counts = await drain(fleet, owed, 10)
        took = time.perf_counter() - start
        step = {
            "target_per_s": deliveries,
            "deliveries_per_s": round(counts["received"] / took),
            "events_per_s": round(real),
            **percentiles(await fleet.latencies()),
            "loss": owed - counts["received"],
            "duplicates": counts["duplicates"],
            # CPU seconds of this step alone (connecting the streams excluded).
            "server_cpu_s": round(server.cpu() - cpu[0], 2),
            "loadgen_cpu_s": round(fleet.cpu() - cpu[1], 2),
            "machine_busy_pct": busy_percent(machine, psutil.cpu_times()),
        }
        steps.append(step)
        ok = step["p99_ms"] < 50 and step["loss"] == 0 and real >= 0.9 * deliveries / per_event
        if not ok:
            break
        best = deliveries
        await asyncio.sleep(0.5)
    await pub.close()
    counts = await fleet.counts()
    return {
        "streams": counts["streams"],
        "channels": channels,
        "best_per_s_p99_under_50ms": best,
        "steps": steps,
        "dropped_streams": counts["streams"] - counts["open"],
    }


async def token_stream(server: Server, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """500 chat-like streams, one channel each, ``--tokens`` small events each, closed loop."""
    count = min(500, args.n)
    names = [f"chat{i}" for i in range(count)]
    await fleet.open_many([(server.target.stream_path(c), c) for c in names])
    pub = Publisher(server.url, server.target.publish_path)
    await asyncio.sleep(0.3)
    await fleet.reset_window()
    start = time.perf_counter()
    await pub.rounds(names, args.tokens)
    owed = count * args.tokens
    counts = await drain(fleet, owed, 20)
    took = time.perf_counter() - start
    await pub.close()
    return {
        "streams": counts["streams"],
        "tokens_per_stream": args.tokens,
        "tokens_per_s": round(counts["received"] / took),
        **percentiles(await fleet.latencies()),
        "loss": owed - counts["received"],
        "duplicates": counts["duplicates"],
    }


async def reconnect_storm(server: Server, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """N streams over 100 channels drop at once mid-publish and resume with Last-Event-ID."""
    names = [f"storm{i}" for i in range(100)]
    await fleet.open_many(spread(args.n, 100, server.target, "storm"))
    pub = Publisher(server.url, server.target.publish_path)
    rate = max(10.0, 10_000 * 100 / args.n)  # about 10k deliveries/s
    publishing = asyncio.create_task(pub.at_rate(names, rate, 3.0))
    await asyncio.sleep(1.0)
    start = time.perf_counter()
    reconnect_s = await fleet.reopen_all()
    await publishing
    last_publish = time.perf_counter()
    final = pub.counts()
    deadline = time.monotonic() + 30
    caught_up: float | None = None
    while time.monotonic() < deadline:
        behind, missed = await fleet.behind(final)
        if not behind:
            caught_up = time.perf_counter()
            break
        await asyncio.sleep(0.02)
    behind, missed = await fleet.behind(final)
    counts = await fleet.counts()
    await pub.close()
    return {
        "streams": counts["streams"],
        "failures": fleet.failures,
        "reconnect_s": round(reconnect_s, 2),
        # From the drop until every stream had every event (None: some never did, in 30 s).
        "caught_up_s": round(caught_up - start, 2) if caught_up else None,
        "lag_after_last_publish_s": round(caught_up - last_publish, 3) if caught_up else None,
        "missed": missed,
        "duplicates": counts["duplicates"],
        "publish_errors": pub.errors,
    }


async def run_answers(server: Server, answers: int, prefix: str, args: argparse.Namespace) -> Any:
    """bench/ai_answers.py in a child process (the SDK's publishers); its JSON report. Against
    a ``<target>@base`` server the publishers run the SDK of that checkout too."""
    command = [sys.executable, str(ROOT / "bench" / "ai_answers.py"), "--url", server.url]
    command += ["--answers", str(answers), "--prefix", prefix]
    command += ["--messages", str(args.ai_messages), "--tokens", str(args.ai_tokens)]
    source = server.target.env.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": source} if source else None
    child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, env=env)
    bound = args.ai_messages / 20 + 60  # every answer's last message, plus slack
    out, _ = await asyncio.wait_for(child.communicate(), bound)
    if child.returncode != 0:
        raise RuntimeError(f"ai_answers.py failed ({child.returncode})")
    return json.loads(out)


async def ai_answers(server: Server, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """N answers through the SDK's AsyncPublisher, 2 subscribers each; raise N while the
    delivery p99 stays under 50 ms with nothing lost (``--answers`` steps)."""
    steps, best = [], 0
    for answers in args.answers:
        prefix = f"ai{answers}x"
        names = [f"ai_story:project:{prefix}{i}:stage:answer" for i in range(answers)]
        paths = [(server.target.stream_path(name), name) for name in names]
        await fleet.open_many([pair for pair in paths for _ in range(2)])
        await asyncio.sleep(0.3)
        await fleet.reset_window()
        cpu, machine = server.cpu(), psutil.cpu_times()
        start = time.perf_counter()
        report = await run_answers(server, answers, prefix, args)
        owed = 2 * report["messages"]
        counts = await drain(fleet, owed, 15)
        took = time.perf_counter() - start
        server_cpu = server.cpu() - cpu
        step = {
            "answers": answers,
            "messages": report["messages"],
            "messages_per_s": round(report["messages"] / report["seconds"]),
            "deliveries_per_s": round(counts["received"] / took),
            **percentiles(await fleet.latencies()),
            "loss": owed - counts["received"],
            "duplicates": counts["duplicates"],
            "publish_errors": report["errors"],
            "first_error": report["first_error"],
            "server_cpu_s": round(server_cpu, 2),
            "server_cpu_us_per_message": round(1e6 * server_cpu / max(report["messages"], 1)),
            "publisher_cpu_s": report["cpu_s"],
            "publisher_cpu_us_per_message": round(
                1e6 * report["answers_cpu_s"] / max(report["messages"], 1)
            ),
            "machine_busy_pct": busy_percent(machine, psutil.cpu_times()),
        }
        steps.append(step)
        if step["p99_ms"] >= 50 or step["loss"] or step["duplicates"] or step["publish_errors"]:
            break
        best = answers
        await asyncio.sleep(0.5)
    # The figures of the largest N that passed (else of the first step), for the table.
    shown = next((s for s in steps if s["answers"] == best), steps[0])
    return {
        "answers_p99_under_50ms": best,
        "at_answers": shown["answers"],
        "p99_ms_at": shown["p99_ms"],
        "hub_cpu_us_per_message": shown["server_cpu_us_per_message"],
        "publisher_cpu_us_per_message": shown["publisher_cpu_us_per_message"],
        "steps": steps,
        "loss": sum(s["loss"] for s in steps),
        "duplicates": sum(s["duplicates"] for s in steps),
    }


SCENARIOS = {
    "hold": hold,
    "broadcast": broadcast,
    "many-channels": many_channels,
    "token-stream": token_stream,
    "reconnect-storm": reconnect_storm,
    "durable": durable,
    "ai-answers": ai_answers,
}
# Scenarios that run on other targets: ssehub with its Durable Streams store, and the Node
# reference server of Durable Streams as the peer.
SCENARIO_TARGETS = {"durable": {"ssehub": "ssehub-ds", "peer": "ds-node"}}


def targets_of(name: str, targets: list[str]) -> list[str]:
    """The targets scenario ``name`` runs against for ``--targets``."""
    renames = SCENARIO_TARGETS.get(name, {})
    return [renames.get(t, t) for t in targets]


COLUMNS = {
    "hold": ("streams", "connect_s", "kb_per_stream", "failures"),
    "broadcast": (
        "streams",
        "single_p99_ms",
        "single_user_ms",
        "single_system_ms",
        "single_cpu_ms",
        "deliveries_per_s",
        "p99_ms",
        "loss",
        "duplicates",
    ),
    "many-channels": ("streams", "best_per_s_p99_under_50ms", "dropped_streams"),
    "token-stream": ("streams", "tokens_per_s", "p99_ms", "loss", "duplicates"),
    "reconnect-storm": (
        "streams",
        "reconnect_s",
        "caught_up_s",
        "lag_after_last_publish_s",
        "missed",
        "duplicates",
    ),
    "ai-answers": (
        "answers_p99_under_50ms",
        "at_answers",
        "p99_ms_at",
        "hub_cpu_us_per_message",
        "publisher_cpu_us_per_message",
        "loss",
        "duplicates",
    ),
    "durable": (
        "streams",
        "rate_per_s",
        "p50_ms",
        "p99_ms",
        "appends_per_s",
        "flat_p99_ms",
        "loss",
        "duplicates",
    ),
}


async def run_one(name: str, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """One scenario against one fresh server; adds CPU seconds of server and load generator."""
    async with serve(target) as server:
        fleet = Fleet(HOST, server.port, procs=args.loadgen_procs, sources=args.sources)
        await fleet.reset_window()  # answered once every child is up
        cpu_server, cpu_self, cpu_fleet = server.cpu(), os.times(), fleet.cpu()
        spy = start_py_spy(server, name, args.py_spy) if args.py_spy else None
        try:
            result = await SCENARIOS[name](server, fleet, args)
        finally:
            if spy is not None:
                stop_py_spy(spy)
            loadgen_cpu = fleet.cpu() - cpu_fleet
            await fleet.close()
        now = os.times()
        result["server_cpu_s"] = round(server.cpu() - cpu_server, 2)
        result["loadgen_cpu_s"] = round(loadgen_cpu, 2)
        own = now.user + now.system - cpu_self.user - cpu_self.system
        # In-process load generation: this process's CPU is the load generator's, with the
        # publisher's included.
        result["publisher_cpu_s"] = round(own, 2) if fleet.local is None else None
        result["server_rss_mb"] = round(server.rss() / 2**20, 1)
    return {"scenario": name, "target": target.name, "n": args.n, **result}


def start_py_spy(
    server: Server, scenario: str, folder: str, rate: int = 200
) -> subprocess.Popen[bytes]:
    """Sample the server with py-spy (collapsed stacks, ``rate`` per s) while it runs."""
    out = Path(folder) / f"{scenario}-{server.target.name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [binary, "record", "--pid", str(server.process.pid), "--format", "raw"]
    return subprocess.Popen(
        [*command, "--rate", str(rate), "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(20)
    except subprocess.TimeoutExpired:
        spy.kill()


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown tables, one per scenario."""
    out = []
    for name, cols in COLUMNS.items():
        mine = [r for r in rows if r["scenario"] == name]
        if not mine:
            continue
        head = ("target", "n", *cols, "server_cpu_s", "loadgen_cpu_s", "publisher_cpu_s")
        out.append(f"\n### {name}\n\n| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        out.extend("| " + " | ".join(str(r.get(c, "")) for c in head) + " |" for r in mine)
    return "\n".join(out)


def environment() -> dict[str, Any]:
    """Versions and machine, saved beside the figures."""
    versions = {}
    for pkg in (
        "ssehub",
        "uvicorn",
        "uvloop",
        "httptools",
        "fastapi",
        "starlette",
        "sse-starlette",
        "aiohttp",  # the SDK's async publisher
        "redis",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    return {
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        ),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": os.getloadavg(),
        "versions": versions,
    }


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    # A full collection over 20k client streams would stall the load generator mid-window and
    # show up as server latency: collect between windows only (Fleet's "reset").
    gc.disable()
    limit = raise_fd_limit()
    per_process = args.n // max(1, args.loadgen_procs) + 100
    if per_process > limit:
        raise SystemExit(
            f"--n {args.n} needs {per_process} file descriptors per load generator process, "
            f"more than the {limit} allowed: add --loadgen-procs"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        if "durable" in args.scenarios and "ds-node" in targets_of("durable", args.targets):
            install_ds_node()
        for name in args.scenarios:
            for target_name in targets_of(name, args.targets):
                targets = [TARGETS[target_name]]
                if args.src and target_name.startswith("ssehub"):
                    targets.insert(0, at_source(targets[0], args.src))
                for target in targets:
                    row = await run_one(name, target, args)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        if any(TARGETS[t].env.get("SSEHUB_BROKER_URL") for t in args.targets):
            redis_url, prefix = REDIS_ENV["SSEHUB_BROKER_URL"], REDIS_ENV["SSEHUB_REDIS_PREFIX"]
            await delete_redis_keys(redis_url, prefix)
    return rows


async def delete_redis_keys(url: str, prefix: str) -> None:
    """Remove what the Redis targets of this run stored."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.unlink(key)
    finally:
        await client.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="Streams per scenario.")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--targets", default="ssehub,peer")
    parser.add_argument("--seconds", type=float, default=3.0, help="Length of each rate step.")
    parser.add_argument(
        "--settle",
        type=float,
        default=8.0,
        help="Seconds after start before hold's base RSS, broadcast's CPU.",
    )
    parser.add_argument("--broadcast-rate", type=float, default=0.0, help="Events/s (broadcast).")
    parser.add_argument(
        "--rates",
        default="10000,20000,40000,60000,80000",
        help="Deliveries/s steps of many-channels.",
    )
    parser.add_argument("--channels", type=int, default=0, help="many-channels: (N/10).")
    parser.add_argument("--tokens", type=int, default=2000, help="Tokens per chat stream.")
    parser.add_argument(
        "--sources", type=int, default=1, help="127.0.0.x source addresses per loadgen process."
    )
    parser.add_argument(
        "--loadgen-procs",
        type=int,
        default=0,
        help="Load generator child processes (streams dealt); 0: in this process.",
    )
    parser.add_argument("--ds-rate", type=float, default=20.0, help="durable: appends/s.")
    parser.add_argument("--ds-writers", type=int, default=16, help="durable: writers flat out.")
    parser.add_argument(
        "--answers", default="25,50,100,200,400", help="ai-answers: concurrent answers steps."
    )
    parser.add_argument("--ai-messages", type=int, default=100, help="ai-answers: per answer.")
    parser.add_argument("--ai-tokens", type=int, default=16, help="ai-answers: per message.")
    parser.add_argument("--py-spy", default="", help="Folder for py-spy profiles of the servers.")
    parser.add_argument("--save", action="store_true", help="Write bench/results/<date>.*")
    parser.add_argument("--src", default="", help="Also run the ssehub targets from DIR/src.")
    args = parser.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.targets = [t for t in args.targets.split(",") if t]
    args.rates = [int(r) for r in args.rates.split(",") if r]
    args.answers = [int(n) for n in args.answers.split(",") if n]
    for name in args.scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name}")
    for name in args.targets:
        if name not in TARGETS:
            parser.error(f"unknown target {name}")
    return args


def write_results(suffix: str, title: str, rows: list[Any], env: dict[str, Any], text: str) -> Path:
    """``bench/results/<date>-<suffix>.json|md``: the command, machine and rows; ``text`` (the
    tables) in the Markdown."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%S")
    path = RESULTS / f"{stamp}-{suffix}"
    command = f"python bench/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:])
    path.with_suffix(".json").write_text(
        json.dumps({"command": command, "environment": env, "results": rows}, indent=1)
    )
    path.with_suffix(".md").write_text(
        f"# {title} {stamp}\n\n`{command}`\n\n```json\n{json.dumps(env, indent=1)}\n```\n"
        + text
        + "\n"
    )
    return path


def save(rows: list[dict[str, Any]], args: argparse.Namespace, env: dict[str, Any]) -> Path:
    return write_results(f"n{args.n}", "ssehub benchmark", rows, env, table(rows))


if __name__ == "__main__":
    arguments = parse_args()
    env = environment()
    results = uvloop.run(main(arguments))
    print(table(results))
    if arguments.save:
        print(f"\nsaved {save(results, arguments, env)}.json|md")

"""Hub CPU per single-event publish: ssehub beside the seed-000 peer, minimal FastAPI and a floor.

Each target is a fresh server process on loopback (uvloop, httptools). A load generator in a
separate process (its CPU is not counted) keeps ``--connections`` keep-alive connections busy,
each posting one small event per request to ``POST /api/v1/publish/{channel}`` and waiting for
the answer; nobody subscribes. The server's CPU (utime + stime from ``/proc/<pid>/stat``, all its
processes) over ``--count`` publishes, after a warm-up, divided by the publishes answered 200, is
its CPU per publish: robust to other load on the machine, unlike wall-clock rates.
``wire-floor`` is the hub with its publish work cut out (bench/peers/wire_floor.py): what is
left is its HTTP side, so ``ssehub-jwt`` minus ``wire-floor`` is the hub's own work.

    python bench/publish_cpu.py                                  # every target
    python bench/publish_cpu.py --src /work/wt/base --save       # + the ssehub targets at DIR/src
    python bench/publish_cpu.py --targets ssehub-jwt --py-spy /tmp/spy
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run
from run import HOST, RESULTS, ROOT, Target, environment, serve, start_py_spy, stop_py_spy

CHANNEL = "bench:cpu"
PATH = f"/api/v1/publish/{CHANNEL}"
BODY = b'{"event":"token","data":"hello, world"}'
BATCH_PATH = "/api/v1/publish"
SECRET = "publish-cpu-bench-secret-0123456789abcdef"  # loopback-only benchmark hub
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Load:
    """A target and what its publish requests carry."""

    target: Target
    headers: dict[str, str] = field(default_factory=dict)
    idempotency: bool = False  # a fresh Idempotency-Key per request (what the SDK sends)
    checks_ids: bool = False  # answers carry event ids: every one must be new
    batch: int = 0  # events per request through the batch endpoint (0: single-event publishes)

    def request(self) -> tuple[str, bytes]:
        """The path and body every request of this load posts."""
        if not self.batch:
            return self.target.publish_path, BODY
        item = BODY[:-1] + b',"channel":"%s"}' % CHANNEL.encode()
        return BATCH_PATH, b"[" + b",".join([item] * self.batch) + b"]"


def uvicorn_command(module: str) -> Any:
    """A bench/peers module served by plain uvicorn, access log off."""
    return lambda port: [
        *(sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench" / "peers")),
        *(f"{module}:app", "--host", HOST, "--port", str(port)),
        *("--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"),
    ]


def peer_target(name: str, module: str) -> Target:
    return Target(name, uvicorn_command(module), {}, lambda ch: "", PATH)


# Rate limits stay on (their bookkeeping is part of a publish), set out of the way.
HUB_ENV = {
    "SSEHUB_PUBLISH_RATE_PER_USER": "1000000000",
    "SSEHUB_PUBLISH_BURST_PER_USER": "1000000000",
    "SSEHUB_PUBLISH_BYTES_RATE_PER_USER": "1000000000000",
    "SSEHUB_PUBLISH_BYTES_BURST_PER_USER": "1000000000000",
}


def hub_target(name: str, **env: str) -> Target:
    command = lambda port: [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port)]  # noqa: E731
    return Target(name, command, {**HUB_ENV, **env}, lambda ch: "", PATH)


def wire_floor_target() -> Target:
    """``ssehub serve`` answering plain publishes with a fixed body (bench/peers/wire_floor.py)."""
    script = str(ROOT / "bench" / "peers" / "wire_floor.py")
    command = lambda port: [sys.executable, script, "serve", "--port", str(port)]  # noqa: E731
    env = {**HUB_ENV, "SSEHUB_JWT_SECRET": SECRET, "SSEHUB_LOG_LEVEL": "info"}
    return Target("wire-floor", command, env, lambda ch: "", PATH)


def bearer() -> dict[str, str]:
    """A token with publish rights on the bench channels, as a publisher would hold."""
    claims = {"sub": "bench", "publish": ["bench:*"], "exp": int(time.time()) + 86400}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def loads() -> dict[str, Load]:
    jwt_env = {"SSEHUB_JWT_SECRET": SECRET}
    return {
        "floor": Load(peer_target("floor", "floor")),
        "fastapi": Load(peer_target("fastapi", "minimal")),
        "peer": Load(peer_target("peer", "seed000")),
        # The hub's HTTP side alone (JWT sent, access log on): what its own work adds to.
        "wire-floor": Load(wire_floor_target(), bearer()),
        # Auth off, access log on (info, the default level).
        "ssehub-open": Load(
            hub_target("ssehub-open", SSEHUB_OPEN_ACCESS="true", SSEHUB_LOG_LEVEL="info"),
            checks_ids=True,
        ),
        # Auth on (HS256 JWT), access log on at the default level / off.
        "ssehub-jwt": Load(
            hub_target("ssehub-jwt", SSEHUB_LOG_LEVEL="info", **jwt_env),
            bearer(),
            checks_ids=True,
        ),
        "ssehub-jwt-nolog": Load(
            hub_target("ssehub-jwt-nolog", SSEHUB_LOG_LEVEL="warning", **jwt_env),
            bearer(),
            checks_ids=True,
        ),
        # As the SDK publishes: auth on, access log on, an Idempotency-Key per request.
        "ssehub-jwt-key": Load(
            hub_target("ssehub-jwt-key", SSEHUB_LOG_LEVEL="info", **jwt_env),
            bearer(),
            idempotency=True,
            checks_ids=True,
        ),
        # The batch endpoint, 10 events per request: CPU per event, to compare with the above.
        "ssehub-jwt-batch": Load(
            hub_target("ssehub-jwt-batch", SSEHUB_LOG_LEVEL="info", **jwt_env),
            bearer(),
            checks_ids=True,
            batch=10,
        ),
    }


def at_source(load: Load, src: str) -> Load:
    """``load`` running the ssehub code of checkout ``src`` (``<name>@base``)."""
    return replace(load, target=run.at_source(load.target, src))


# -- the load generator (a child process) ---------------------------------------------------------


class Poster(asyncio.Protocol):
    """One keep-alive connection: post, wait for the whole answer, post again."""

    def __init__(self, run: LoadRun) -> None:
        import httptools

        self.run = run
        self.parser = httptools.HttpResponseParser(self)
        self.body = b""
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.post()

    def post(self) -> None:
        request = self.run.next_request()
        if request is None:
            self.done.set_result(None)
            return
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.run.lost += 1
            self.done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.run.answered(self.parser.get_status_code(), self.body)
        self.body = b""
        self.post()


class LoadRun:
    """Shared by the connections of one run: the request budget and what came back."""

    def __init__(self, config: dict[str, Any]) -> None:
        head = f"POST {config['path']} HTTP/1.1\r\nHost: {HOST}:{config['port']}\r\n"
        head += "Content-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in config["headers"].items())
        self.head = head.encode()
        body = config["body"].encode()
        self.tail = b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        self.plain = self.head + self.tail
        self.keys = bool(config["idempotency"])
        self.remaining = int(config["count"])
        self.deadline = time.monotonic() + float(config["seconds"])
        self.statuses: Counter[int] = Counter()
        self.bodies: list[bytes] = []
        self.lost = 0

    def next_request(self) -> bytes | None:
        if self.remaining <= 0 or time.monotonic() > self.deadline:
            return None
        self.remaining -= 1
        if self.keys:
            return self.head + b"Idempotency-Key: k%d\r\n" % self.remaining + self.tail
        return self.plain

    def answered(self, status: int, body: bytes) -> None:
        self.statuses[status] += 1
        self.bodies.append(body)


async def generate(config: dict[str, Any]) -> dict[str, Any]:
    """Run ``config['count']`` publishes over ``config['connections']`` connections."""
    loop = asyncio.get_running_loop()
    run = LoadRun(config)
    start = time.perf_counter()
    posters = []
    for _ in range(int(config["connections"])):
        _, poster = await loop.create_connection(lambda: Poster(run), HOST, int(config["port"]))
        posters.append(poster)
    await asyncio.gather(*(p.done for p in posters))
    took = time.perf_counter() - start
    for poster in posters:
        if poster.transport is not None:
            poster.transport.close()
    ok = run.statuses.get(200, 0)
    usage = os.times()
    return {
        "answered": sum(run.statuses.values()),
        "ok": ok,
        "statuses": {str(k): v for k, v in run.statuses.items()},
        "distinct_answers": len(set(run.bodies)),
        "lost_connections": run.lost,
        "seconds": took,
        "loadgen_cpu_s": usage.user + usage.system,
        "sample_answer": run.bodies[0].decode(errors="replace") if run.bodies else "",
    }


def child_main(config_json: str) -> None:
    print(json.dumps(uvloop.run(generate(json.loads(config_json)))))


# -- the parent ----------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from ``/proc/<pid>/stat``, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def server_cpu(pid: int) -> float:
    """CPU seconds of a server and its worker processes."""
    pids = [pid]
    with contextlib.suppress(psutil.Error):
        pids += [p.pid for p in psutil.Process(pid).children(recursive=True)]
    total = 0.0
    for each in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += proc_cpu_seconds(each)
    return total


async def load(port: int, spec: Load, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run the load generator child for ``count`` publishes; its JSON report."""
    path, body = spec.request()
    config = {
        "port": port,
        "path": path,
        "body": body.decode(),
        "headers": spec.headers,
        "idempotency": spec.idempotency,
        "count": count,
        "connections": args.connections,
        "seconds": args.seconds,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load", json.dumps(config), stdout=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(child.communicate(), args.seconds + 30)
    if child.returncode != 0:
        raise RuntimeError(f"load generator failed ({child.returncode})")
    return json.loads(out)  # type: ignore[no-any-return]


async def measure(spec: Load, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh server: warm up, then CPU per publish over ``--count`` publishes."""
    async with serve(spec.target) as server:
        pid = server.process.pid
        await load(server.port, spec, args.warmup, args)
        spy = start_py_spy(server, "publish", args.py_spy, 1000) if args.py_spy else None
        before = server_cpu(pid)
        try:
            result = await load(server.port, spec, args.count, args)
        finally:
            after = server_cpu(pid)
            if spy is not None:
                stop_py_spy(spy)
    ok = result["ok"] * max(spec.batch, 1)  # events published
    cpu = after - before
    row = {
        "target": spec.target.name,
        "publishes": ok,
        "hub_cpu_s": round(cpu, 2),
        "cpu_us_per_publish": round(1e6 * cpu / max(ok, 1), 1),
        "per_s_one_core": round(ok / cpu) if cpu else None,
        "wall_per_s": round(ok / result["seconds"]),
        "loadgen_cpu_s": round(result["loadgen_cpu_s"], 2),
        "refused": result["answered"] - result["ok"],
        "statuses": result["statuses"],
        "lost_connections": result["lost_connections"],
    }
    if spec.checks_ids:
        # Every answer names a new event: anything else is a lost or duplicated publish.
        row["duplicate_ids"] = result["ok"] - result["distinct_answers"]
    return row


def ratios(rows: list[dict[str, Any]]) -> None:
    """Add CPU ratios to the floor and to the peer measured in the same run."""
    by_name = {r["target"]: r["cpu_us_per_publish"] for r in rows}
    for row in rows:
        for ref in ("floor", "peer"):
            if by_name.get(ref):
                row[f"x_{ref}"] = round(row["cpu_us_per_publish"] / by_name[ref], 2)


def table(rows: list[dict[str, Any]]) -> str:
    cols = (
        "target",
        "cpu_us_per_publish",
        "per_s_one_core",
        "x_floor",
        "x_peer",
        "publishes",
        "wall_per_s",
        "refused",
        "duplicate_ids",
    )
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out.extend("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows)
    return "\n".join(out)


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    available = loads()
    rows = []
    for name in args.targets:
        specs = [available[name]]
        if args.src and name.startswith("ssehub"):
            specs.insert(0, at_source(available[name], args.src))
        for spec in specs:
            row = await measure(spec, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    ratios(rows)
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(loads()))
    parser.add_argument("--count", type=int, default=20_000, help="Measured publishes.")
    parser.add_argument("--warmup", type=int, default=2_000, help="Publishes before measuring.")
    parser.add_argument("--connections", type=int, default=32, help="Keep-alive connections.")
    parser.add_argument("--seconds", type=float, default=60, help="Bound on each load run.")
    parser.add_argument("--src", default="", help="Also run the ssehub targets from DIR/src.")
    parser.add_argument("--py-spy", default="", help="Folder for py-spy profiles.")
    parser.add_argument("--save", action="store_true", help="Write bench/results/<date>-publish.*")
    args = parser.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    known = loads()
    for name in args.targets:
        if name not in known:
            parser.error(f"unknown target {name} (known: {', '.join(known)})")
    return args


def save(rows: list[dict[str, Any]], env: dict[str, Any]) -> Path:
    return run.write_results("publish", "publish CPU", rows, env, "\n" + table(rows))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--load":
        child_main(sys.argv[2])
        sys.exit(0)
    arguments = parse_args()
    env = environment()
    results = uvloop.run(main(arguments))
    print(table(results))
    if arguments.save:
        print(f"\nsaved {save(results, env)}.json|md")

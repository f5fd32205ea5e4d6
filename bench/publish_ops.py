"""Python work per single-event publish, counted: bytecodes and calls, unaffected by machine load.

A server protocol is fed whole publish requests in-process (a transport that only keeps what
is written, no socket), one per loop turn, and the interpreter's bytecodes and Python calls are
counted with a tracer: the same figures on a busy machine as on a quiet one, so small changes
show. CPU µs per request (best of ``--reps`` rounds, no tracer) is reported beside them.

Targets: ``hub`` (the wire publish of ``ssehub serve``: JWT, access log to a file, memory
backends), ``wire-floor`` (the same with the hub's publish work cut out, as
bench/peers/wire_floor.py) and ``floor`` (uvicorn's own protocol and the bare ASGI app of
bench/peers/floor.py). Run another checkout with ``PYTHONPATH=<dir>/src``.

    python bench/publish_ops.py [--targets hub,wire-floor,floor] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging.config
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import jwt
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))

import floor
import wire_floor

SECRET = "publish-ops-bench-secret-0123456789abcdef"
BODY = b'{"event":"token","data":"hello, world"}'
HUB_ENV = {
    "SSEHUB_JWT_SECRET": SECRET,
    "SSEHUB_LOG_LEVEL": "info",
    "SSEHUB_PUBLISH_RATE_PER_USER": "1000000000",
    "SSEHUB_PUBLISH_BURST_PER_USER": "1000000000",
    "SSEHUB_PUBLISH_BYTES_RATE_PER_USER": "1000000000000",
    "SSEHUB_PUBLISH_BYTES_BURST_PER_USER": "1000000000000",
}


class KeptTransport(asyncio.Transport):
    """A transport that counts the answers starting 200 and keeps the last write."""

    def __init__(self) -> None:
        super().__init__()
        self.ok = 0
        self.last = b""

    def write(self, data: Any) -> None:
        self.last = bytes(data)
        self.ok += self.last.startswith(b"HTTP/1.1 200")

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def request() -> bytes:
    """A publish as the SDK sends it: JSON body, bearer token."""
    claims = {"sub": "bench", "publish": ["bench:*"], "exp": int(time.time()) + 86400}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    return (
        b"POST /api/v1/publish/bench:ops HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Content-Type: application/json\r\nAuthorization: Bearer %s\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (token.encode(), len(BODY), BODY)
    )


def counter() -> tuple[collections.Counter[str], list[int], Any]:
    """Bytecodes per function, the call count, and the tracer that fills them."""
    ops: collections.Counter[str] = collections.Counter()
    calls = [0]

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call":
            calls[0] += 1
            frame.f_trace_opcodes = True
        elif event == "opcode":
            code = frame.f_code
            where = code.co_filename.rsplit("site-packages/", 1)[-1].rsplit("src/", 1)[-1]
            ops[f"{where}:{code.co_name}"] += 1
        return tracer

    return ops, calls, tracer


async def measure(target: str, args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    turns = 2 if target == "floor" else 1  # the floor answers from a task: one more turn
    if target == "floor":
        config = uvicorn.Config(floor.app, loop="none", lifespan="off", log_config=None)
        config.load()
        protocol: Any = HttpToolsProtocol(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
        lifespan = None
    else:
        from ssehub.fastpath import http_protocol
        from ssehub.logs import log_config
        from ssehub.settings import Settings

        os.environ.update(HUB_ENV)
        settings = Settings()
        logging_config = log_config(settings.log_format, settings.log_level)
        log_file = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
        logging_config["handlers"]["default"]["stream"] = log_file
        logging.config.dictConfig(logging_config)
        if target == "wire-floor":
            wire_floor.skip_the_hub_s_work()
        config = uvicorn.Config(
            "ssehub.app:app_from_env",
            factory=True,
            loop="none",
            http=http_protocol(settings),
            access_log=False,
            log_config=None,
        )
        config.load()
        app: Any = config.loaded_app
        while not hasattr(app, "router"):  # below uvicorn's proxy-headers middleware
            app = app.app
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        protocol = config.http_protocol_class(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
    transport = KeptTransport()
    protocol.connection_made(transport)
    payload = request()

    async def publish(n: int) -> None:
        for _ in range(n):
            protocol.data_received(payload)
            for _ in range(turns):
                await asyncio.sleep(0)

    await publish(2000)  # warm: caches, history, interned strings
    if transport.ok != 2000:
        raise RuntimeError(f"{target}: {transport.ok} of 2000 answered 200: {transport.last!r}")
    ops, calls, tracer = counter()
    sys.settrace(tracer)
    await publish(args.traced)
    sys.settrace(None)
    idle = time.process_time()
    for _ in range(args.n * turns):
        await asyncio.sleep(0)
    idle = time.process_time() - idle
    best = float("inf")
    for _ in range(args.reps):
        start = time.process_time()
        await publish(args.n)
        best = min(best, time.process_time() - start)
    if lifespan is not None:
        await lifespan.__aexit__(None, None, None)
    print(
        f"{target}: {sum(ops.values()) / args.traced:.0f} bytecodes, "
        f"{calls[0] / args.traced:.0f} Python calls, "
        f"{1e6 * (best - idle) / args.n:.1f} CPU µs per publish (best of {args.reps})"
    )
    for name, count in ops.most_common(args.top):
        print(f"  {count / args.traced:7.1f}  {name}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="hub,wire-floor,floor")
    parser.add_argument("--traced", type=int, default=500, help="Publishes counted.")
    parser.add_argument("--n", type=int, default=5000, help="Publishes per timed round.")
    parser.add_argument("--reps", type=int, default=5, help="Timed rounds (the best is kept).")
    parser.add_argument("--top", type=int, default=0, help="Also list the busiest functions.")
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    """Each target in a process of its own: the hub's module patches and logging stay its own."""
    targets = args.targets.split(",")
    if len(targets) == 1:
        uvloop.run(measure(targets[0], args))
        return
    for name in targets:
        options = [f"--{k}={v}" for k, v in vars(args).items() if k != "targets"]
        subprocess.run([sys.executable, __file__, f"--targets={name}", *options], check=True)


if __name__ == "__main__":
    main(parse_args())

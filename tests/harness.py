"""Test harness: real hub servers on free loopback ports, and SSE readers with timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from ssehub.app import create_app
from ssehub.fastpath import http_protocol
from ssehub.parser import ServerSentEvent, SSEDecoder
from ssehub.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now, for a server a test starts in a moment.

    Picked below the kernel's ephemeral range: the outgoing connections of tests running
    alongside (xdist workers, load generators) take their local ports from that range and
    could take this one before the server binds it.
    """
    low = _ephemeral_low()
    while True:
        port = random.randrange(10_000, low)
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", port))
            return port


def _ephemeral_low() -> int:
    """First port of ``net.ipv4.ip_local_port_range`` (32768 when unreadable)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
    return max(low, 20_000)


@dataclass
class RunningHub:
    """A hub served by uvicorn in this event loop on a loopback port."""

    url: str
    app: Any
    server: uvicorn.Server

    @property
    def hub(self) -> Any:
        return self.app.state.hub


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[RunningHub]:
    """Serve an ASGI app on a free loopback port inside the running loop."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        http=http_protocol(app.state.settings),
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError("test server did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningHub(url=f"http://127.0.0.1:{port}", app=app, server=server)
    finally:
        server.should_exit = True
        app.state.hub.close_all()
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def running_hub(settings: Settings | None = None, **kwargs: Any) -> AsyncIterator[RunningHub]:
    """``create_app(settings, **kwargs)`` served on a free port."""
    async with serve_app(create_app(settings or Settings(), **kwargs)) as running:
        yield running


@dataclass
class HubProcess:
    """``ssehub serve`` in a child process, for signal and multi-process tests."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for exit (generous: a worker tree on a loaded machine is slow)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"hub ignored SIGTERM for {timeout} s:\n{self.log()[-3000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL to the hub and its ``--workers`` children (its own process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def start_hub_process(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    args: list[str] | None = None,
    start_timeout: float = 60,
) -> HubProcess:
    """Start ``ssehub serve`` on a free port; wait until /healthz answers from every worker.

    With ``--workers N`` the first worker answers while others may still be starting: /healthz
    is asked on new connections until N distinct ``node`` ids have answered.
    """
    args = args or []
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    port = port or free_port()
    log_path = tmp_path / f"hub-{port}-{time.monotonic_ns()}.log"
    full_env = {**os.environ, **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port), *args],
        env=full_env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # kill() takes worker children along: no orphans left running
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout
    nodes: set[str] = set()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"hub exited with {process.returncode}: {log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{url}/healthz", timeout=1)
            if answer.status_code == 200:
                nodes.add(answer.json()["node"])
                if len(nodes) >= workers:
                    break
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            raise TimeoutError(f"hub did not start: {log_path.read_text()}")
        time.sleep(0.05)
    return HubProcess(url=url, port=port, process=process, log_path=log_path)


async def raw_exchange(url: str, payload: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes to the server of ``url`` on a new connection; what it answers.

    Reads until one whole response (head and ``content-length`` body) or until the server
    closes; a connection reset ends the read with what came before it.
    """
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    data = b""
    try:
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    data += chunk
                    head, end, body = data.partition(b"\r\n\r\n")
                    length = _content_length(head) if end else None
                    if length is not None and len(body) >= length:
                        break
        return data
    finally:
        writer.close()


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


@dataclass
class StreamReader:
    """An open SSE response read in the background; events collect in ``events``."""

    response: httpx.Response
    events: list[ServerSentEvent] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def data(self) -> list[str]:
        """Data of the non-`connected` events, in order."""
        return [e.data for e in self.events if e.event != "connected"]

    def of_type(self, name: str) -> list[ServerSentEvent]:
        return [e for e in self.events if e.event == name]

    async def _pump(self) -> None:
        decoder = SSEDecoder()
        try:
            async for chunk in self.response.aiter_raw():
                self.raw.extend(chunk)
                self.events.extend(decoder.feed(chunk))
                self._changed.set()
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` is true; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self.closed.is_set():
                    raise AssertionError(f"stream closed before condition; got {self.events!r}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_count(self, n: int, timeout: float = 10.0, *, event: str | None = None) -> None:
        """Wait until ``n`` non-connected events (or events of type ``event``) arrived."""
        if event is None:
            await self.wait_for(lambda r: len(r.data) >= n, timeout)
        else:
            await self.wait_for(lambda r: len(r.of_type(event)) >= n, timeout)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.response.aclose()


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    connected: bool = True,
) -> AsyncIterator[StreamReader]:
    """Open an SSE stream and read it in the background; waits for `connected` by default."""
    request = client.build_request(
        "GET", url, headers={"Accept": "text/event-stream", **(headers or {})}
    )
    response = await client.send(request, stream=True)
    if response.status_code != 200:
        body = await response.aread()
        await response.aclose()
        raise AssertionError(f"stream refused: {response.status_code} {body!r}")
    reader = StreamReader(response)
    reader._task = asyncio.create_task(reader._pump())
    try:
        if connected:
            await reader.wait_count(1, event="connected")
        yield reader
    finally:
        await reader.aclose()


async def publish(
    client: httpx.AsyncClient,
    base: str,
    channel: str,
    data: Any,
    event: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """POST one event and return the JSON answer (asserting 200)."""
    response = await client.post(
        f"{base}/api/v1/publish/{channel}", json={"event": event, "data": data}, **kw
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate()`` (sync or async) until true; TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)


async def execute_stage(
    client: httpx.AsyncClient, hub: RunningHub, project: str, stage_name: str, data: dict[str, Any]
) -> dict[str, Any]:
    """``POST /api/v1/projects/{project}/execute_stage/``; the accepted task (asserts 200)."""
    response = await client.post(
        f"{hub.url}/api/v1/projects/{project}/execute_stage/",
        json={"stage_name": stage_name, "input_data": data},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]

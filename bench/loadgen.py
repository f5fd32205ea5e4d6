"""A cheap SSE load generator: many streams from one process on asyncio Protocols (uvloop).

Each stream is one ``asyncio.Protocol`` with an httptools response parser (chunked bodies are
decoded in C). Frames are split on the blank line; only what the benchmark needs is parsed:
the ``id:`` of each event (for Last-Event-ID) and benchmark payloads ``B <publish time> <seq>``
in ``data:`` (or at the end of a token message's ``content``), from which latency, loss and
duplicates are counted. Publish times come from
``time.time()`` in the publisher process, so latency includes the whole path.
"""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import httptools

MAX_SAMPLES = 5_000_000  # latency samples kept per run (bounded memory)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux
# ``data: B <time> <seq>``, or a token message (JSON) whose content ends with that marker.
BENCH_DATA = re.compile(
    rb'^data: ?(?:\{"type": ?"token", ?"content": ?"[^"\n]*)?B ([0-9.]+) ([0-9]+)(?:"|$)',
    re.MULTILINE,
)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Totals:
    """Counters shared by every stream of a run."""

    received: int = 0
    duplicates: int = 0
    control: int = 0
    comments: int = 0
    framing_errors: int = 0
    http_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # refused streams by HTTP status
    latencies_ms: array = field(default_factory=lambda: array("f"))
    last_receive: float = 0.0

    def reset_window(self) -> None:
        """Start a new measurement window (latencies and counts)."""
        self.received = self.duplicates = self.control = self.comments = 0
        self.latencies_ms = array("f")


class SSEStream(asyncio.Protocol):
    """One SSE client connection; counts benchmark events and remembers the last id."""

    __slots__ = (
        "buffer",
        "channel",
        "connected",
        "done",
        "headers_ok",
        "host",
        "last_id",
        "last_seq",
        "parser",
        "path",
        "seen",
        "totals",
        "transport",
    )

    def __init__(
        self, totals: Totals, host: str, path: str, channel: str, prev: SSEStream | None
    ) -> None:
        self.totals = totals
        self.host = host
        self.path = path
        self.channel = channel
        # A reconnect continues its predecessor: resume id, last sequence and count seen.
        self.last_id = prev.last_id if prev else None
        self.last_seq = prev.last_seq if prev else 0
        self.seen = prev.seen if prev else 0
        self.buffer = b""
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[bool] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.headers_ok = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        resume = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id else ""
        transport.write(  # type: ignore[attr-defined]
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n"
            f"{resume}\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.totals.framing_errors += 1
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_result(False)
        if not self.done.done():
            self.done.set_result(None)

    # -- httptools callbacks -------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.headers_ok = status == 200
        if not self.headers_ok:
            self.totals.http_errors += 1
            self.totals.statuses[status] = self.totals.statuses.get(status, 0) + 1
        if not self.connected.done():
            self.connected.set_result(self.headers_ok)

    def on_body(self, body: bytes) -> None:
        buffer = self.buffer + body if self.buffer else body
        if b"\r" in buffer:  # sse-starlette ends lines with CRLF
            buffer = buffer.replace(b"\r\n", b"\n")
        end = buffer.rfind(b"\n\n") + 2
        if end < 2:
            self.buffer = buffer
            return
        complete, self.buffer = buffer[:end], buffer[end:]
        totals = self.totals
        now = time.time()
        totals.last_receive = now
        # Whole frames only, parsed per chunk in C where possible: one regex pass for the
        # benchmark payloads, counts for framing, the last id for Last-Event-ID.
        id_at = complete.rfind(b"\nid: ")
        if id_at >= 0 or complete.startswith(b"id: "):
            id_at += 1
            self.last_id = complete[id_at + 4 : complete.index(b"\n", id_at)].decode()
        frames = complete.count(b"\n\n")
        comments = complete.count(b"\n\n:") + (complete[:1] == b":")
        if frames - comments > complete.count(b"data:"):
            totals.framing_errors += 1  # an event frame without data
        payloads = BENCH_DATA.findall(complete)
        totals.comments += comments
        totals.control += frames - comments - len(payloads)
        last_seq = self.last_seq
        latencies = totals.latencies_ms if len(totals.latencies_ms) < MAX_SAMPLES else None
        for stamp, raw_seq in payloads:
            seq = int(raw_seq)
            if seq <= last_seq:
                totals.duplicates += 1
                continue
            last_seq = seq
            self.seen += 1
            totals.received += 1
            if latencies is not None:
                latencies.append((now - float(stamp)) * 1000.0)
        self.last_seq = last_seq

    def on_message_complete(self) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection (the client side)."""
        if self.transport is not None:
            self.transport.close()


class Swarm:
    """Opens, holds and reopens many SSEStreams against one server."""

    def __init__(self, host: str, port: int, sources: Sequence[str] = ("127.0.0.1",)) -> None:
        self.host = host
        self.port = port
        self.sources = list(sources)
        self.totals = Totals()
        self.streams: list[SSEStream] = []
        self.failures = 0

    async def open_one(
        self, path: str, channel: str, index: int, prev: SSEStream | None = None
    ) -> SSEStream | None:
        """Connect one stream and wait for its response headers (None when it failed)."""
        loop = asyncio.get_running_loop()
        source = self.sources[index % len(self.sources)]
        try:
            sock = await asyncio.wait_for(self._connect(source), 10)
            _, stream = await loop.create_connection(
                lambda: SSEStream(self.totals, f"{self.host}:{self.port}", path, channel, prev),
                sock=sock,
            )
            if await asyncio.wait_for(stream.connected, 20):
                return stream
            stream.close()
        except (OSError, TimeoutError):
            pass
        self.failures += 1
        return None

    async def _connect(self, source: str) -> socket.socket:
        """A connected non-blocking socket from ``source``.

        IP_BIND_ADDRESS_NO_PORT leaves the port to connect(): bind() alone searches for a free
        port itself, which gets slower with every port in use (quadratic over 20k streams).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if source != "127.0.0.1":
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def open_many(
        self, targets: Sequence[tuple[str, str]], *, concurrency: int = 500, deadline: float = 120
    ) -> float:
        """Open one stream per ``(path, channel)``; returns seconds until all answered."""
        sem = asyncio.Semaphore(concurrency)
        start = time.perf_counter()
        base = len(self.streams)

        async def one(i: int, path: str, channel: str) -> None:
            async with sem:
                stream = await self.open_one(path, channel, base + i)
                if stream is not None:
                    self.streams.append(stream)

        await asyncio.wait_for(
            asyncio.gather(*(one(i, p, c) for i, (p, c) in enumerate(targets))), deadline
        )
        return time.perf_counter() - start

    async def reopen_all(self, *, concurrency: int = 1000, deadline: float = 120) -> float:
        """Drop every stream at once and reconnect each with its Last-Event-ID."""
        old = self.streams
        self.streams = []
        for stream in old:
            stream.close()
        sem = asyncio.Semaphore(concurrency)
        start = time.perf_counter()

        async def one(i: int, prev: SSEStream) -> None:
            async with sem:
                stream = await self.open_one(prev.path, prev.channel, i, prev)
                if stream is not None:
                    self.streams.append(stream)

        await asyncio.wait_for(asyncio.gather(*(one(i, s) for i, s in enumerate(old))), deadline)
        return time.perf_counter() - start

    async def close_all(self, timeout: float = 10) -> None:
        """Close every stream and wait (bounded) until the transports are gone."""
        for stream in self.streams:
            stream.close()
        if self.streams:
            await asyncio.wait([s.done for s in self.streams], timeout=timeout)
        self.streams = []

    def open_count(self) -> int:
        """Streams still connected."""
        return sum(1 for s in self.streams if not s.done.done())

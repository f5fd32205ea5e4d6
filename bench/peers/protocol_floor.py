"""The stream floor: SSE streams on a bare uvloop ``asyncio.Protocol``, no framework, no hub.

What any Python SSE server pays at least on this machine: one protocol object per stream with
httptools parsing its request, and for each published batch one chunk written per subscriber
(a broadcast chunk framed once). It speaks the benchmark's endpoints (``GET /sse/{channel}``,
``POST /publish`` with ``[{"channel", "data"}]``, ``GET /healthz``); nothing else.

    python bench/peers/protocol_floor.py 8000
"""

from __future__ import annotations

import asyncio
import json
import sys

import httptools
import uvloop

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"

channels: dict[str, set[asyncio.Transport]] = {}


def chunk(body: bytes) -> bytes:
    """``body`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(body), body)


class FloorProtocol(asyncio.Protocol):
    """One client connection: a stream once it asked for one, else request/response."""

    __slots__ = ("body", "channel", "parser", "transport", "url")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.channel: str | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.channel is None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None:
            subs = channels.get(self.channel)
            if subs is not None:
                subs.discard(self.transport)  # type: ignore[arg-type]
                if not subs:
                    del channels[self.channel]

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, body = self.url.decode(), b"".join(self.body)
        self.url, self.body = b"", []
        transport = self.transport
        assert transport is not None
        if url.startswith("/sse/"):
            self.channel = url[len("/sse/") :]
            channels.setdefault(self.channel, set()).add(transport)
            transport.write(HEAD + chunk(b"event: connected\ndata: {}\n\n"))
        elif url == "/publish":
            published = publish(json.loads(body))
            answer = b'{"published": %d}' % published
            transport.write(OK % (len(answer), answer))
        elif url == "/healthz":
            transport.write(OK % (2, b"{}"))
        else:
            transport.write(NOT_FOUND)


def publish(items: list[dict[str, object]]) -> int:
    """Frame a batch per channel, then write each channel's chunk to its subscribers."""
    frames: dict[str, list[bytes]] = {}
    for item in items:
        data = item["data"]
        text = data if isinstance(data, str) else json.dumps(data)
        frames.setdefault(str(item["channel"]), []).append(b"data: %b\n\n" % text.encode())
    for name, parts in frames.items():
        data = chunk(b"".join(parts))
        for transport in channels.get(name, ()):
            transport.write(data)
    return len(items)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FloorProtocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))

"""Raw-socket abuse against a real server while a normal client keeps receiving every event.

Garbage bytes, slowloris half requests, oversize headers and oversize bodies each get an error
or a closed socket; the live stream meanwhile gets every event, in order, without a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator

import httpx

from harness import open_stream, publish, raw_exchange, running_hub
from ssehub.settings import Settings

GARBAGE = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS ClientHello
    b"\x00" * 1024 + b"\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"GET /\x00\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/v1/publish/x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
    b"\xff\xfe\xfd" * 300 + b"\n\n",
]


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


@contextlib.asynccontextmanager
async def steady_publisher(
    client: httpx.AsyncClient, base: str, channel: str
) -> AsyncIterator[list[int]]:
    """Publish 0, 1, 2... every 20 ms until the block ends; yields the published numbers."""
    published: list[int] = []
    stop = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            await publish(client, base, channel, len(published))
            published.append(len(published))
            await asyncio.sleep(0.02)

    task = asyncio.create_task(run())
    try:
        yield published
    finally:
        stop.set()
        await task


async def test_abuse_does_not_hurt_a_live_client(client: httpx.AsyncClient) -> None:
    settings = Settings(_env_file=None, max_request_bytes=65536)  # type: ignore[call-arg]
    async with running_hub(settings) as hub:
        url = urllib.parse.urlsplit(hub.url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        async with open_stream(client, f"{hub.url}/api/v1/sse/stream/live") as reader:
            async with steady_publisher(client, hub.url, "live") as published:
                slow = [await asyncio.open_connection(host, port) for _ in range(30)]
                for _, writer in slow:
                    writer.write(b"GET /api/v1/sse/stream/x HTTP/1.1\r\nHost: x\r\n")
                for payload in GARBAGE * 3:
                    data = await raw_exchange(hub.url, payload)
                    assert data == b"" or status_of(data) == 400, data[:200]
                big_header = b"X-Big: " + b"a" * 300_000 + b"\r\n\r\n"
                data = await raw_exchange(
                    hub.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big_header
                )
                # The hub bounds the head itself (max_header_bytes), nginx or not.
                assert status_of(data) == 431 and b"headers_too_large" in data, data[:200]
                declared = (
                    b"POST /api/v1/publish/x HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
                )
                data = await raw_exchange(hub.url, declared)
                assert status_of(data) == 413 and b"payload_too_large" in data

                chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
                chunked = (
                    b"POST /api/v1/publish/x HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + chunk * 20
                    + b"0\r\n\r\n"
                )
                data = await raw_exchange(hub.url, chunked)
                assert status_of(data) == 413 and b"payload_too_large" in data
                for _, writer in slow:  # slowloris: one more header line each, never the end
                    writer.write(b"X-Slow: 1\r\n")
                start = len(reader.data)
                await reader.wait_for(lambda r: len(r.data) >= start + 10, timeout=10)
                assert (await client.get(f"{hub.url}/healthz")).status_code == 200
            await reader.wait_for(lambda r: len(r.data) >= len(published), timeout=10)
            assert reader.data == [str(n) for n in published]
            for _, writer in slow:
                writer.close()

"""Several hub processes and crashes: no byte lost or duplicated.

Two ``ssehub serve`` processes share PostgreSQL and Redis: a reader on one is woken by appends
on the other, a producer whose answer was lost retries on the other, and a reader of a killed
process resumes on the other from its last offset. A hub killed during a chunked append stores
nothing of it, and the producer's retry after the restart is stored once.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from ds_support import MOUNT, hub_env, shared_store_env

from harness import HubProcess, free_port, start_hub_process

pytestmark = pytest.mark.timeout(240)


def control_events(text: str) -> list[dict[str, object]]:
    """The parsed ``control`` events of an SSE body."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        if "event: control" in lines:
            data = "".join(line[5:] for line in lines if line.startswith("data:"))
            events.append(orjson.loads(data))
    return events


def send_and_hang_up(url: str, headers: dict[str, str], body: bytes) -> None:
    """Send a POST and close the socket without reading the answer (a client that timed out)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


async def read_all(client: httpx.AsyncClient, url: str) -> bytes:
    response = await client.get(url, params={"offset": "-1"})
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.redis
async def test_two_processes_share_streams_producers_and_wake_ups(tmp_path: Path) -> None:
    with shared_store_env() as shared:
        a = start_hub_process(tmp_path, hub_env(**shared), start_timeout=60)
        b = start_hub_process(tmp_path, hub_env(**shared), start_timeout=60)
        try:
            await exercise_two_processes(a, b)
        finally:
            a.kill()
            b.kill()


async def exercise_two_processes(a: HubProcess, b: HubProcess) -> None:
    path = f"{MOUNT}/chat/{uuid.uuid4().hex}"
    text = {"Content-Type": "text/plain"}
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as client:
        assert (await client.put(a.url + path, headers=text)).status_code == 201
        # A long-poll on A is answered by an append on B (woken through the broker).
        poll = asyncio.create_task(
            client.get(a.url + path, params={"offset": "-1", "live": "long-poll"})
        )
        await asyncio.sleep(0.3)
        assert (await client.post(b.url + path, headers=text, content=b"one,")).status_code == 204
        answer = await poll
        assert answer.status_code == 200 and answer.content == b"one,"
        # A producer's append reaches A, its answer is lost; the retry on B is a duplicate.
        producer = {**text, "Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "0"}
        send_and_hang_up(a.url + path, producer, b"two,")
        retry = await client.post(b.url + path, headers=producer, content=b"two,")
        assert retry.status_code in (200, 204), retry.text
        again = await client.post(b.url + path, headers=producer, content=b"two,")
        assert again.status_code == 204 and again.headers["producer-seq"] == "0"
        assert await read_all(client, b.url + path) == b"one,two,"
        # A reader of A keeps its last offset, A dies, the reader resumes on B.
        first = await client.get(a.url + path, params={"offset": "-1"})
        offset = first.headers["stream-next-offset"]
    a.kill()
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as client:
        last = {**text, "Stream-Closed": "true"}
        assert (await client.post(b.url + path, headers=last, content=b"three")).status_code == 204
        resumed = await client.get(b.url + path, params={"offset": offset, "live": "sse"})
        full = await read_all(client, b.url + path)
    assert full == b"one,two,three"
    assert "event: data\ndata:three\n" in resumed.text  # only what came after the offset
    assert control_events(resumed.text)[-1]["streamClosed"] is True


@pytest.mark.slow
async def test_hub_killed_during_a_chunked_append_stores_nothing_of_it(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/ds.db"
    env = hub_env(SSEHUB_DATABASE_URL=db)
    port = free_port()
    hub = start_hub_process(tmp_path, env, port=port, start_timeout=60)
    path = f"{MOUNT}/jobs/{uuid.uuid4().hex}"
    text = {"Content-Type": "text/plain"}
    producer = {**text, "Producer-Id": "job", "Producer-Epoch": "3", "Producer-Seq": "0"}
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.put(hub.url + path, headers=text)).status_code == 201
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = "".join(f"{k}: {v}\r\n" for k, v in producer.items())
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhalf-\r\n".encode()
            )
            hub.kill()  # mid-body: the append was never complete
    finally:
        hub.kill()
    hub = start_hub_process(tmp_path, env, port=port, start_timeout=60)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            assert await read_all(client, hub.url + path) == b""

            async def body():  # type: ignore[no-untyped-def]
                for part in (b"half-", b"and-", b"whole"):
                    yield part

            retry = await client.post(hub.url + path, headers=producer, content=body())
            assert retry.status_code == 200, retry.text
            duplicate = await client.post(hub.url + path, headers=producer, content=b"x")
            assert duplicate.status_code == 204
            assert await read_all(client, hub.url + path) == b"half-and-whole"
    finally:
        hub.kill()

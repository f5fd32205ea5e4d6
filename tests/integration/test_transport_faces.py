"""The HTTP transport's two faces (sync on httpx, async on aiohttp) answer alike, request by
request: what reaches the hub, retries under one Idempotency-Key, and every refusal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from ssehub.runs import RunClosed
from ssehub.transport import HttpTransport, PublishFailed

CLOSE = None  # a scripted answer: drop the connection without answering


def problem(
    status: int, code: str, message: str, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return status, {"Content-Type": "application/json", **headers}, body


OK = (200, {"Content-Type": "application/json"}, b'{"id":"e-1","channel":"c"}')
BUSY = problem(503, "unavailable", "busy", **{"Retry-After": "0"})

SCRIPTS: dict[str, list[Any]] = {
    "ok": [OK],
    "503s then ok": [BUSY, BUSY, OK],
    "lost connection then ok": [CLOSE, OK],
    "503 then 409, not stored": [BUSY, problem(409, "run_closed", "ended")],
    "409": [problem(409, "run_closed", "the run already ended")],
    "400": [problem(400, "invalid_event", "bad event")],
    "401": [problem(401, "unauthorized", "token required")],
    "403": [problem(403, "forbidden", "not yours")],
    "413": [problem(413, "payload_too_large", "too big")],
    "415": [problem(415, "unsupported_media_type", "json only")],
    "429": [problem(429, "rate_limited", "slow down", **{"Retry-After": "1"})],
    "500 without a JSON body": [(500, {"Content-Type": "text/plain"}, b"oops")],
    "503 until retries run out": [BUSY, BUSY, BUSY],
    "connection lost every time": [CLOSE, CLOSE, CLOSE],
}


@dataclass
class Scripted:
    """A loopback HTTP/1.1 server answering its requests from a script, recording each one."""

    script: list[Any]
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head.decode().split("\r\n")
                pairs = (h.split(": ", 1) for h in rest if h)
                headers = {name.lower(): value for name, value in pairs}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append((line, headers, body))
                answer = self.script[min(len(self.seen), len(self.script)) - 1]
                if answer is CLOSE:
                    break
                status, extra, content = answer
                lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}"]
                lines += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + content)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def scripted(script: list[Any]) -> AsyncIterator[tuple[Scripted, str]]:
    server = Scripted(script)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def outcome(error: BaseException | None) -> tuple[Any, ...]:
    if error is None:
        return ("ok",)
    if isinstance(error, PublishFailed):
        detail = "" if error.code == "unavailable" else str(error)  # the library's own words
        return (type(error).__name__, error.status, error.code, detail)
    return (type(error).__name__, str(error))


async def send(face: str, transport: HttpTransport, channel: str, data: Any) -> None:
    """``transport.send`` (in a thread, as a worker calls it) or ``transport.asend``."""
    if face == "sync":
        await asyncio.to_thread(transport.send, channel, "token", data)
    else:
        await transport.asend(channel, "token", data)


async def publish(face: str, script: list[Any]) -> tuple[tuple[Any, ...], list[Any]]:
    """One publish through ``face``; its outcome and the requests the hub saw."""
    async with scripted(script) as (server, url):
        transport = HttpTransport(url, "tok", retries=2, backoff=0.001)
        error: BaseException | None = None
        try:
            await send(face, transport, "a:b c", {"n": 1, "t": "é"})
        except (PublishFailed, RunClosed) as exc:
            error = exc
        finally:
            await transport.aclose()
    keys = {headers.get("idempotency-key") for _, headers, _ in server.seen}
    assert len(keys) == 1 and None not in keys  # every retry carries the first attempt's key
    requests = [
        (line, headers["content-type"], headers["authorization"], body)
        for line, headers, body in server.seen
    ]
    return outcome(error), requests


@pytest.mark.parametrize("case", list(SCRIPTS))
async def test_sync_and_async_faces_answer_alike(case: str) -> None:
    sync, async_ = await publish("sync", SCRIPTS[case]), await publish("async", SCRIPTS[case])
    assert async_ == sync
    if case.startswith("503 then 409"):
        # A retry of an attempt that landed is answered 200 by the hub: a 409 means the
        # message was not stored (before, it was taken for a success: a silent loss).
        assert sync[0] == ("RunClosed", "ended")
    line, content_type, authorization, body = sync[1][0]
    assert line == "POST /api/v1/publish/a:b%20c HTTP/1.1"
    assert (content_type, authorization) == ("application/json", "Bearer tok")
    assert orjson.loads(body) == {"event": "token", "data": {"n": 1, "t": "é"}}


async def test_an_unreachable_hub_is_a_503_publish_failure_on_both_faces() -> None:
    async with scripted([]) as (_, url):
        pass  # closed: nothing listens on the port any more
    for face in ("sync", "async"):
        transport = HttpTransport(url, retries=1, backoff=0.001)
        with pytest.raises(PublishFailed) as failure:
            await send(face, transport, "c", {})
        await transport.aclose()
        assert (failure.value.status, failure.value.code) == (503, "unavailable"), face
        assert str(failure.value).startswith("hub unreachable: "), face


async def test_integers_past_64_bits_reach_the_hub_exactly_on_both_faces() -> None:
    for face in ("sync", "async"):
        async with scripted([OK]) as (server, url):
            transport = HttpTransport(url)
            await send(face, transport, "c", {"n": 2**70})
            await transport.aclose()
        assert server.seen[0][2] == b'{"event":"token","data":{"n":1180591620717411303424}}', face


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
async def test_non_finite_numbers_are_refused_before_sending_on_both_faces(value: float) -> None:
    """JSON has no NaN or infinity: both faces raise, as httpx always did, instead of sending
    a body no JSON parser takes (or a silent ``null``)."""
    for face in ("sync", "async"):
        async with scripted([OK]) as (server, url):
            transport = HttpTransport(url)
            with pytest.raises(ValueError, match="Out of range float"):
                await send(face, transport, "c", {"x": value})
            await transport.aclose()
        assert server.seen == [], face

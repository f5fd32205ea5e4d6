"""Raw-socket attacks on the wire publish: every answer must match the ASGI path's.

Each case is sent to two hubs with the same settings, ``fast_publish`` on and off, on one new
connection; the answers (shaped as in ``test_wire_publish``), access lines and counters match.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import pytest

from harness import RunningHub, wait_until
from test_wire_publish import (
    ALICE,
    PLAIN,
    RID,
    Access,
    Conn,
    access,  # noqa: F401  (fixture)
    hub_pair,
    metric_lines,
    request,
    shape,
)

__all__ = ["access"]

GET_METRICS = b"GET /metrics HTTP/1.1\r\nHost: hub\r\n\r\n"


END = b"GET /end HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n"


async def transcript(
    hub: RunningHub, writes: list[bytes], answers: int = 10, *, split: bool = False
) -> list[bytes]:
    """Send ``writes`` (byte by byte when ``split``) and a closing GET on one connection; the
    responses (shaped) until the server closes."""
    writes = [*writes, END]
    conn = await Conn.open(hub)
    try:
        for data in writes:
            if split:
                for i in range(len(data)):
                    await conn.send(data[i : i + 1])
            else:
                await conn.send(data)
        got = []
        for _ in range(answers):
            answer = await conn.response()
            if not answer:
                break
            got.append(shape(answer))
        return got
    finally:
        conn.close()
        state = hub.server.server_state
        await wait_until(lambda: not state.tasks and not state.connections)


def head_with(extra: bytes, body: bytes = PLAIN, *, version: bytes = b"1.1") -> bytes:
    """A publish to ``news`` with raw header lines ``extra`` before the blank line."""
    return (
        b"POST /api/v1/publish/news HTTP/" + version + b"\r\nHost: hub\r\n"
        b"Content-Type: application/json\r\nAuthorization: " + ALICE.encode() + b"\r\n"
        + extra + b"\r\n" + body
    )  # fmt: skip


CL = b"Content-Length: %d\r\n" % len(PLAIN)
CHUNKED = b"%x\r\n%s\r\n0\r\n\r\n" % (len(PLAIN), PLAIN)
# (name, writes, answers expected at most)
SMUGGLING: list[tuple[str, list[bytes], int]] = [
    ("CL and TE", [head_with(CL + b"Transfer-Encoding: chunked\r\n", CHUNKED)], 2),
    ("TE and CL", [head_with(b"Transfer-Encoding: chunked\r\n" + CL, CHUNKED)], 2),
    ("two equal CL", [head_with(CL + CL)], 2),
    ("two different CL", [head_with(CL + b"Content-Length: 5\r\n")], 2),
    ("negative CL", [head_with(b"Content-Length: -1\r\n")], 2),
    ("plus CL", [head_with(b"Content-Length: +%d\r\n" % len(PLAIN))], 2),
    ("leading zero CL", [head_with(b"Content-Length: 0%d\r\n" % len(PLAIN))], 2),
    ("huge CL", [head_with(b"Content-Length: 99999999999999999999999\r\n")], 2),
    ("CL with spaces", [head_with(b"Content-Length:   %d  \r\n" % len(PLAIN))], 2),
    ("CL list", [head_with(b"Content-Length: %d, %d\r\n" % (len(PLAIN), len(PLAIN)))], 2),
    ("short CL then garbage", [head_with(b"Content-Length: 10\r\n")], 3),
    ("long CL", [head_with(b"Content-Length: 40\r\n", PLAIN + b"        ")], 2),
    ("obs-fold", [head_with(CL + b"X-Request-ID: a\r\n b\r\n")], 2),
    ("obs-fold in CT", [head_with(CL).replace(b"application/json", b"application/\r\n json")], 2),
    ("TE identity", [head_with(CL + b"Transfer-Encoding: identity\r\n")], 2),
    ("space before colon", [head_with(b"Content-Length : %d\r\n" % len(PLAIN))], 2),
    ("bare LF", [head_with(CL).replace(b"\r\n", b"\n")], 2),
    ("NUL in header", [head_with(CL + b"X-A: a\x00b\r\n")], 2),
    ("lower method", [head_with(CL).replace(b"POST", b"post", 1)], 2),
    ("absolute form", [head_with(CL).replace(b"/api", b"http://hub/api", 1)], 2),
    ("HTTP/1.0 keep-alive", [head_with(CL + b"Connection: keep-alive\r\n", version=b"1.0")], 2),
    ("HTTP/1.1 Close", [head_with(CL + b"Connection: Close\r\n")], 2),
    ("close list", [head_with(CL + b"Connection: keep-alive, close\r\n")], 2),
    ("expect", [head_with(CL + b"Expect: 100-continue\r\n")], 3),
    ("expect other", [head_with(CL + b"Expect: nothing\r\n")], 3),
    ("upgrade", [head_with(CL + b"Connection: Upgrade\r\nUpgrade: h2c\r\n")], 2),
    ("two auth good first", [head_with(CL + b"Authorization: Bearer nope\r\n")], 2),
    ("two auth bad first", [head_with(CL).replace(b"Authorization: ", b"Authorization: Bearer nope\r\nAuthorization: ")], 2),  # noqa: E501
    ("two content types", [head_with(CL + b"Content-Type: application/json\r\n")], 2),
    ("odd case CT", [head_with(CL).replace(b"application/json", b"Application/JSON")], 2),
    ("CT no space", [head_with(CL).replace(b"application/json", b"application/json;charset=utf-8")], 2),  # noqa: E501
    ("CT utf-8 caps", [head_with(CL).replace(b"application/json", b"application/json; charset=UTF-8")], 2),  # noqa: E501
    ("two request ids", [head_with(CL + b"X-Request-ID: first\r\nX-Request-ID: second\r\n")], 2),
    ("bad then good rid", [head_with(CL + b"X-Request-ID: a b\r\nX-Request-ID: good\r\n")], 2),
    ("empty rid", [head_with(CL + b"X-Request-ID: \r\n")], 2),
    ("long rid", [head_with(CL + b"X-Request-ID: " + b"r" * 5000 + b"\r\n")], 2),
    ("latin-1 rid", [head_with(CL + b"X-Request-ID: caf\xe9\r\n")], 2),
    ("odd case names", [head_with(CL).replace(b"Content-Type", b"cOnTeNt-TyPe").replace(b"Authorization", b"AUTHORIZATION")], 2),  # noqa: E501
    ("empty idempotency key", [head_with(CL + b"Idempotency-Key: \r\n")], 2),
    ("latin-1 idempotency key", [head_with(CL + b"Idempotency-Key: k\xe9\r\n")], 2),
    ("key of 200", [head_with(CL + b"Idempotency-Key: " + b"k" * 200 + b"\r\n")], 2),
    ("forwarded proto", [head_with(CL + b"X-Forwarded-Proto: https\r\n")], 2),
    ("forwarded rfc", [head_with(CL + b"Forwarded: for=10.0.0.1\r\n")], 2),
    ("x-real-ip", [head_with(CL + b"X-Real-IP: 10.0.0.1\r\n")], 2),
    ("cookie token", [head_with(CL).replace(b"Authorization: " + ALICE.encode(), b"Cookie: ssehub_token=" + ALICE[7:].encode())], 2),  # noqa: E501
]  # fmt: skip


def channel_request(channel: bytes) -> bytes:
    return head_with(CL).replace(b"/publish/news", b"/publish/" + channel, 1)


CHANNELS: list[tuple[str, list[bytes], int]] = [
    (name, [channel_request(channel)], 2)
    for name, channel in [
        ("long channel", b"news:" + b"a" * 3000),
        ("very long channel", b"news:" + b"a" * 40000),
        ("dots", b"news:.."),
        ("encoded slash", b"news%2Fa"),
        ("encoded colon", b"news%3Aa"),
        ("bad escape", b"news%zz"),
        ("utf-8 channel", "news:é".encode()),
        ("double slash", b"/news"),
        ("dot segment", b"../publish/news"),
        ("semicolon", b"news;a=1"),
        ("fragment", b"news#x"),
        ("empty query", b"news?"),
        ("access token", b"news?access_token=" + ALICE[7:].encode()),
        ("ticket", b"news?ticket=abc"),
        ("star", b"news:*"),
        ("tab", b"news\ta"),
    ]
]


@pytest.mark.parametrize(("name", "writes", "answers"), SMUGGLING + CHANNELS, ids=lambda v: v if isinstance(v, str) else "")  # noqa: E501
async def test_odd_requests_are_answered_alike(
    name: str, writes: list[bytes], answers: int, access: Access
) -> None:
    async with hub_pair() as pair:
        got = []
        for hub in pair.hubs:
            lines = len(access.lines)
            got.append((await transcript(hub, writes, answers), access.lines[lines:]))
        assert got[0] == got[1], name
        assert await metric_lines(pair.fast) == await metric_lines(pair.plain)

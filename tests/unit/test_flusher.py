"""The direct path's flush: one write per stream and turn, one chunk shared by equal streams."""

from __future__ import annotations

import asyncio
from typing import Any

from ssehub.channels import Selector
from ssehub.connection import Connection
from ssehub.event import make_event
from ssehub.fastpath import DirectStream


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


class State:
    """The part of uvicorn's ServerState a DirectStream uses."""

    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.tasks: set[Any] = set()


async def _nothing() -> None:
    pass


def streams(count: int) -> list[tuple[Connection, RecordingTransport]]:
    state = State()
    opened = []
    for i in range(count):
        conn = Connection(client_id=f"c{i}", selector=Selector.of(["ch"]))
        transport = RecordingTransport()
        conn.attach(DirectStream(transport, conn, _nothing, None, state))  # type: ignore[arg-type]
        opened.append((conn, transport))
    return opened


def chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


async def test_a_broadcast_writes_the_same_bytes_to_every_stream() -> None:
    opened = streams(3)
    event = make_event("ch", "e", "x")
    for conn, _ in opened:
        conn.push(event)
    await asyncio.sleep(0)
    written = [transport.written for _, transport in opened]
    assert [len(w) for w in written] == [1, 1, 1]
    assert written[0][0] == chunk(event.frame)
    assert written[1][0] is written[0][0] and written[2][0] is written[0][0]
    assert [conn.bytes_sent for conn, _ in opened] == [len(event.frame)] * 3


async def test_a_burst_is_one_chunk_per_stream_joined_once() -> None:
    opened = streams(3)
    events = [make_event("ch", "e", str(i)) for i in range(4)]
    for event in events:
        for conn, _ in opened:
            conn.push(event)
    await asyncio.sleep(0)
    body = b"".join(e.frame for e in events)
    written = [transport.written for _, transport in opened]
    assert [len(w) for w in written] == [1, 1, 1]
    assert written[0][0] == chunk(body)
    assert all(w[0] is written[0][0] for w in written)
    assert [conn.bytes_sent for conn, _ in opened] == [len(body)] * 3
    assert [conn.messages_sent for conn, _ in opened] == [4] * 3


async def test_streams_with_different_frames_each_get_their_own() -> None:
    (a, ta), (b, tb), (c, tc) = streams(3)
    first, second = make_event("ch", "e", "1"), make_event("ch", "e", "2")
    a.push(first)
    b.push(first)
    b.push(second)
    c.push(second)
    await asyncio.sleep(0)
    assert ta.written == [chunk(first.frame)]
    assert tb.written == [chunk(first.frame + second.frame)]
    assert tc.written == [chunk(second.frame)]
    assert (a.bytes_sent, b.bytes_sent, c.bytes_sent) == (
        len(first.frame),
        len(first.frame + second.frame),
        len(second.frame),
    )


async def test_a_closed_stream_gets_its_frames_then_the_last_chunk() -> None:
    ((conn, transport),) = streams(1)
    event = make_event("ch", "e", "x")
    conn.push(event)
    conn.close("shutdown")
    await asyncio.sleep(0)
    assert transport.written == [chunk(event.frame), b"0\r\n\r\n"]
    assert transport.closing

"""The Connection's writer seam: a writer is woken, takes whole chunks, is aborted when stuck."""

from __future__ import annotations

import asyncio

from ssehub.channels import Selector
from ssehub.connection import IDLE, SLOW_CONSUMER, AwaitingWriter, Connection
from ssehub.event import make_event
from ssehub.fastpath import _address


class RecordingWriter:
    """A writer that records what the Connection asks of it."""

    def __init__(self, *, waiting: bool = True) -> None:
        self.waiting = waiting
        self.wakes = 0
        self.aborts = 0

    def wake(self) -> None:
        self.wakes += 1

    def abort(self) -> None:
        self.aborts += 1


def connection(max_buffer: int = 100) -> Connection:
    return Connection(client_id="c", selector=Selector.of(["ch"]), max_buffer=max_buffer)


def test_a_burst_is_taken_as_one_chunk_and_counted() -> None:
    conn = connection()
    writer = RecordingWriter()
    conn.attach(writer)
    events = [make_event("ch", "e", str(i)) for i in range(3)]
    for event in events:
        conn.push(event)
    assert writer.wakes == 3
    assert conn.oldest_at == events[0].published_at
    chunk = conn.take_chunk()
    assert chunk == b"".join(e.frame for e in events)
    assert conn.bytes_sent == len(chunk)
    assert conn.oldest_at == 0.0  # a new latency window
    assert conn.take_chunk() is None


def test_a_single_frame_is_taken_as_the_same_bytes() -> None:
    conn = connection()
    event = make_event("ch", "e", "x")
    conn.push(event)
    assert conn.take_chunk() is event.frame  # a broadcast's bytes are shared, not copied


def test_attaching_a_writer_wakes_it_for_frames_already_queued() -> None:
    conn = connection()
    conn.push(make_event("ch", "e", "x"))
    writer = RecordingWriter()
    conn.attach(writer)
    assert writer.wakes == 1


def pushed(count: int, *, max_buffer: int, waiting: bool) -> tuple[Connection, RecordingWriter]:
    """A connection with a writer (waiting or stuck in a write) after ``count`` pushes."""
    conn = connection(max_buffer=max_buffer)
    writer = RecordingWriter(waiting=waiting)
    conn.attach(writer)
    for i in range(count):
        conn.push(make_event("ch", "e", str(i)))
    return conn, writer


def test_a_stuck_writer_makes_a_full_buffer_a_slow_consumer() -> None:
    conn, writer = pushed(3, max_buffer=2, waiting=False)
    assert conn.close_reason == SLOW_CONSUMER
    assert writer.aborts == 1
    assert conn.take_chunk() is None  # its unsent frames are dropped


def test_an_idle_writer_takes_a_burst_up_to_the_burst_factor() -> None:
    conn, writer = pushed(20, max_buffer=2, waiting=True)
    assert not conn.closed and writer.aborts == 0
    conn.push(make_event("ch", "e", "one too many"))
    assert conn.close_reason == SLOW_CONSUMER


def test_an_idle_close_aborts_the_writer_and_a_normal_close_only_wakes_it() -> None:
    idle, ended = connection(), connection()
    idle_writer, ended_writer = RecordingWriter(), RecordingWriter()
    idle.attach(idle_writer)
    ended.attach(ended_writer)
    idle.close(IDLE)
    ended.close("shutdown")
    assert (idle_writer.aborts, idle_writer.wakes) == (1, 1)
    assert (ended_writer.aborts, ended_writer.wakes) == (0, 1)


def test_a_detached_writer_is_neither_woken_nor_aborted() -> None:
    conn = connection(max_buffer=1)
    writer = RecordingWriter()
    conn.attach(writer)
    conn.attach(None)
    conn.push(make_event("ch", "e", "1"))
    conn.close(SLOW_CONSUMER)
    assert (writer.wakes, writer.aborts) == (0, 0)


async def test_next_chunk_waits_for_frames_then_ends_once_closed() -> None:
    conn = connection()
    reading = asyncio.create_task(conn.next_chunk())
    await asyncio.sleep(0)
    assert isinstance(conn.writer, AwaitingWriter) and conn.writer.waiting
    event = make_event("ch", "e", "x")
    conn.push(event)
    assert await asyncio.wait_for(reading, 5) == event.frame
    conn.close("shutdown")
    assert await asyncio.wait_for(conn.next_chunk(), 5) is None


def test_equal_selectors_are_one_shared_object() -> None:
    first, second = Selector.of(["b", "a:*", "a"]), Selector.of(["b", "a:*", "a"])
    assert first is second
    assert first.names == ("a", "b", "a:*") == tuple(first)
    assert connection().channel_names == ("ch",)


def test_addresses_read_from_the_transport_are_shaped_as_uvicorn_does() -> None:
    assert _address(("127.0.0.1", 8000)) == ("127.0.0.1", 8000)
    assert _address(("::1", 8000, 0, 0)) == ("::1", 8000)  # IPv6: host and port only
    assert _address("/run/ssehub.sock") == ("/run/ssehub.sock", None)
    assert _address("") is None and _address(None) is None


def test_client_details_are_kept_as_fields_and_read_as_before() -> None:
    conn = Connection(
        client_id="c", selector=Selector.of(["ch"]), info={"ip": "10.0.0.1", "user_agent": "ua"}
    )
    assert (conn.ip, conn.user_agent) == ("10.0.0.1", "ua")
    assert conn.info == {"ip": "10.0.0.1", "user_agent": "ua"}


def test_queued_frames_are_listed_in_order_one_or_many() -> None:
    conn = connection()
    assert conn.queued == []
    events = [make_event("ch", "e", str(i)) for i in range(3)]
    conn.push(events[0])
    assert conn.queued == [events[0].frame]
    conn.push(events[1])
    conn.push(events[2])
    assert conn.queued == [e.frame for e in events]


def test_take_hands_over_the_frames_as_queued_and_starts_a_new_window() -> None:
    conn = connection()
    event = make_event("ch", "e", "x")
    conn.push(event)
    assert conn.take() is event.frame
    assert conn.oldest_at == 0.0
    assert not conn.take()
    conn.push(event)
    conn.push(event)
    assert conn.take() == [event.frame, event.frame]


def test_a_buffer_of_one_frame_still_applies_the_slow_consumer_policy() -> None:
    conn, writer = pushed(2, max_buffer=1, waiting=False)
    assert conn.close_reason == SLOW_CONSUMER
    assert writer.aborts == 1


def test_closed_is_told_by_the_close_reason_which_is_never_empty() -> None:
    conn = connection()
    assert not conn.closed and conn.close_reason == ""
    conn.close("")
    assert conn.closed and conn.close_reason == "client_gone"
    conn.close(IDLE)  # the first reason stays
    assert conn.close_reason == "client_gone"


def test_a_buffer_of_no_frames_closes_on_the_first_push() -> None:
    conn, _ = pushed(1, max_buffer=0, waiting=True)
    assert conn.close_reason == SLOW_CONSUMER
    assert conn.take_chunk() is None

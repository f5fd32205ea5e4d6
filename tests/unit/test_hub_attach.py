"""Streams joining a channel whose broker subscription is still being confirmed miss nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from ssehub.brokers import MemoryBroker
from ssehub.channels import Selector
from ssehub.connection import Connection
from ssehub.event import Event, make_event
from ssehub.hub import Hub
from ssehub.parser import SSEDecoder


class PubSubLikeBroker(MemoryBroker):
    """A memory broker whose live delivery, like Redis Pub/Sub, starts only once a listen of
    the channel is confirmed; the test decides when confirmations arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.confirm = asyncio.Event()
        self.active: set[str] = set()
        self.listens = 0

    async def start(self, on_event: Any, on_gap: Any = None) -> None:
        def live(event: Event) -> None:
            if event.channel in self.active:
                on_event(event)

        await super().start(live, on_gap)

    async def listen(self, name: str) -> None:
        self.listens += 1
        await self.confirm.wait()
        self.active.add(name)


def received(conn: Connection) -> tuple[int, list[int]]:
    """The seq a stream starts after (its ``connected`` id) and the seqs it was sent."""
    events = SSEDecoder().feed(b"".join(conn.queued))
    start = int(events[0].id.rsplit("-", 1)[1])
    return start, [int(e.id.rsplit("-", 1)[1]) for e in events[1:]]


async def test_a_second_stream_waits_for_the_first_ones_listen() -> None:
    broker = PubSubLikeBroker()
    hub = Hub(broker, heartbeat_seconds=0)
    broker.confirm.set()  # the hub's own control channel
    await hub.start()
    broker.confirm.clear()
    try:
        first = Connection(client_id="first", selector=Selector.of(["c"]))
        second = Connection(client_id="second", selector=Selector.of(["c"]))
        opening = [asyncio.create_task(hub.open(conn, None)) for conn in (first, second)]
        await asyncio.sleep(0.05)  # let both streams register; the channel's listen is pending
        early = await broker.publish(make_event("c", "e", "before the subscription"))
        broker.confirm.set()
        await asyncio.gather(*opening)
        late = await broker.publish(make_event("c", "e", "after"))
        assert broker.listens == 2  # the control channel and "c" once
        for conn in (first, second):
            start, seqs = received(conn)
            # Whatever a stream's position, it gets every event after it: nothing in between.
            assert seqs == [e.seq for e in (early, late) if e.seq > start], conn.client_id
    finally:
        await hub.close()

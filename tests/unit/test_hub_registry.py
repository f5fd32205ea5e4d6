"""The hub's registry: one way to count a stream, subscribed or fed by its owner, and fan-out."""

from __future__ import annotations

from ssehub.brokers import MemoryBroker
from ssehub.channels import Selector
from ssehub.connection import SHUTDOWN, Connection
from ssehub.event import make_event
from ssehub.hub import Hub


def stream(client_id: str, channel: str = "c") -> Connection:
    return Connection(client_id=client_id, selector=Selector.of([channel]))


async def test_a_registered_stream_is_counted_but_receives_nothing_from_the_broker() -> None:
    hub = Hub(MemoryBroker(), heartbeat_seconds=0)
    await hub.start()
    try:
        owned = stream("owned")
        hub.register(owned)  # fed by its owner, as a chat answer's POST response is
        assert hub.connections == {"owned": owned}
        assert hub.stats.total_connections == 1
        await hub.broker.publish(make_event("c", "e", "x"))
        assert owned.take_chunk() is None
        hub.close_all()
        assert owned.close_reason == SHUTDOWN  # SIGTERM reaches it like any stream
        await hub.detach(owned)
        assert hub.connections == {}
        assert hub.stats.closed == {SHUTDOWN: 1}
    finally:
        await hub.close()


async def test_an_event_reaches_subscribers_in_the_order_they_joined() -> None:
    hub = Hub(MemoryBroker(), heartbeat_seconds=0)
    await hub.start()
    try:
        streams = [stream(f"s{i}") for i in range(50)]
        for conn in streams:
            await hub.open(conn, None)
            conn.take_chunk()  # the opening frames
        reached: list[str] = []
        for conn in streams:
            conn.attach(_Recorder(conn.client_id, reached))
        await hub.broker.publish(make_event("c", "e", "x"))
        assert reached == [conn.client_id for conn in streams]
        await hub.detach(streams[0])
        assert hub.subscriber_counts() == {"c": 49}
    finally:
        await hub.close()


class _Recorder:
    """A writer that notes which stream was woken, in order."""

    waiting = True

    def __init__(self, name: str, reached: list[str]) -> None:
        self.name, self.reached = name, reached

    def wake(self) -> None:
        if self.name not in self.reached:
            self.reached.append(self.name)

    def abort(self) -> None:
        pass

"""The memory cluster state keeps client records compactly and gives them back unchanged."""

from __future__ import annotations

from ssehub.clusterstate.base import ClientRecord
from ssehub.clusterstate.memory import MemoryClusterState


async def test_a_client_record_round_trips_exactly() -> None:
    state = MemoryClusterState()
    record: ClientRecord = {
        "client_id": "c1",
        "user_id": None,
        "ip": "10.0.0.1",
        "user_agent": "ua",
        "channels": ["a", "b:*"],
        "connected_at": 1.5,
        "node": "n1",
    }
    await state.register_client(dict(record))  # type: ignore[arg-type]
    assert await state.locate_client("c1") == record
    assert await state.list_clients() == [record]
    assert isinstance((await state.locate_client("c1"))["channels"], list)  # type: ignore[index]
    assert await state.active_connections() == 1

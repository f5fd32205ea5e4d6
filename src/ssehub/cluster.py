"""Facts shared by every hub process: stream tickets, connection slots, rate buckets, clients.

``ClusterState`` is the seam; ``MemoryClusterState`` serves one process (the memory broker) and
a Redis implementation serves many. Events never pass through it: sending to a client and
disconnecting it go through the broker on the client's reserved channel (``$client:<id>``).
"""

from __future__ import annotations

import time
from typing import Any, Protocol, TypedDict, runtime_checkable

GLOBAL_SCOPE = "global"


def user_scope(user_id: str) -> str:
    """The slot scope counting one user's concurrent streams."""
    return f"user:{user_id}"


class ClientRecord(TypedDict):
    """One open stream as every process sees it (JSON-serialisable)."""

    client_id: str
    user_id: str | None
    ip: str
    user_agent: str
    channels: list[str]
    connected_at: float
    node: str


@runtime_checkable
class ClusterState(Protocol):
    """Cross-process state of the hub. Implementations must make each call atomic.

    A process that dies cannot release what it held: a shared implementation expires the slots
    and client records of ids that ``keepalive`` stopped refreshing (e.g. after 3 intervals).
    """

    async def start(self) -> None:
        """Connect (nothing to do in memory)."""

    async def close(self) -> None:
        """Release connections."""

    async def put_ticket(self, ticket: str, grant: dict[str, Any], ttl: float) -> None:
        """Store a single-use ticket's grant for ``ttl`` seconds."""

    async def take_ticket(self, ticket: str) -> dict[str, Any] | None:
        """Return and delete a ticket's grant (None when unknown, used or expired)."""

    async def acquire_slot(self, scope: str, holder: str, limit: int) -> bool:
        """Add ``holder`` to ``scope`` unless it already holds ``limit`` members; True if added."""

    async def release_slot(self, scope: str, holder: str) -> None:
        """Remove ``holder`` from ``scope`` (no-op when absent)."""

    async def take_token(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        """Token bucket ``key`` (``rate``/s, capacity ``burst``): 0.0 when ``cost`` tokens were
        taken, else the seconds until they are available.

        A cost above ``burst`` is taken once the bucket is full and leaves it in debt, so a
        large batch passes but the average stays at ``rate``.
        """

    async def register_client(self, record: ClientRecord) -> None:
        """Record an open stream."""

    async def unregister_client(self, client_id: str) -> None:
        """Forget a closed stream."""

    async def locate_client(self, client_id: str) -> ClientRecord | None:
        """The record of an open stream on any process, or None."""

    async def list_clients(self) -> list[ClientRecord]:
        """Every open stream of the cluster."""

    async def active_connections(self) -> int:
        """How many streams are open across the cluster."""

    async def keepalive(self, client_ids: list[str]) -> None:
        """This process still holds these streams (called periodically)."""


class MemoryClusterState:
    """Everything in this process's memory: right for one process with the memory broker."""

    def __init__(self) -> None:
        self._tickets: dict[str, tuple[float, dict[str, Any]]] = {}
        self._slots: dict[str, set[str]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._clients: dict[str, ClientRecord] = {}

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def put_ticket(self, ticket: str, grant: dict[str, Any], ttl: float) -> None:
        now = time.monotonic()
        if len(self._tickets) > 1000:
            self._tickets = {k: v for k, v in self._tickets.items() if v[0] > now}
        self._tickets[ticket] = (now + ttl, grant)

    async def take_ticket(self, ticket: str) -> dict[str, Any] | None:
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    async def acquire_slot(self, scope: str, holder: str, limit: int) -> bool:
        holders = self._slots.setdefault(scope, set())
        if holder in holders:
            return True
        if len(holders) >= limit:
            return False
        holders.add(holder)
        return True

    async def release_slot(self, scope: str, holder: str) -> None:
        holders = self._slots.get(scope)
        if holders is not None:
            holders.discard(holder)
            if not holders:
                del self._slots[scope]

    async def take_token(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        now = time.monotonic()
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        tokens, stamp = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - stamp) * rate)
        need = min(cost, burst)
        if tokens >= need:
            self._buckets[key] = (tokens - cost, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (need - tokens) / rate

    async def register_client(self, record: ClientRecord) -> None:
        self._clients[record["client_id"]] = record

    async def unregister_client(self, client_id: str) -> None:
        self._clients.pop(client_id, None)

    async def locate_client(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    async def list_clients(self) -> list[ClientRecord]:
        return list(self._clients.values())

    async def active_connections(self) -> int:
        return len(self._clients)

    async def keepalive(self, client_ids: list[str]) -> None:
        """Nothing expires in memory."""

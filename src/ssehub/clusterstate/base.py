"""The ClusterState protocol: facts shared by every hub process (tickets, slots, rate buckets,
the client registry).

``MemoryClusterState`` serves one process (the memory broker) and ``RedisClusterState`` many.
Events never pass through it: sending to a client and disconnecting it go through the broker on
the client's reserved channel (``$client:<id>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable

GLOBAL_SCOPE = "global"

# A token bucket to take from: key, rate per second, capacity (burst), tokens to take.
Bucket = tuple[str, float, int, int]


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

    async def take_tokens(self, buckets: Sequence[Bucket]) -> list[float]:
        """Take from several token buckets at once, all or none: the seconds each one lacks
        (all 0.0 when every ``cost`` was taken; nothing is taken when one lacks).

        A bucket ``(key, rate, burst, cost)`` fills at ``rate``/s up to ``burst``. A cost
        above ``burst`` is taken once the bucket is full and leaves it in debt, so a large
        batch passes but the average stays at ``rate``. The keys are distinct.
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

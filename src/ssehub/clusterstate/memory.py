"""Cluster state in this process's memory: right for one process with the memory broker."""

from __future__ import annotations

import time
from typing import Any

from .base import ClientRecord

MAX_BUCKETS = 100_000  # rate buckets one process keeps (callers limited recently)
CLIENT_FIELDS = tuple(ClientRecord.__annotations__)
CHANNELS_AT = CLIENT_FIELDS.index("channels")


class MemoryClusterState:
    """Everything in this process's memory: right for one process with the memory broker."""

    def __init__(self) -> None:
        self._tickets: dict[str, tuple[float, dict[str, Any]]] = {}
        self._slots: dict[str, set[str]] = {}
        self._buckets: dict[str, tuple[float, float, float]] = {}  # tokens, stamp, full at
        # Client records as tuples, channels as a tuple: a dict and a list each would cost
        # every idle stream about 0.2 KB more.
        self._clients: dict[str, tuple[Any, ...]] = {}

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
        if key not in self._buckets and len(self._buckets) >= MAX_BUCKETS:
            self._forget_buckets(now)
        tokens, stamp, _ = self._buckets.get(key, (float(burst), now, now))
        tokens = min(float(burst), tokens + (now - stamp) * rate)
        need = min(cost, burst)
        wait = 0.0
        if tokens >= need:
            tokens -= cost
        else:
            wait = (need - tokens) / rate
        self._buckets[key] = (tokens, now, now + (burst - tokens) / rate)
        return wait

    def _forget_buckets(self, now: float) -> None:
        """Make room for a new bucket: drop the full ones (they limit nobody), else those that
        fill up soonest. Never all at once: that would lift everyone's limits, debts included."""
        self._buckets = {k: v for k, v in self._buckets.items() if v[2] > now}
        room = MAX_BUCKETS // 2  # each pass frees half the bound: its cost spreads over as many
        if len(self._buckets) > room:
            kept = sorted(self._buckets.items(), key=lambda item: item[1][2])
            self._buckets = dict(kept[-room:])

    async def register_client(self, record: ClientRecord) -> None:
        fields = [record[name] for name in CLIENT_FIELDS]  # type: ignore[literal-required]
        fields[CHANNELS_AT] = tuple(fields[CHANNELS_AT])
        self._clients[record["client_id"]] = tuple(fields)

    async def unregister_client(self, client_id: str) -> None:
        self._clients.pop(client_id, None)

    async def locate_client(self, client_id: str) -> ClientRecord | None:
        fields = self._clients.get(client_id)
        return None if fields is None else _record(fields)

    async def list_clients(self) -> list[ClientRecord]:
        return [_record(fields) for fields in self._clients.values()]

    async def active_connections(self) -> int:
        return len(self._clients)

    async def keepalive(self, client_ids: list[str]) -> None:
        """Nothing expires in memory."""


def _record(fields: tuple[Any, ...]) -> ClientRecord:
    """A client record from its stored fields (channels back as a list)."""
    record: dict[str, Any] = dict(zip(CLIENT_FIELDS, fields, strict=True))
    record["channels"] = list(record["channels"])
    return record  # type: ignore[return-value]

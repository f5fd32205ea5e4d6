"""Cluster state in this process's memory: right for one process with the memory broker."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from .base import Bucket, ClientRecord

MAX_BUCKETS = 100_000  # rate buckets one process keeps (callers limited recently)
# A holder's entry: the scopes it holds slots in, then its client record without the id.
RECORD_FIELDS = tuple(name for name in ClientRecord.__annotations__ if name != "client_id")
CHANNELS_AT = 1 + RECORD_FIELDS.index("channels")


@lru_cache(maxsize=4096)
def _shared(names: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple for equal tuples of names (every stream of the same channels or scopes)."""
    return names


class MemoryClusterState:
    """Everything in this process's memory: right for one process with the memory broker."""

    def __init__(self) -> None:
        self._tickets: dict[str, tuple[float, dict[str, Any]]] = {}
        self._buckets: dict[str, float] = {}  # rate bucket key -> when it is full again
        # One registry of holders (streams, chat answers): per holder one tuple of the scopes
        # it holds slots in and its client record's fields, channels and scopes as shared
        # tuples. A set per scope and a dict of records would each cost every stream more.
        self._holders: dict[str, tuple[Any, ...]] = {}
        self._counts: dict[str, int] = {}  # holders per scope
        self._registered = 0  # holders with a client record

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
        entry = self._holders.get(holder)
        scopes = entry[0] if entry is not None else ()
        if scope in scopes:
            return True
        count = self._counts.get(scope, 0)
        if count >= limit:
            return False
        self._counts[scope] = count + 1
        self._store(holder, (*scopes, scope), entry[1:] if entry is not None else ())
        return True

    async def release_slot(self, scope: str, holder: str) -> None:
        entry = self._holders.get(holder)
        if entry is None or scope not in entry[0]:
            return
        count = self._counts[scope] - 1
        if count:
            self._counts[scope] = count
        else:
            del self._counts[scope]
        self._store(holder, tuple(s for s in entry[0] if s != scope), entry[1:])

    def _store(self, holder: str, scopes: tuple[str, ...], record: tuple[Any, ...]) -> None:
        """Keep ``holder``'s entry, or forget it once it holds no slot and has no record."""
        if scopes or record:
            self._holders[holder] = (_shared(scopes), *record)
        else:
            self._holders.pop(holder, None)

    async def take_tokens(self, buckets: Sequence[Bucket]) -> list[float]:
        # Each bucket is kept as the time it is full again (a GCRA's theoretical arrival
        # time): it then holds ``burst - (full_at - now) * rate`` tokens, debts included.
        now = time.monotonic()
        kept = self._buckets
        waits = []
        for key, rate, burst, cost in buckets:
            # Taking min(cost, burst) needs the bucket within that many tokens of full.
            wait = kept.get(key, now) - now - (burst - min(cost, burst)) / rate
            waits.append(wait if wait > 0 else 0.0)
        if any(waits):
            return waits
        if len(kept) > MAX_BUCKETS - len(buckets):
            kept = self._forget_buckets(now)
        for key, rate, _, cost in buckets:
            full_at = kept.get(key, now)
            kept[key] = (full_at if full_at > now else now) + cost / rate
        return waits

    def _forget_buckets(self, now: float) -> dict[str, float]:
        """Make room for new buckets: drop the full ones (they limit nobody), else those that
        fill up soonest. Never all at once: that would lift everyone's limits, debts included."""
        kept = {key: full_at for key, full_at in self._buckets.items() if full_at > now}
        room = MAX_BUCKETS // 2  # each pass frees half the bound: its cost spreads over as many
        if len(kept) > room:
            kept = dict(sorted(kept.items(), key=lambda item: item[1])[-room:])
        self._buckets = kept
        return kept

    async def register_client(self, record: ClientRecord) -> None:
        holder = record["client_id"]
        entry = self._holders.get(holder)
        if entry is None or len(entry) == 1:
            self._registered += 1
        fields: list[Any] = [record[name] for name in RECORD_FIELDS]  # type: ignore[literal-required]
        fields[CHANNELS_AT - 1] = _shared(tuple(fields[CHANNELS_AT - 1]))
        self._store(holder, entry[0] if entry is not None else (), tuple(fields))

    async def unregister_client(self, client_id: str) -> None:
        entry = self._holders.get(client_id)
        if entry is not None and len(entry) > 1:
            self._registered -= 1
            self._store(client_id, entry[0], ())

    async def locate_client(self, client_id: str) -> ClientRecord | None:
        entry = self._holders.get(client_id)
        return _record(client_id, entry) if entry is not None and len(entry) > 1 else None

    async def list_clients(self) -> list[ClientRecord]:
        return [_record(cid, entry) for cid, entry in self._holders.items() if len(entry) > 1]

    async def active_connections(self) -> int:
        return self._registered

    async def keepalive(self, client_ids: list[str]) -> None:
        """Nothing expires in memory."""


def _record(client_id: str, entry: tuple[Any, ...]) -> ClientRecord:
    """A client record from its holder's entry (channels back as a list)."""
    record: dict[str, Any] = {"client_id": client_id}
    record.update(zip(RECORD_FIELDS, entry[1:], strict=True))
    record["channels"] = list(record["channels"])
    return record  # type: ignore[return-value]

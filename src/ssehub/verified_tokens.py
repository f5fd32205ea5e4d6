"""Principals of tokens already verified, kept until the token expires.

Verifying a JWT (signature, claims, rights patterns) costs more than the rest of a publish; a
publisher sends the same token with every request. A verified token's outcome can only change
with time through its ``exp`` (``nbf`` and the lifetime bound only ever pass once passed), so
a hit is checked against ``exp`` plus the leeway and is otherwise the same answer. Entries are
keyed by a digest of the token (fixed memory however long it is) and bounded in number.
"""

from __future__ import annotations

import hashlib
import time
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_TOKENS = 4096


class VerifiedTokens(Generic[T]):
    """A bounded map token → verified value, each valid until its own deadline (epoch s)."""

    def __init__(self, size: int = MAX_TOKENS) -> None:
        self.size = size
        self._entries: dict[bytes, tuple[T, float]] = {}

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.blake2b(token.encode(), digest_size=16).digest()

    def get(self, token: str) -> T | None:
        """The value of ``token`` while it is valid, else None (an expired entry is dropped)."""
        key = self._key(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.time() < entry[1]:
            return entry[0]
        del self._entries[key]
        return None

    def put(self, token: str, value: T, valid_until: float) -> None:
        """Keep ``value`` for ``token`` until ``valid_until``; the oldest entry makes room."""
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[self._key(token)] = (value, valid_until)

    def clear(self) -> None:
        """Forget every token."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

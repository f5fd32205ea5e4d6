"""Principals of tokens already verified, kept until the token expires.

Verifying a JWT (signature, claims, rights patterns) costs more than the rest of a publish; a
publisher sends the same token with every request. A verified token's outcome can only change
with time through its ``exp`` (``nbf`` and the lifetime bound only ever pass once passed), so
a hit is checked against ``exp`` plus the leeway and is otherwise the same answer. Entries are
keyed by the token itself (its hash is the cheapest lookup) and bounded in number and in the
characters of the tokens they stand for (a principal's rights patterns grow with its token, up
to the 32 KiB of a header).
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_TOKENS = 4096
MAX_TOKEN_CHARS = 8 * 1024 * 1024  # of the tokens kept: 4096 tokens of 2 KiB, 256 of 32 KiB


class VerifiedTokens(Generic[T]):
    """A bounded map token → verified value, each valid until its own deadline (epoch s)."""

    def __init__(self, size: int = MAX_TOKENS, max_chars: int = MAX_TOKEN_CHARS) -> None:
        self.size = size
        self.max_chars = max_chars
        self.chars = 0  # characters of the tokens kept
        self._entries: dict[str, tuple[T, float, int]] = {}

    def get(self, token: str) -> T | None:
        """The value of ``token`` while it is valid, else None (an expired entry is dropped)."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if time.time() < entry[1]:
            return entry[0]
        del self._entries[token]
        self.chars -= entry[2]
        return None

    def put(self, token: str, value: T, valid_until: float) -> None:
        """Keep ``value`` for ``token`` until ``valid_until``; the oldest entries make room."""
        chars = len(token)
        if chars > self.max_chars:
            return
        old = self._entries.pop(token, None)
        if old is not None:
            self.chars -= old[2]
        while self._entries and (
            len(self._entries) >= self.size or self.chars + chars > self.max_chars
        ):
            self.chars -= self._entries.pop(next(iter(self._entries)))[2]
        self._entries[token] = (value, valid_until, chars)
        self.chars += chars

    def clear(self) -> None:
        """Forget every token."""
        self._entries.clear()
        self.chars = 0

    def __len__(self) -> int:
        return len(self._entries)

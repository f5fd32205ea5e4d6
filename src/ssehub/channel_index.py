"""Channel names kept in sorted order, so a pattern look-up touches only its candidates.

Every channel a pattern matches starts with the pattern's text before its first ``*``, so the
candidates are one range of the sorted names (the Redis broker reads the same range with
``ZRANGEBYLEX``). A look-up also has a budget: past it the caller is told, never stalled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sortedcontainers import SortedList

from .channels import literal_prefix, matches

# Sorts after every character a channel name may hold (all of them ASCII).
_AFTER_ANY = "\x7f"


class ChannelIndex:
    """A sorted set of channel names with budgeted pattern look-ups."""

    def __init__(self) -> None:
        self._names: SortedList[str] = SortedList()

    def __len__(self) -> int:
        return len(self._names)

    def add(self, name: str) -> None:
        """Index a new channel (once: callers add a name when they first keep it)."""
        self._names.add(name)

    def discard(self, name: str) -> None:
        """Forget a channel."""
        self._names.discard(name)

    def matching(self, patterns: Iterable[str], *, budget: int | None) -> set[str] | None:
        """Names matched by any of ``patterns``; None when that needs more than ``budget`` tests."""
        return match_candidates(
            prefix_groups(patterns),
            lambda prefix: self._names.irange(prefix, prefix + _AFTER_ANY, inclusive=(True, False)),
            budget,
        )


def prefix_groups(patterns: Iterable[str]) -> dict[str, list[str]]:
    """Patterns grouped by their literal prefix (each group's candidates are one name range)."""
    groups: dict[str, list[str]] = {}
    for pattern in patterns:
        groups.setdefault(literal_prefix(pattern), []).append(pattern)
    return groups


def match_candidates(
    groups: dict[str, list[str]],
    candidates: Callable[[str], Iterable[str]],
    budget: int | None,
) -> set[str] | None:
    """Names of ``candidates(prefix)`` matched by that prefix's patterns.

    None when that takes more than ``budget`` tests (one test: one name against one pattern).
    """
    found: set[str] = set()
    left = budget
    for prefix, group in groups.items():
        for name in candidates(prefix):
            if left is not None:
                left -= len(group)
                if left < 0:
                    return None
            if any(matches(pattern, name) for pattern in group):
                found.add(name)
    return found

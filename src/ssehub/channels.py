"""Channel names, channel patterns and the selectors a stream subscribes with.

A channel name is 1-200 characters from ``A-Z a-z 0-9 _ - . : @ =``. Names starting with
``$`` are reserved for the hub (``$broadcast``, ``$client:<id>``). A pattern is a name in which
``*`` matches any run of characters, colons included: ``project:42:*`` covers
``project:42:stage:rewrite``. Patterns are matched without regular expressions, in one
left-to-right pass (see :func:`matches`), and a pattern may hold at most ``max_wildcards`` stars.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import InvalidChannel

MAX_CHANNEL_LENGTH = 200
MAX_WILDCARDS = 8  # stars per pattern a client may send (the default of ``max_pattern_wildcards``)
_NAME = re.compile(r"[A-Za-z0-9_\-.:@=]{1,200}")
_PATTERN = re.compile(r"[A-Za-z0-9_\-.:@=*]{1,200}")
_RESERVED = re.compile(r"\$[A-Za-z0-9_\-.:@=]{1,199}")

BROADCAST = "$broadcast"


CLIENT_PREFIX = "$client:"
# Hub-to-hub commands: every hub listens here and acts on them; no stream ever receives them.
CONTROL = "$control"
DISCONNECT_EVENT = "$disconnect"  # data: the client id to close


def client_channel(client_id: str) -> str:
    """The reserved channel that reaches one `/connect` client."""
    return f"{CLIENT_PREFIX}{client_id}"


def validate_channel(
    name: str,
    *,
    allow_pattern: bool = False,
    allow_reserved: bool = False,
    max_wildcards: int | None = None,
) -> str:
    """Return ``name`` if it is a valid channel (or pattern), else raise InvalidChannel.

    With ``max_wildcards``, a pattern with more ``*`` than that is refused too.
    """
    if _NAME.fullmatch(name):
        return name
    if allow_pattern and _PATTERN.fullmatch(name):
        if max_wildcards is not None and name.count("*") > max_wildcards:
            raise InvalidChannel(
                f"channel pattern {name!r} has {name.count('*')} wildcards; "
                f"at most {max_wildcards} are allowed"
            )
        return name
    if allow_reserved and _RESERVED.fullmatch(name):
        return name
    what = "channel pattern" if allow_pattern else "channel name"
    raise InvalidChannel(
        f"invalid {what} {name[:MAX_CHANNEL_LENGTH]!r}: use 1-{MAX_CHANNEL_LENGTH} characters "
        "from A-Z a-z 0-9 _ - . : @ =" + (" and * as a wildcard" if allow_pattern else "")
    )


def is_pattern(name: str) -> bool:
    """True when ``name`` contains a wildcard."""
    return "*" in name


@lru_cache(maxsize=4096)
def pattern_parts(pattern: str) -> tuple[str, tuple[str, ...], str]:
    """A pattern as (literal prefix, non-empty literals between stars, literal suffix)."""
    head, *middle, tail = pattern.split("*")
    return head, tuple(part for part in middle if part), tail


def literal_prefix(pattern: str) -> str:
    """The text before a pattern's first ``*``: every channel it matches starts with it."""
    return pattern.partition("*")[0]


def matches(pattern: str, channel: str) -> bool:
    """True when ``channel`` is covered by ``pattern`` (an exact name covers only itself).

    A greedy glob match, never a regular expression: the prefix and suffix are compared in
    place and each literal between stars is found left to right after the previous one (the
    leftmost place is always the best one), so no character is looked at twice per literal
    and runs of ``*`` cost nothing. A pattern never reaches a reserved ``$`` channel (a
    client's private messages, commands).
    """
    if "*" not in pattern:
        return pattern == channel
    if channel[:1] == "$" and pattern[:1] != "$":
        return False
    head, middle, tail = pattern_parts(pattern)
    end = len(channel) - len(tail)
    if end < len(head) or not channel.startswith(head) or not channel.endswith(tail):
        return False
    position = len(head)
    for part in middle:
        found = channel.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


@dataclass(frozen=True, slots=True)
class Selector:
    """What one stream listens to: exact channels plus patterns."""

    channels: frozenset[str] = field(default_factory=frozenset)
    patterns: frozenset[str] = field(default_factory=frozenset)
    names: tuple[str, ...] = field(init=False, compare=False, repr=False)  # sorted, channels first

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", (*sorted(self.channels), *sorted(self.patterns)))

    @classmethod
    def of(cls, names: Iterable[str]) -> Selector:
        """Split names into exact channels and patterns.

        Equal selectors are one shared object (they are immutable): thousands of streams of the
        same channels then hold no set of their own.
        """
        return shared_selector(tuple(names))

    def covers(self, channel: str) -> bool:
        """True when an event on ``channel`` belongs to this selector."""
        return channel in self.channels or any(matches(p, channel) for p in self.patterns)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


@lru_cache(maxsize=10_000)
def shared_selector(names: tuple[str, ...]) -> Selector:
    """The one Selector of ``names`` (built once while it stays among the recently used)."""
    return Selector(
        channels=frozenset(n for n in names if not is_pattern(n)),
        patterns=frozenset(n for n in names if is_pattern(n)),
    )

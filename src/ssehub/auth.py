"""Who is asking and what they may do: the Principal and the authenticator seam.

The hub core ships ``OpenAccess`` (every request may read and write every channel), which is
what the embedded demo runs with; JWT verification plugs in behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import HTTPConnection

from .channels import matches


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: user id, channel patterns it may read and write, admin flag."""

    user_id: str | None = None
    subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    admin: bool = False
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def can_subscribe(self, channel: str) -> bool:
        """True when a pattern in ``subscribe`` covers ``channel`` (or the requested pattern)."""
        return self.admin or any(covers(p, channel) for p in self.subscribe)

    def can_publish(self, channel: str) -> bool:
        """True when a pattern in ``publish`` covers ``channel``."""
        return self.admin or any(covers(p, channel) for p in self.publish)


def covers(granted: str, requested: str) -> bool:
    """True when every channel ``requested`` can name is also named by ``granted``.

    A requested pattern is covered when the granted one matches it with its ``*`` read as a
    literal run of characters, which holds for prefix grants like ``project:42:*``.
    """
    return matches(granted, requested)


class Authenticator(Protocol):
    """Turns a request into a Principal or raises Unauthorized."""

    async def authenticate(self, request: HTTPConnection) -> Principal:
        """The caller of ``request``."""


class OpenAccess:
    """No authentication: everybody may read and write everything (embedded demo, tests)."""

    PRINCIPAL = Principal(user_id=None, subscribe=("*",), publish=("*",), admin=True)

    async def authenticate(self, request: HTTPConnection) -> Principal:
        return self.PRINCIPAL

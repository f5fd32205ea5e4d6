"""Idempotency-Key scoping: a key names one publish of one caller on one channel.

Two users who happen to send the same key (or one user on two channels) publish two events.
The broker sees a fixed-size digest, so a long key costs no more memory than a short one.
"""

from __future__ import annotations

import hashlib

from .auth import Principal
from .gate import limit_scope


def scoped_key(principal: Principal, ip: str, channel: str, key: str | None) -> str | None:
    """The broker's key for ``key`` sent by ``principal`` (from ``ip``) to ``channel``; an
    empty key is none (as in a batch): it would make every later publish a replay of the first."""
    if not key:
        return None
    owner = limit_scope(principal, ip) or "admin"
    scope = f"{owner}\n{channel}\n{key}".encode()
    return hashlib.blake2b(scope, digest_size=16).hexdigest()

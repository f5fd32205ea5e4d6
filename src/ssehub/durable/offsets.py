"""Offsets and cursors of Durable Streams.

An offset is the position after a stored append: 20 decimal digits of the stream's append
sequence (``00000000000000000042``). Fixed width makes byte-wise order the numeric order, the
digits need no URL escaping, and a fork shares its source's positions up to the fork point. The
protocol's sentinels ``-1`` (start) and ``now`` (tail) are never minted.
"""

from __future__ import annotations

import random
import re
import time

WIDTH = 20
START = "-1"
NOW = "now"
_OFFSET = re.compile(rf"\d{{{WIDTH}}}")
# The start offset of the reference server, accepted as ours (some clients keep it as a constant).
REFERENCE_START = "0000000000000000_0000000000000000"

# Cursors: 20-second intervals since 2024-10-09T00:00:00Z, as the protocol suggests.
CURSOR_EPOCH = 1728432000
CURSOR_INTERVAL_SECONDS = 20
MAX_CURSOR_JITTER_SECONDS = 3600


def format_offset(seq: int) -> str:
    """The offset token after append number ``seq`` (0: the start of an empty stream)."""
    return f"{seq:0{WIDTH}d}"


def parse_offset(token: str) -> int | None:
    """The append sequence of an offset token; None when it is not one of ours."""
    if token == REFERENCE_START:
        return 0
    if not _OFFSET.fullmatch(token):
        return None
    return int(token)


def next_cursor(client_cursor: str | None, *, now: float | None = None) -> str:
    """The interval number now, strictly above a cursor the client echoed (CDN collapsing)."""
    interval = int(
        ((time.time() if now is None else now) - CURSOR_EPOCH) // CURSOR_INTERVAL_SECONDS
    )
    if client_cursor and client_cursor.isdigit():
        echoed = int(client_cursor)
        if echoed >= interval:
            jitter = random.randint(1, MAX_CURSOR_JITTER_SECONDS)
            interval = echoed + max(1, jitter // CURSOR_INTERVAL_SECONDS)
    return str(interval)

"""The hub's own HTTP side alone: ``ssehub serve`` whose wire path answers every plain publish
with a fixed JSON body, skipping the hub's work (auth, rights, limits, the event, the broker,
metrics). Request parsing, the request id, the access line and the framing stay.

What a publish through the hub costs before its own work: the hub's counterpart of the floor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ssehub import wirepublish
from ssehub.cli import app

if TYPE_CHECKING:
    from ssehub.routes.publish import EventBody
else:
    EventBody = Any  # older checkouts (--src) have no such name

BODY = b'{"id":"0-1","channel":"bench"}'
HEAD = [(b"content-length", b"30"), (b"content-type", b"application/json")]


async def fixed_answer(
    request: Request, channel: str, body: EventBody, key: str | None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The answer of every plain publish, whatever it asks."""
    return 200, list(HEAD), BODY


if __name__ == "__main__":
    wirepublish.answer_publish = fixed_answer  # type: ignore[assignment]
    app()

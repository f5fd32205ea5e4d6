"""The hub's own HTTP side alone: ``ssehub serve`` whose wire path answers every plain publish
with a fixed JSON body, skipping the hub's work (auth, rights, limits, the event, the broker,
metrics). Request parsing, the request id, the access line and the framing stay.

What a publish through the hub costs before its own work: the hub's counterpart of the floor.
"""

from __future__ import annotations

from typing import Any

from ssehub import wirepublish
from ssehub.cli import app

BODY = b'{"id":"0-1","channel":"bench"}'
HEAD = [(b"content-length", b"30"), (b"content-type", b"application/json")]


async def fixed_answer(*args: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The answer of every plain publish, whatever it asks."""
    return 200, list(HEAD), BODY


def skip_the_hub_s_work() -> None:
    """Answer every taken publish with ``fixed_answer`` (in older checkouts (``--src``) the
    wire path called a function of the module where it now calls a method)."""
    if hasattr(wirepublish.WirePublisher, "respond"):
        wirepublish.WirePublisher.respond = fixed_answer  # type: ignore[method-assign,assignment]
    else:
        wirepublish.answer_publish = fixed_answer  # type: ignore[attr-defined]


if __name__ == "__main__":
    skip_the_hub_s_work()
    app()

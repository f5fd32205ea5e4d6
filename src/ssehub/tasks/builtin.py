"""The built-in ``rewrite`` stage: streams a generated answer token by token.

It uses a simple local text generator (no LLM key needed); ``input_data`` may set ``text``
(words to stream), ``tokens`` (how many), ``pace`` (seconds between tokens) and ``fail``
(raise with that message after ``fail_after`` tokens), which the tests and the demo use.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .registry import stage

DEFAULT_TEXT = (
    "Once upon a time a small team built a hub that pushed every token of every answer "
    "to every reader the moment it was written, and nobody waited for a page to reload."
)


def words(input_data: dict[str, Any]) -> list[str]:
    """The tokens to stream: the input's words, repeated up to ``tokens``."""
    base = str(input_data.get("text") or DEFAULT_TEXT).split() or ["…"]
    count = int(input_data.get("tokens") or len(base))
    return [(" " if i else "") + base[i % len(base)] for i in range(max(0, count))]


@stage("rewrite", queue="llm")
async def rewrite(pub: Any, input_data: dict[str, Any]) -> dict[str, Any]:
    """Stream a rewritten text; ``done`` carries the full text and token count."""
    pace = float(input_data.get("pace", 0.01))
    fail_after = int(input_data.get("fail_after", 0))
    tokens = words(input_data)
    for index, piece in enumerate(tokens):
        if input_data.get("fail") and index >= fail_after:
            raise RuntimeError(str(input_data["fail"]))
        await pub.publish_token(piece)
        if pace:
            await asyncio.sleep(pace)
    await pub.publish_stage_update("completed", 100, "done")
    await pub.publish_done(metadata={"tokens_used": len(tokens)})
    return {"tokens_used": len(tokens)}

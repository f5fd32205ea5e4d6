"""The built-in ``rewrite`` stage: streams a rewritten text token by token.

With ``input_data["prompt"]`` it asks the configured LLM provider (``SSEHUB_LLM_PROVIDER``:
the built-in ``demo`` or an OpenAI-compatible API) to rewrite it. Otherwise a simple local
generator streams ``text`` (repeated up to ``tokens`` words, ``pace`` seconds apart) and may
``fail`` after ``fail_after`` tokens, which the tests and the demo use.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..llm import provider_from_settings
from ..sdk.publisher import AsyncPublisher
from ..settings import Settings

DEFAULT_TEXT = (
    "Once upon a time a small team built a hub that pushed every token of every answer "
    "to every reader the moment it was written, and nobody waited for a page to reload."
)


def words(input_data: dict[str, Any]) -> list[str]:
    """The tokens to stream: the input's words, repeated up to ``tokens``."""
    base = str(input_data.get("text") or DEFAULT_TEXT).split() or ["…"]
    count = int(input_data.get("tokens") or len(base))
    return [(" " if i else "") + base[i % len(base)] for i in range(max(0, count))]


PROGRESS_UPDATES = 20  # progress messages per run of the local generator, at most


def progress_step(total: int) -> int:
    """Tokens between two progress messages, so a run sends at most PROGRESS_UPDATES."""
    return max(1, -(-total // PROGRESS_UPDATES))


REWRITE_PROMPT = "Rewrite the user's text for a short video script. Answer with the text only."


async def rewrite_with_llm(pub: AsyncPublisher, prompt: str) -> dict[str, Any]:
    """Stream the provider's answer; the model call stops if the task is cancelled."""
    provider = provider_from_settings(Settings())
    stream = provider.stream(
        [{"role": "system", "content": REWRITE_PROMPT}, {"role": "user", "content": prompt}]
    )
    try:
        async for chunk in stream:
            await pub.publish_token(chunk)
    finally:
        await stream.aclose()
    usage = stream.usage
    metadata: dict[str, Any] = {"model": stream.model}
    if usage is not None and usage.completion_tokens is not None:
        metadata["tokens_used"] = (usage.prompt_tokens or 0) + usage.completion_tokens
    await pub.publish_done(metadata=metadata)
    return metadata


async def rewrite(pub: AsyncPublisher, input_data: dict[str, Any]) -> dict[str, Any]:
    """Stream a rewritten text; ``done`` carries the full text and token count."""
    if input_data.get("prompt"):
        return await rewrite_with_llm(pub, str(input_data["prompt"]))
    pace = float(input_data.get("pace", 0.01))
    fail_after = int(input_data.get("fail_after", 0))
    tokens = words(input_data)
    step = progress_step(len(tokens))
    for index, piece in enumerate(tokens):
        if input_data.get("fail") and index >= fail_after:
            raise RuntimeError(str(input_data["fail"]))
        await pub.publish_token(piece)
        if (index + 1) % step == 0 or index + 1 == len(tokens):
            await pub.publish_progress(index + 1, len(tokens), "words")
        if pace:
            await asyncio.sleep(pace)
    await pub.publish_stage_update("completed", 100, "done")
    await pub.publish_done(metadata={"tokens_used": len(tokens)})
    return {"tokens_used": len(tokens)}

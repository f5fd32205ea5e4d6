"""The built-in ``demo`` provider: a clearly labelled canned answer, word by word, offline."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Sequence

from .base import ChatMessage, ChatStream, Usage

LABEL = "[demo provider: canned answer, no language model was called]"
_WORD = re.compile(r"\S+\s*")


def canned_answer(question: str) -> str:
    """The demo's answer to ``question``: says what it is and echoes the question."""
    quoted = " ".join(question.split())[:200]
    return (
        f"{LABEL} You wrote: “{quoted}”. This answer is streamed by ssehub's built-in demo "
        "provider, one word at a time, through the conversation's SSE channel. Set "
        "SSEHUB_LLM_PROVIDER=openai with SSEHUB_LLM_BASE_URL and SSEHUB_LLM_API_KEY to talk to "
        "OpenAI, vLLM, Ollama or llama.cpp instead."
    )


class DemoProvider:
    """Streams :func:`canned_answer` with ``pace_seconds`` between words; needs no key."""

    name = "demo"

    def __init__(self, *, pace_seconds: float = 0.05) -> None:
        self.pace_seconds = pace_seconds

    def stream(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> ChatStream:
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = _WORD.findall(canned_answer(question))

        async def produce(stream: ChatStream) -> AsyncGenerator[str, None]:
            for index, word in enumerate(words):
                if index and self.pace_seconds:
                    await asyncio.sleep(self.pace_seconds)
                yield word
            stream.usage = Usage(prompt_tokens=None, completion_tokens=len(words))

        return ChatStream(produce, model=model or "demo")

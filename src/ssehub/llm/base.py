"""The provider seam: one answer is an async iterator of text chunks that can be cancelled.

Cancelling the task that iterates (or calling ``aclose``) stops the model call: the provider's
HTTP response is closed, so the server stops generating and no more tokens are spent.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict


class ChatMessage(TypedDict):
    """One message sent to the model."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(slots=True)
class Usage:
    """Token counts when the provider reports them."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ProviderError(Exception):
    """The model call failed; ``code`` says how (timeout, unauthorized, rate_limited, ...)."""

    def __init__(self, message: str, *, code: str = "provider_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ChatStream:
    """The text chunks of one answer; ``usage`` is filled once the provider reports it."""

    def __init__(
        self, produce: Callable[[ChatStream], AsyncGenerator[str, None]], *, model: str
    ) -> None:
        self.model = model
        self.usage: Usage | None = None
        self._chunks = produce(self)

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        """Stop the model call and release its connection."""
        await self._chunks.aclose()


class Provider(Protocol):
    """Streams a model's answer to a conversation."""

    name: str

    def stream(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> ChatStream:
        """Start an answer to ``messages``; iterate the result for text chunks."""

"""Any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp server) via the SDK."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

import openai

from .base import ChatMessage, ChatStream, ProviderError, Usage


def map_error(exc: openai.OpenAIError, base_url: str) -> ProviderError:
    """Turn an SDK error into a ProviderError with a message a user can act on."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("the model provider timed out", code="provider_timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(
            f"cannot connect to the model provider at {base_url}", code="provider_unavailable"
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ProviderError(
            f"the model provider rejected the API key ({exc.status_code})",
            code="provider_unauthorized",
        )
    if isinstance(exc, openai.RateLimitError):
        return ProviderError(
            "the model provider is rate limiting requests (429); try again later",
            code="provider_rate_limited",
        )
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            f"the model provider answered {exc.status_code}: {exc.message}", code="provider_error"
        )
    message = getattr(exc, "message", None) or str(exc)
    return ProviderError(f"the model provider failed: {message}", code="provider_error")


class OpenAICompatProvider:
    """Streams ``/chat/completions`` of an OpenAI-compatible server."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str = "gpt-4o-mini",
        timeout: float = 60.0,
        max_retries: int = 2,
        stream_usage: bool = True,
    ) -> None:
        self.model = model
        self.stream_usage = stream_usage
        # Local servers (Ollama, llama.cpp) need no key, but the SDK insists on one.
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "no-key",
            timeout=timeout,
            max_retries=max_retries,
        )
        self.base_url = str(self.client.base_url)

    def stream(self, messages: Sequence[ChatMessage], *, model: str | None = None) -> ChatStream:
        name = model or self.model

        extra: dict[str, Any] = {}
        if self.stream_usage:
            extra["stream_options"] = {"include_usage": True}

        async def produce(stream: ChatStream) -> AsyncGenerator[str, None]:
            try:
                response: Any = await self.client.chat.completions.create(
                    model=name,
                    messages=list(messages),  # type: ignore[arg-type]
                    stream=True,
                    **extra,
                )
            except openai.OpenAIError as exc:
                raise map_error(exc, self.base_url) from exc
            try:
                async for chunk in response:
                    if chunk.usage is not None:
                        stream.usage = Usage(
                            prompt_tokens=chunk.usage.prompt_tokens,
                            completion_tokens=chunk.usage.completion_tokens,
                        )
                    for choice in chunk.choices:
                        if choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
            except openai.OpenAIError as exc:
                raise map_error(exc, self.base_url) from exc
            finally:
                await response.close()

        return ChatStream(produce, model=name)

    async def aclose(self) -> None:
        """Release the HTTP connection pool."""
        await self.client.close()

"""Language-model providers: a streaming interface, the built-in demo and OpenAI-compatible APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import ChatMessage, ChatStream, Provider, ProviderError, Usage
from .demo import DemoProvider

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "ChatMessage",
    "ChatStream",
    "DemoProvider",
    "Provider",
    "ProviderError",
    "Usage",
    "create_provider",
    "provider_from_settings",
]


def create_provider(
    name: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    model: str = "gpt-4o-mini",
    timeout: float = 60.0,
    max_retries: int = 2,
    stream_usage: bool = True,
    demo_pace: float = 0.05,
) -> Provider:
    """The provider named by the settings (``demo`` or ``openai``)."""
    if name == "demo":
        return DemoProvider(pace_seconds=demo_pace)
    if name in ("openai", "openai_compat"):
        from .openai_compat import OpenAICompatProvider  # the SDK is slow to import

        return OpenAICompatProvider(
            base_url=base_url,
            api_key=api_key,
            model=model,
            timeout=timeout,
            max_retries=max_retries,
            stream_usage=stream_usage,
        )
    raise ValueError(f"unknown llm provider {name!r}: use 'demo' or 'openai'")


def provider_from_settings(settings: Settings) -> Provider:
    """The provider ``settings`` (``SSEHUB_LLM_*``) configure: chat and stages use the same."""
    return create_provider(
        settings.llm_provider,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        model=settings.llm_model,
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        stream_usage=settings.llm_stream_usage,
        demo_pace=settings.demo_pace_seconds,
    )

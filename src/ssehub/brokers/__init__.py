"""Backplanes behind the Broker protocol, chosen by URL."""

from __future__ import annotations

from ..settings import Settings
from .base import (
    Broker,
    EventHandler,
    GapHandler,
    HealthChecker,
    History,
    PublishStep,
    format_id,
    parse_id,
)
from .memory import MemoryBroker

__all__ = [
    "Broker",
    "EventHandler",
    "GapHandler",
    "HealthChecker",
    "History",
    "MemoryBroker",
    "PublishStep",
    "create_broker",
    "format_id",
    "parse_id",
]


def memory_broker(settings: Settings) -> MemoryBroker:
    """The memory broker with the history settings."""
    return MemoryBroker(
        history_size=settings.history_size,
        history_ttl=settings.history_ttl_seconds,
        idempotency_window=settings.idempotency_window_seconds,
        idempotency_max_keys=settings.idempotency_max_keys,
        max_channels=settings.history_max_channels,
        max_bytes=settings.history_max_bytes,
        max_resume_channels=settings.max_resume_channels,
    )


def create_broker(settings: Settings) -> Broker:
    """The broker named by ``settings.broker_url`` alone (``create_backends`` builds all three)."""
    if settings.backplane == "redis":
        from .redis import RedisBroker  # redis-py is loaded only for a Redis backplane

        return RedisBroker.from_settings(settings)
    return memory_broker(settings)

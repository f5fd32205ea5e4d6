"""Backplanes behind the Broker protocol, chosen by URL."""

from __future__ import annotations

from ..settings import Settings
from .base import Broker, EventHandler, GapHandler, HealthChecker, History, format_id, parse_id
from .memory import MemoryBroker

__all__ = [
    "Broker",
    "EventHandler",
    "GapHandler",
    "HealthChecker",
    "History",
    "MemoryBroker",
    "create_broker",
    "format_id",
    "parse_id",
]


def create_broker(settings: Settings) -> Broker:
    """The broker named by ``settings.broker_url``."""
    url = settings.broker_url
    if url.startswith("memory:"):
        return MemoryBroker(
            history_size=settings.history_size,
            history_ttl=settings.history_ttl_seconds,
            idempotency_window=settings.idempotency_window_seconds,
            idempotency_max_keys=settings.idempotency_max_keys,
            max_resume_channels=settings.max_resume_channels,
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            from .redis import RedisBroker  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:  # pragma: no cover - until the Redis broker lands
            raise ValueError("the Redis broker is not available in this build") from exc
        return RedisBroker.from_settings(settings)  # type: ignore[no-any-return,unused-ignore]
    raise ValueError(f"unknown broker URL scheme in {url!r}: use memory:// or redis://")

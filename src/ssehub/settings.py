"""All configuration in one model; each field is also read from the env as ``SSEHUB_<NAME>``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Hub settings with production defaults."""

    model_config = SettingsConfigDict(env_prefix="SSEHUB_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface `ssehub serve` binds to.")
    port: int = Field(8000, description="Port `ssehub serve` listens on.")

    broker_url: str = Field(
        "memory://",
        description="Backplane: `memory://` (embedded, one process) or `redis://host:port/db`.",
    )
    history_size: int = Field(1000, ge=0, description="Events kept per channel for resume.")
    history_ttl_seconds: float = Field(3600.0, gt=0, description="Maximum age of kept events.")
    idempotency_window_seconds: float = Field(
        300.0, gt=0, description="How long an Idempotency-Key returns the first publish's id."
    )

    subscriber_buffer: int = Field(
        100, ge=1, description="Events buffered per subscriber before it counts as too slow."
    )
    heartbeat_seconds: float = Field(
        30.0, ge=0, description="Interval of `: ping` comments on every stream; 0 disables."
    )
    retry_ms: int = Field(3000, ge=0, description="`retry:` sent to clients on connect.")
    max_event_bytes: int = Field(65536, ge=1, description="Largest accepted event payload.")
    shutdown_grace_seconds: float = Field(
        3.0, ge=0, description="How long SIGTERM waits for streams to close before forcing it."
    )

    demo: bool = Field(False, description="Serve the demo settings of `make run`.")
    log_level: str = Field("info", description="Log level of the hub and uvicorn.")

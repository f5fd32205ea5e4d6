"""All configuration in one model; each field is also read from the env as ``SSEHUB_<NAME>``."""

from __future__ import annotations

import json
import typing
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

ENV_PREFIX = "SSEHUB_"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Settings(BaseSettings):
    """Hub settings with production defaults."""

    # Lists are decoded by `list_from_text` (JSON or comma-separated), not by pydantic-settings.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", enable_decoding=False
    )

    host: str = Field("127.0.0.1", description="Interface `ssehub serve` binds to.")
    port: int = Field(8000, description="Port `ssehub serve` listens on.")

    broker_url: str = Field(
        "memory://",
        description="Backplane: `memory://` (embedded, one process) or `redis://host:port/db`.",
    )
    history_size: int = Field(1000, ge=0, description="Events kept per channel for resume.")
    history_ttl_seconds: float = Field(3600.0, gt=0, description="Maximum age of kept events.")
    history_max_channels: int = Field(
        50_000,
        ge=1,
        description="Channels with kept history, in total; past it the channel published to least "
        "recently is forgotten (resumes that may cover it get `reset`).",
    )
    history_max_bytes: int = Field(
        128 * 2**20,
        ge=1,
        description="Bytes of kept history in the memory broker, in total (channels forgotten as "
        "above); on Redis, bound bytes with Redis's `maxmemory`.",
    )
    redis_prefix: str = Field(
        "ssehub:", description="Prefix of every Redis key and Pub/Sub channel the hub uses."
    )
    idempotency_window_seconds: float = Field(
        300.0, gt=0, description="How long an Idempotency-Key returns the first publish's id."
    )
    idempotency_max_keys: int = Field(
        100_000, ge=1, description="Idempotency-Keys remembered at once (memory broker); oldest go."
    )

    subscriber_buffer: int = Field(
        100, ge=1, description="Events buffered per subscriber before it counts as too slow."
    )
    heartbeat_seconds: float = Field(
        30.0, ge=0, description="A `: ping` comment on every stream quiet this long; 0 disables."
    )
    retry_ms: int = Field(3000, ge=0, description="`retry:` sent to clients on connect.")
    max_retry_ms: int = Field(
        600_000, ge=0, description="Largest `retry` a publish may set (400 above it)."
    )
    fast_streams: bool = Field(
        True,
        description="Write streams from the hub's dispatch on the server protocol (no task each).",
    )
    fast_publish: bool = Field(
        True,
        description="Answer a plain single-event publish in the server protocol, below ASGI "
        "(the same answer; anything unusual still goes through the application).",
    )
    max_event_bytes: int = Field(65536, ge=1, description="Largest accepted event payload.")
    max_request_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body on any route (publish routes have lower limits of "
        "their own); larger ones get 413 unread.",
    )
    max_publish_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest body of a single publish (room for `max_event_bytes` as escaped "
        "JSON); larger ones get 413 unread.",
    )
    max_batch_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest body of a batch publish; larger get 413 unread."
    )
    max_batch_events: int = Field(1000, ge=1, description="Most events in one batch publish.")
    max_pattern_wildcards: int = Field(
        8, ge=1, description="Most `*` in a channel pattern a stream or ticket may name (else 400)."
    )
    max_resume_channels: int = Field(
        10000,
        ge=1,
        description="Kept channels one pattern resume may examine; past it the stream gets "
        "`reset` and starts at the head.",
    )
    max_resume_events: int = Field(
        10000,
        ge=1,
        description="Most kept events one resume replays; past it the stream gets `reset` and "
        "starts at the head.",
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Largest request head (line and headers); larger get 431."
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a client has to send a request's head; then 408 and close."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="Time a client has to send a request's body; then 408 and close."
    )
    keep_alive_seconds: float = Field(
        5.0, gt=0, description="An idle keep-alive HTTP connection is closed after this long."
    )
    shutdown_grace_seconds: float = Field(
        3.0, ge=0, description="How long SIGTERM waits for streams to close before forcing it."
    )
    worker_healthcheck_seconds: int = Field(
        15,
        ge=1,
        description="With --workers N: a worker that answers no health check for this long is "
        "killed and replaced (a busy worker is not hung); while one hangs, SIGTERM waits as "
        "long, so keep it below the service manager's stop timeout.",
    )

    # -- auth (see auth.py) ---------------------------------------------------------------------
    jwt_secret: str | None = Field(None, description="HS256 shared secret; enables JWT auth.")
    jwt_public_key_file: str | None = Field(
        None, description="PEM public key (RSA → RS256, EC P-256 → ES256); enables JWT auth."
    )
    jwt_jwks_file: str | None = Field(
        None, description="JWKS file of public keys, chosen by `kid`; enables JWT auth."
    )
    jwt_algorithms: list[str] = Field(
        default_factory=list,
        description="Accepted algorithms; empty: HS256 with a secret, else from the key type.",
    )
    jwt_audience: str | None = Field(None, description="Required `aud` claim, if set.")
    jwt_issuer: str | None = Field(None, description="Required `iss` claim, if set.")
    jwt_leeway_seconds: float = Field(5.0, ge=0, description="Clock skew allowed on exp/nbf.")
    jwt_max_lifetime_seconds: float = Field(
        30 * 86400.0,
        ge=0,
        description="Longest token lifetime accepted (`exp` past now or `iat`, 401 above); 0 off.",
    )
    token_cookie: str = Field("ssehub_token", description="Cookie that may carry the token.")
    admin_claim: str = Field(
        "admin", description="Claim granting the admin API: `true`, or a list/string with `admin`."
    )
    admin_role: str = Field("admin", description="Value of `admin_claim` that grants admin.")
    anonymous_subscribe: list[str] = Field(
        default_factory=list, description="Channel patterns anyone may read without a token."
    )
    anonymous_publish: list[str] = Field(
        default_factory=list, description="Channel patterns anyone may publish to without a token."
    )
    open_access: bool = Field(
        False, description="No auth at all (every caller is admin); also when no key is set."
    )
    ticket_ttl_seconds: float = Field(30.0, gt=0, description="Lifetime of a stream ticket.")

    # -- limits ----------------------------------------------------------------------------------
    max_connections: int = Field(10000, ge=1, description="Concurrent streams of the cluster.")
    max_connections_per_user: int = Field(5, ge=1, description="Concurrent streams per user.")
    stream_rate_per_user: float = Field(5.0, ge=0, description="Streams opened/s per user; 0=off.")
    stream_burst_per_user: int = Field(20, ge=1, description="Burst of stream opens per user.")
    stream_rate_per_ip: float = Field(0.0, ge=0, description="Streams opened/s per IP; 0=off.")
    stream_burst_per_ip: int = Field(100, ge=1, description="Burst of stream opens per IP.")
    publish_rate_per_user: float = Field(100.0, ge=0, description="Publishes/s per user; 0=off.")
    publish_burst_per_user: int = Field(500, ge=1, description="Burst of publishes per user.")
    publish_rate_per_ip: float = Field(0.0, ge=0, description="Publishes/s per IP; 0=off.")
    publish_burst_per_ip: int = Field(1000, ge=1, description="Burst of publishes per IP.")
    publish_bytes_rate_per_user: float = Field(
        2 * 1024 * 1024, ge=0, description="Event data characters/s per user; 0=off."
    )
    publish_bytes_burst_per_user: int = Field(
        16 * 1024 * 1024, ge=1, description="Burst of event data characters per user."
    )
    max_connections_per_ip: int = Field(
        20, ge=1, description="Concurrent streams per address of callers without a `sub`."
    )
    ticket_rate_per_user: float = Field(5.0, ge=0, description="Tickets issued/s per user; 0=off.")
    ticket_burst_per_user: int = Field(20, ge=1, description="Burst of tickets per user.")
    conversation_rate_per_user: float = Field(
        1.0, ge=0, description="Conversations created/s per user; 0=off."
    )
    conversation_burst_per_user: int = Field(
        20, ge=1, description="Burst of conversations created per user."
    )
    stage_rate_per_user: float = Field(
        2.0, ge=0, description="Stage runs started/s per user (each may call a model); 0=off."
    )
    stage_burst_per_user: int = Field(30, ge=1, description="Burst of stage runs per user.")
    max_answers_per_user: int = Field(
        3, ge=1, description="Chat answers one user may have streaming at once."
    )
    client_timeout_seconds: float = Field(
        300.0, ge=0, description="Close a stream after this long without a successful write."
    )
    presence_events: list[str] = Field(
        default_factory=list, description="Channel patterns whose streams announce join/leave."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Web origins allowed to call the hub from browsers (CORS), e.g. "
        '`["https://app.example.com"]`; empty: no CORS headers.',
    )

    stage_channel_prefix: str = Field(
        "ai_story",
        description="Prefix of project stage channels: `{prefix}:project:{id}:stage:{name}`.",
    )
    anonymous_project_streams: bool = Field(
        True, description="Serve project stage streams `/api/v1/sse/projects/...` without a token."
    )
    publisher_timeout_seconds: float = Field(
        120.0,
        ge=0,
        description="A run silent this long ends with `error: publisher_timeout`; 0 off.",
    )
    token_history_seconds: float = Field(
        600.0, gt=0, description="Retention of stage `token` events in history (short-lived)."
    )
    outcome_history_seconds: float = Field(
        86400.0, gt=0, description="Retention of `stage_update`, `done` and `error` events."
    )
    cancel_unwatched_seconds: float = Field(
        0.0,
        ge=0,
        description="Cancel a running task whose stage had no subscriber this long; 0 off.",
    )
    celery_broker_url: str = Field(
        "",
        description="Run stages on Celery workers via this Redis URL; empty runs them in-process.",
    )
    celery_key_prefix: str = Field(
        "", description="Prefix of every Redis key Celery uses (several deployments, one Redis)."
    )
    hub_url: str = Field(
        "http://127.0.0.1:8000", description="Hub that Celery workers publish to over HTTP."
    )
    publisher_token: str | None = Field(
        None, description="Bearer token workers publish with (needs publish rights on stages)."
    )
    stage_modules: list[str] = Field(
        default_factory=list, description="Modules imported at start to register more stages."
    )

    demo: bool = Field(False, description="Serve the demo settings of `make run`.")
    log_level: str = Field("info", description="Log level of the hub and uvicorn.")
    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object per log line, with the request id."
    )

    database_url: str = Field(
        "sqlite+aiosqlite:///./ssehub.db",
        description="Conversation store: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://…`.",
    )
    database_schema: str | None = Field(
        None, description="PostgreSQL schema for the chat tables (created when missing)."
    )
    database_auto_migrate: bool = Field(
        True, description="Apply the store's migrations on first use (else `ssehub db upgrade`)."
    )
    ds_mount: str = Field(
        "/ds", description="Path prefix of the Durable Streams protocol; empty turns it off."
    )
    ds_database_url: str | None = Field(
        None, description="Store of Durable Streams (SQLite or PostgreSQL); unset: `database_url`."
    )
    ds_long_poll_seconds: float = Field(
        20.0, gt=0, description="Longest wait of a Durable Streams long-poll read before 204."
    )
    ds_sse_seconds: float = Field(
        60.0, gt=0, description="A Durable Streams SSE read ends after this long; clients resume."
    )
    ds_keepalive_seconds: float = Field(
        15.0,
        gt=0,
        description="A quiet Durable Streams SSE read sends a `control` event this often.",
    )
    ds_max_read_bytes: int = Field(
        1024 * 1024, ge=1, description="Bytes a Durable Streams catch-up read returns at most."
    )
    ds_max_streams_per_user: int = Field(
        1000, ge=1, description="Durable Streams one user (not admin) may own at once."
    )
    llm_provider: str = Field(
        "demo", description="`demo` (built-in canned answers, no key) or `openai` (compatible API)."
    )
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible base URL (vLLM, Ollama, llama.cpp: `…/v1`)."
    )
    llm_api_key: str | None = Field(None, description="API key of the OpenAI-compatible provider.")
    llm_model: str = Field("gpt-4o-mini", description="Model used when a conversation names none.")
    llm_timeout_seconds: float = Field(
        60.0, gt=0, description="Longest wait for the provider's next bytes."
    )
    llm_max_retries: int = Field(2, ge=0, description="Provider retries before the stream starts.")
    llm_stream_usage: bool = Field(
        True, description="Ask for token counts in the stream; off for servers that reject it."
    )
    demo_pace_seconds: float = Field(
        0.05, ge=0, description="Delay between the words of the demo provider."
    )
    chat_checkpoint_seconds: float = Field(
        3.0, ge=0, description="At most this often the partial answer is written while streaming."
    )
    chat_answer_lease_seconds: float = Field(
        10.0,
        gt=0,
        description="A streaming answer not written for this long is ended as abandoned (its "
        "process died): `conversation_error` with code `interrupted`, and the conversation takes "
        "new messages again. Running answers renew it every third of this.",
    )
    chat_history_messages: int = Field(
        50, ge=1, description="Earlier messages of a conversation sent with each new one."
    )
    chat_max_message_chars: int = Field(32000, ge=1, description="Longest accepted user message.")

    @field_validator("*", mode="before")
    @classmethod
    def list_from_text(cls, value: Any, info: ValidationInfo) -> Any:
        """A list setting from the environment: a JSON list, or names separated by commas."""
        field = cls.model_fields[info.field_name or ""]
        if not isinstance(value, str) or typing.get_origin(field.annotation) is not list:
            return value
        text = value.strip()
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg})") from exc

    @property
    def backplane(self) -> Literal["memory", "redis"]:
        """The kind of backplane ``broker_url`` names; ValueError for an unknown scheme."""
        if self.broker_url.startswith("memory:"):
            return "memory"
        if self.broker_url.startswith(REDIS_SCHEMES):
            return "redis"
        raise ValueError(
            f"unknown broker URL scheme in {self.broker_url!r}: use memory:// or redis://"
        )


class SettingsProblem(Exception):
    """A malformed ``SSEHUB_*`` setting, as one line naming it and the expected form."""


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, or SettingsProblem naming the first malformed setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        expected = _expected_form(str(first["loc"][0])) if first["loc"] else ""
        problem = first["msg"].removeprefix("Value error, ")
        raise SettingsProblem(
            f"{name}={first.get('input')!r} is invalid: {problem}{expected}"
        ) from None
    except SettingsError as exc:
        raise SettingsProblem(f"invalid setting: {exc}") from None


def _expected_form(name: str) -> str:
    """A hint of the form a setting takes, from its type and description."""
    field = Settings.model_fields.get(name)
    if field is None:
        return ""
    kind = typing.get_origin(field.annotation) or field.annotation
    forms: dict[object, str] = {
        list: ' (expected a JSON list like \'["a","b"]\' or names separated by commas)',
        bool: " (expected true or false)",
        int: " (expected a whole number)",
        float: " (expected a number)",
    }
    return forms.get(kind, f" ({field.description})" if field.description else "")

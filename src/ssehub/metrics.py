"""Prometheus metrics of one hub process, multi-process safe through ``PROMETHEUS_MULTIPROC_DIR``.

The hot path stays cheap: fan-out counts once per event (``deliveries += targets``) and the
stream writer once per write batch; nothing is counted per subscriber per event. Channels are
labelled by *family*, the name up to its first ``:``, and at most ``max_families`` distinct
families are labelled per process (the rest are ``other``), so label cardinality stays bounded.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

from .connection import SLOW_CONSUMER, Connection
from .event import Event

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER = "other"

# The events of AI runs, whoever publishes them: stage messages (token/done/error), chat answers
# (ai_response_*, conversation_error), agents (task.*) and the generic chunk/complete.
TOKEN_TYPES = frozenset({"token", "chunk", "ai_response_chunk", "task.progress"})
DONE_TYPES = frozenset({"done", "complete", "ai_response_complete", "task.completed"})
ERROR_TYPES = frozenset({"error", "conversation_error", "task.failed"})
START_TYPES = frozenset(
    {"stage_update", "progress", "user_message", "ai_response_start", "task.created"}
)
RUN_TYPES = TOKEN_TYPES | DONE_TYPES | START_TYPES | ERROR_TYPES | {"cancelled"}
MAX_RUNS = 10_000
JSON_SPACE = " \t\n\r"  # the whitespace JSON allows before a value
RUN_IDLE_SECONDS = 3600.0  # a run silent this long is counted as abandoned

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
RATE_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 500, 1000)


def multiprocess_dir() -> str | None:
    """The shared directory of multi-process mode, when it is enabled."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(slots=True)
class RunClock:
    """Timing of one AI run (a stage or a chat answer) as its events are published."""

    started: float
    first_token: float = 0.0
    last_token: float = 0.0
    tokens: int = 0  # real tokens: a coalesced message counts its ``token_count``
    first_batch: int = 0  # tokens of the first token message (sent at ``first_token``)
    touched: float = 0.0


def _payload(event: Event) -> dict[str, Any]:
    text = event.data
    # Only an object has fields: other data (token text, mostly) is not parsed, as a failed
    # parse costs an exception per publish.
    if text[:1] != "{" and text.lstrip(JSON_SPACE)[:1] != "{":
        return {}
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def token_count(event: Event) -> int:
    """Real tokens in a token event: its ``token_count`` (coalesced messages), else 1."""
    count = _payload(event).get("token_count") if event.event == "token" else None
    return count if isinstance(count, int) and 0 < count < 1_000_000 else 1


def run_outcome(event: Event) -> str | None:
    """``done``, ``error``, ``cancelled`` or ``abandoned`` for a terminal event, else None."""
    kind = event.event
    if kind == "cancelled":
        return "cancelled"
    if kind in DONE_TYPES:
        # A chat answer stopped by its user ends with ai_response_complete, status cancelled.
        cancelled = kind == "ai_response_complete" and _payload(event).get("status") == "cancelled"
        return "cancelled" if cancelled else "done"
    if kind not in ERROR_TYPES:
        return None
    reason = _payload(event).get("error")
    if reason in ("cancelled", "canceled"):
        return "cancelled"
    if reason == "publisher_timeout":  # the runs watchdog ended a silent publisher's run
        return "abandoned"
    return "error"


class Metrics:
    """The metric families of the hub and the small hooks the hub and routes call."""

    def __init__(self, *, max_families: int = 50) -> None:
        self.max_families = max_families
        self._families: set[str] = set()
        self._published: dict[str, Counter] = {}  # family -> its events_published child
        self._runs: OrderedDict[str, RunClock] = OrderedDict()
        self.registry = CollectorRegistry(auto_describe=True)
        if multiprocess_dir() is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        self.connections_active = Gauge(
            "ssehub_connections_active",
            "Open SSE streams, by channel family of the stream's first channel.",
            ["family"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connections_opened = Counter(
            "ssehub_connections_opened", "SSE streams opened.", ["family"], registry=r
        )
        self.connections_closed = Counter(
            "ssehub_connections_closed", "SSE streams closed, by reason.", ["reason"], registry=r
        )
        self.connection_duration = Histogram(
            "ssehub_connection_duration_seconds",
            "Lifetime of closed SSE streams.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.events_published = Counter(
            "ssehub_events_published",
            "Events accepted by the broker from this process.",
            ["family"],
            registry=r,
        )
        self.events_delivered = Counter(
            "ssehub_events_delivered", "Event frames queued to local streams.", registry=r
        )
        self.bytes_sent = Counter("ssehub_bytes_sent", "Bytes written to SSE streams.", registry=r)
        self.publish_to_write = Histogram(
            "ssehub_publish_to_write_seconds",
            "From publish to the write of the event to a stream (per write batch).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.resumes = Counter(
            "ssehub_reconnects_resumed", "Streams reopened with a Last-Event-ID.", registry=r
        )
        self.resets = Counter(
            "ssehub_resets", "Resumes answered with `reset` (history lost).", registry=r
        )
        self.slow_consumers = Counter(
            "ssehub_slow_consumer_disconnects", "Streams closed as too slow.", registry=r
        )
        self.auth_failures = Counter(
            "ssehub_auth_failures",
            "Refused requests: unauthorized (401) or forbidden (403).",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "ssehub_rate_limit_rejections",
            "Requests refused with 429, by code.",
            ["code"],
            registry=r,
        )
        self.broker_errors = Counter(
            "ssehub_broker_errors", "Failed broker operations.", ["operation"], registry=r
        )
        self.time_to_first_token = Histogram(
            "ssehub_run_time_to_first_token_seconds",
            "From a run's first event (stage_update/progress) to its first token.",
            ["family"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "ssehub_run_tokens_per_second",
            "Tokens per second between a run's first and last token message (real tokens:"
            " a coalesced message counts every token it carries).",
            ["family"],
            buckets=RATE_BUCKETS,
            registry=r,
        )
        self.run_duration = Histogram(
            "ssehub_run_duration_seconds",
            "From a run's first event to its terminal event.",
            ["family"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.runs_finished = Counter(
            "ssehub_runs",
            "Runs ended, by outcome: done, error, cancelled, abandoned.",
            ["family", "outcome"],
            registry=r,
        )

    # -- labels --------------------------------------------------------------------------------

    def family(self, channel: str) -> str:
        """The label of ``channel``: its name up to the first ``:``, or ``other`` past the cap."""
        name = channel.partition(":")[0] or OTHER
        if name in self._families:
            return name
        if len(self._families) >= self.max_families:
            return OTHER
        self._families.add(name)
        return name

    # -- connections ---------------------------------------------------------------------------

    def opened(self, conn: Connection) -> None:
        """A stream was registered."""
        family = self.family(conn.channel_names[0]) if conn.channel_names else OTHER
        self.connections_opened.labels(family).inc()
        self.connections_active.labels(family).inc()

    def closed(self, conn: Connection, reason: str) -> None:
        """A registered stream ended."""
        family = self.family(conn.channel_names[0]) if conn.channel_names else OTHER
        self.connections_active.labels(family).dec()
        self.connections_closed.labels(reason).inc()
        self.connection_duration.observe(max(0.0, time.time() - conn.connected_at))
        if reason == SLOW_CONSUMER:
            self.slow_consumers.inc()

    def wrote(self, size: int, oldest_published_at: float) -> None:
        """One write batch reached the transport; its oldest live event was published then."""
        self.bytes_sent.inc(size)
        if oldest_published_at:
            self.publish_to_write.observe(max(0.0, time.time() - oldest_published_at))

    # -- refusals (called by the JSON error handler for every 401/403/429) ---------------------

    def refused(self, status: int, code: str) -> None:
        """Count an error answer that is an auth failure (401/403) or a rate limit (429)."""
        if status == 401:
            self.auth_failure("unauthorized")
        elif status == 403:
            self.auth_failure("forbidden")
        elif status == 429:
            self.rate_limit(code)

    def auth_failure(self, reason: str) -> None:
        """A request refused by authentication (``unauthorized``) or rights (``forbidden``)."""
        self.auth_failures.labels(reason).inc()

    def rate_limit(self, code: str) -> None:
        """A request refused with 429 (``rate_limited``, ``too_many_connections``...)."""
        self.rate_limited.labels(code).inc()

    def broker_error(self, operation: str) -> None:
        """A broker operation failed (publish, history, head, subscribe, reconnect...)."""
        self.broker_errors.labels(operation).inc()

    # -- publishing and AI runs ----------------------------------------------------------------

    def published(self, event: Event) -> None:
        """One event was accepted by the broker in this process (called by ``Hub.publish``)."""
        family = self.family(event.channel)
        counter = self._published.get(family)
        if counter is None:  # labels() takes a lock and builds a key: once per family
            counter = self._published[family] = self.events_published.labels(family)
        counter.inc()
        if event.event in RUN_TYPES:
            self._observe_run(family, event)

    def _observe_run(self, family: str, event: Event) -> None:
        now = event.published_at
        self._expire(now)
        runs = self._runs
        outcome = run_outcome(event)
        clock = runs.get(event.channel)
        if outcome is not None:
            self.runs_finished.labels(family, outcome).inc()
            if clock is not None:
                del runs[event.channel]
                self.run_duration.labels(family).observe(max(0.0, now - clock.started))
                later = clock.tokens - clock.first_batch  # tokens sent after the first message
                if later > 0 and clock.last_token > clock.first_token:
                    rate = later / (clock.last_token - clock.first_token)
                    self.tokens_per_second.labels(family).observe(rate)
            return
        if clock is None:
            clock = runs[event.channel] = RunClock(started=now)
            if len(runs) > MAX_RUNS:
                runs.popitem(last=False)
                self.runs_finished.labels(OTHER, "abandoned").inc()
        else:
            runs.move_to_end(event.channel)
        clock.touched = now
        if event.event in TOKEN_TYPES:
            count = token_count(event)
            if not clock.tokens:
                if now > clock.started:
                    self.time_to_first_token.labels(family).observe(now - clock.started)
                clock.first_token, clock.first_batch = now, count
            clock.tokens += count
            clock.last_token = now

    def _expire(self, now: float) -> None:
        runs = self._runs
        while runs:
            channel, clock = next(iter(runs.items()))
            if clock.touched > now - RUN_IDLE_SECONDS:
                return
            del runs[channel]
            self.runs_finished.labels(self.family(channel), "abandoned").inc()

    # -- exposition ----------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition of this process, or of every process in multi-process mode."""
        registry = self.registry
        if multiprocess_dir() is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Drop this process's live gauges from the multi-process directory."""
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())

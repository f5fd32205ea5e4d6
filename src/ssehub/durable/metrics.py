"""Prometheus metrics of Durable Streams, registered on the hub's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DurableMetrics:
    """Appends, bytes, reads by mode and live readers of this process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.appends = Counter(
            "ssehub_ds_appends", "Durable Streams appends stored.", registry=registry
        )
        self.append_bytes = Counter(
            "ssehub_ds_append_bytes", "Bytes stored by Durable Streams appends.", registry=registry
        )
        self.reads = Counter(
            "ssehub_ds_reads",
            "Durable Streams reads, by mode (catch-up, long-poll, sse, eventsource).",
            ["mode"],
            registry=registry,
        )
        self.live_readers = Gauge(
            "ssehub_ds_live_readers",
            "Durable Streams long-poll and SSE reads open on this process.",
            registry=registry,
            multiprocess_mode="livesum",
        )

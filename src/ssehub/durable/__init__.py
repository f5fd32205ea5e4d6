"""Durable Streams: the open HTTP protocol of resumable streams, served from a durable store."""

from __future__ import annotations

from .mount import mount as mount_durable_streams
from .service import DurableStreams

__all__ = ["DurableStreams", "mount_durable_streams"]

"""Errors of the Durable Streams routes, each with the status the protocol prescribes."""

from __future__ import annotations

from ..errors import BadRequest, Conflict, HubError, NotFound


class BadBody(BadRequest):
    """An append body the stream's content type refuses (invalid JSON, empty array)."""

    code = "invalid_body"


class StreamNotFound(NotFound):
    """No stream at that path (or it expired)."""

    code = "stream_not_found"


class StreamGone(HubError):
    """The stream was deleted but its data still backs forks."""

    status = 410
    code = "stream_gone"


class StreamConflict(Conflict):
    """The request contradicts the stream's configuration or state."""

    code = "stream_conflict"


class StaleEpoch(HubError):
    """A producer epoch older than the stream knows: a zombie producer is fenced off."""

    status = 403
    code = "stale_producer_epoch"


class ProducerGap(Conflict):
    """A producer skipped sequence numbers: the missing requests must come first."""

    code = "producer_sequence_gap"

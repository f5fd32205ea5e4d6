"""Protocol header names and the parsing of a PUT's and a POST's headers."""

from __future__ import annotations

import re
from datetime import datetime

from starlette.datastructures import Headers

from ..errors import BadRequest
from .offsets import parse_offset
from .producers import producer_from_headers
from .store import AppendRequest, CreateRequest

NEXT_OFFSET = "Stream-Next-Offset"
UP_TO_DATE = "Stream-Up-To-Date"
CLOSED = "Stream-Closed"
CURSOR = "Stream-Cursor"
TTL = "Stream-TTL"
EXPIRES_AT = "Stream-Expires-At"
SEQ = "Stream-Seq"
SSE_ENCODING = "Stream-SSE-Data-Encoding"
FORKED_FROM = "Stream-Forked-From"
FORK_OFFSET = "Stream-Fork-Offset"
FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"
PRODUCER_ID = "Producer-Id"
PRODUCER_EPOCH = "Producer-Epoch"
PRODUCER_SEQ = "Producer-Seq"
PRODUCER_EXPECTED_SEQ = "Producer-Expected-Seq"
PRODUCER_RECEIVED_SEQ = "Producer-Received-Seq"

# What browsers on allowed origins may send and read (CORS).
DS_REQUEST_HEADERS = [
    "If-None-Match",
    SEQ,
    TTL,
    EXPIRES_AT,
    CLOSED,
    PRODUCER_ID,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    FORKED_FROM,
    FORK_OFFSET,
    FORK_SUB_OFFSET,
]
DS_EXPOSED_HEADERS = [
    NEXT_OFFSET,
    CURSOR,
    UP_TO_DATE,
    CLOSED,
    TTL,
    EXPIRES_AT,
    SSE_ENCODING,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    PRODUCER_EXPECTED_SEQ,
    PRODUCER_RECEIVED_SEQ,
    "ETag",
    "Location",
]

# Every response of the protocol carries these (browsers must not sniff stream bytes).
SECURITY = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "cross-origin"}

_TTL = re.compile(r"0|[1-9][0-9]{0,15}")
_COUNT = re.compile(r"0|[1-9][0-9]{0,15}")
_MEDIA_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
MAX_STREAM_SEQ = 256


def is_true(value: str | None) -> bool:
    """``Stream-Closed`` counts only when it is ``true`` (any case)."""
    return value is not None and value.strip().lower() == "true"


def media_type(headers: Headers) -> str | None:
    """The request's Content-Type when it names a media type, else None."""
    value = (headers.get("content-type") or "").strip()
    return value if _MEDIA_TYPE.match(value) and len(value) <= 255 else None


def parse_expires_at(value: str) -> float:
    """An RFC 3339 timestamp as epoch seconds (400 when it is not one)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadRequest(f"{EXPIRES_AT} is not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        raise BadRequest(f"{EXPIRES_AT} needs a time zone (Z or ±hh:mm)")
    return moment.timestamp()


def create_request(
    path: str, headers: Headers, body: bytes, *, owner: str | None, source: str | None
) -> CreateRequest:
    """A PUT as a CreateRequest; ``source`` is the resolved ``Stream-Forked-From`` path."""
    ttl, expires_at = headers.get(TTL), headers.get(EXPIRES_AT)
    if ttl is not None and expires_at is not None:
        raise BadRequest(f"send {TTL} or {EXPIRES_AT}, not both")
    if ttl is not None and not _TTL.fullmatch(ttl):
        raise BadRequest(f"{TTL} must be a whole number of seconds (no sign or leading zero)")
    fork_offset, sub_offset = headers.get(FORK_OFFSET), headers.get(FORK_SUB_OFFSET)
    if source is None and (fork_offset is not None or sub_offset is not None):
        raise BadRequest(f"{FORK_OFFSET} and {FORK_SUB_OFFSET} need {FORKED_FROM}")
    fork_seq = None
    if fork_offset is not None:
        fork_seq = parse_offset(fork_offset)
        if fork_seq is None:
            raise BadRequest(f"{FORK_OFFSET} is not an offset of this server")
    if sub_offset is not None and not _COUNT.fullmatch(sub_offset):
        raise BadRequest(f"{FORK_SUB_OFFSET} must be a non-negative integer")
    return CreateRequest(
        path=path,
        content_type=media_type(headers),
        ttl_seconds=int(ttl) if ttl is not None else None,
        expires_at=expires_at,
        expires_at_ts=parse_expires_at(expires_at) if expires_at is not None else None,
        closed=is_true(headers.get(CLOSED)),
        body=body,
        owner=owner,
        forked_from=source,
        fork_seq=fork_seq,
        fork_sub_offset=int(sub_offset) if sub_offset else 0,
    )


def append_request(path: str, headers: Headers, body: bytes) -> AppendRequest:
    """A POST as an AppendRequest (400 for an empty body without close, or no Content-Type)."""
    producer = producer_from_headers(
        headers.get(PRODUCER_ID), headers.get(PRODUCER_EPOCH), headers.get(PRODUCER_SEQ)
    )
    close = is_true(headers.get(CLOSED))
    if not body and not close:
        raise BadRequest(f"an append needs a body (or {CLOSED}: true to close the stream)")
    content_type = headers.get("content-type")
    if body and not content_type:
        raise BadRequest("an append needs a Content-Type")
    stream_seq = headers.get(SEQ)
    if stream_seq is not None and len(stream_seq) > MAX_STREAM_SEQ:
        raise BadRequest(f"{SEQ} is longer than {MAX_STREAM_SEQ} characters")
    return AppendRequest(
        path=path,
        data=body,
        content_type=content_type,
        stream_seq=stream_seq,
        producer=producer,
        close=close,
    )

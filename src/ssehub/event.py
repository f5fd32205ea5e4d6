"""The Event and its Server-Sent Events wire encoding.

Framing follows the WHATWG HTML "Server-sent events" section, 9.2.6 "Interpreting an event
stream": every field is ``name: value`` ended by LF, an event ends with a blank line, and CR,
LF and CRLF all end a line. An id or event name containing CR or LF could therefore inject new
fields, so :func:`validate_field` rejects them; data is split on every line end instead.

Clients that split lines with Python's ``str.splitlines()`` also break at VT, FF, FS/GS/RS, NEL,
U+2028 and U+2029: names and ids holding them are refused too, and JSON data carries U+2028,
U+2029 and NEL escaped (``\u2028``), which decodes to the same value. ``id:`` is written last,
so a client that records the id as soon as it reads the line never records an event whose data
a cut connection lost.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import InvalidEvent, PayloadTooLarge

_LINE_END = re.compile(r"\r\n|\r|\n")
MAX_EVENT_NAME = 200
# What ends a line for the SSE standard (CR, LF), NUL, and for ``str.splitlines()``.
_LINE_BREAKS = frozenset("\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# Line breaks JSON text may hold unescaped (it escapes everything below U+0020 itself).
_JSON_ESCAPES = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def validate_field(name: str, value: str) -> str:
    """Reject a value that would split or corrupt an SSE frame (a line break or NUL)."""
    if (value.isascii() and value.isprintable()) or _LINE_BREAKS.isdisjoint(value):
        return value
    raise InvalidEvent(
        f"event {name} must not contain line breaks (CR, LF, VT, FF, NEL, U+2028, U+2029) or NUL"
    )


def json_text(value: Any) -> str:
    """Compact JSON text of ``value`` with no raw line break (NEL, U+2028, U+2029 escaped)."""
    text = orjson.dumps(value).decode()
    if not text.isascii():  # the escapes are needed only where non-ASCII text is present
        for raw, escaped in _JSON_ESCAPES.items():
            if raw in text:
                text = text.replace(raw, escaped)
    return text


def validate_event_name(value: str) -> str:
    """An event type: non-empty, at most 200 characters, no CR/LF/NUL."""
    if not value or len(value) > MAX_EVENT_NAME:
        raise InvalidEvent(f"event name must be 1-{MAX_EVENT_NAME} characters")
    return validate_field("name", value)


def data_to_text(data: Any) -> str:
    """The text of a ``data:`` field: strings as they are, anything else as compact JSON."""
    if isinstance(data, str):
        _require_utf8("data", data)
        return data
    try:
        return json_text(data)
    except orjson.JSONEncodeError as exc:
        raise InvalidEvent(f"event data cannot be encoded: {exc}") from exc


def require_data_size(event: Event, max_bytes: int) -> None:
    """413 when ``event``'s data takes more than ``max_bytes`` in UTF-8; encoded to count only
    when its length leaves that open (a character takes 1 to 4 bytes)."""
    text = event.data
    chars = len(text)
    within = chars <= max_bytes
    if within and not text.isascii() and chars * 4 > max_bytes:
        within = len(text.encode()) <= max_bytes
    if not within:
        raise PayloadTooLarge(f"event data exceeds {max_bytes} bytes")


def _require_utf8(name: str, value: str) -> None:
    """Reject lone surrogates (valid in JSON escapes, not encodable as UTF-8 on the wire)."""
    if value.isascii():  # a flag of the string: no encoding needed
        return
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidEvent(f"event {name} is not valid Unicode text") from exc


def encode_fields(
    *, id: str | None = None, event: str | None = None, data: str = "", retry: int | None = None
) -> bytes:
    """Encode one SSE frame; every line end inside ``data`` starts a new ``data:`` line.

    ``id:`` comes last: a client that takes the id as soon as it reads the line has then read
    the whole event but its final blank line.
    """
    out = []
    if event is not None:
        out.append(f"event: {validate_field('name', event)}\n")
    if retry is not None:
        out.append(f"retry: {int(retry)}\n")
    for line in _LINE_END.split(data):
        out.append(f"data: {line}\n")
    if id is not None:
        out.append(f"id: {validate_field('id', id)}\n")
    out.append("\n")
    return "".join(out).encode()


def encode_comment(text: str = "") -> bytes:
    """A comment frame (``: text``), ignored by clients; used for heartbeats and padding."""
    return "".join(f": {line}\n" for line in _LINE_END.split(text)).encode() + b"\n"


def encode_retry(retry_ms: int) -> bytes:
    """A frame that only sets the client's reconnection time."""
    return f"retry: {int(retry_ms)}\n\n".encode()


@dataclass(slots=True)
class Event:
    """One published event. ``id`` is assigned by the broker; ``data`` is the wire text."""

    channel: str
    event: str | None
    data: str
    id: str = ""
    seq: int = 0
    retry: int | None = None
    published_at: float = field(default_factory=time.time)
    ttl: float | None = None  # retention class: seconds kept in history (None: the default)
    _frame: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def frame(self) -> bytes:
        """The SSE bytes of this event, encoded once and shared by every subscriber."""
        if self._frame is None:
            self._frame = encode_fields(
                id=self.id or None, event=self.event, data=self.data, retry=self.retry
            )
        return self._frame

    @property
    def type(self) -> str:
        """The event type a browser dispatches (``message`` when none was given)."""
        return self.event or "message"

    def to_json(self) -> dict[str, Any]:
        """The event as the JSON history API returns it (data decoded when it is JSON)."""
        try:
            data: Any = orjson.loads(self.data)
        except orjson.JSONDecodeError:
            data = self.data
        return {
            "id": self.id,
            "channel": self.channel,
            "event": self.type,
            "data": data,
            "retry": self.retry,
            "published_at": self.published_at,
        }


def make_event(channel: str, event: str | None, data: Any, *, retry: int | None = None) -> Event:
    """Build a validated Event (no id yet) from publish input."""
    if event is not None:
        validate_event_name(event)
        _require_utf8("name", event)
    if retry is not None and retry < 0:
        raise InvalidEvent("retry must be a non-negative number of milliseconds")
    return Event(channel=channel, event=event, data=data_to_text(data), retry=retry)

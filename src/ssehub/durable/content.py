"""Content types of Durable Streams: JSON mode framing and the SSE encoding of stored bytes.

A JSON stream stores each append as its messages' compact JSON joined by commas (an array body
is flattened one level), so a read is ``[`` + the stored fragments joined by ``,`` + ``]``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

import orjson

from .errors import BadBody

DEFAULT_CONTENT_TYPE = "application/octet-stream"
JSON = "application/json"


def normalize(content_type: str | None) -> str:
    """The media type alone, lower case (``Text/Plain; charset=utf-8`` → ``text/plain``)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    """True for a JSON-mode stream."""
    return normalize(content_type) == JSON


def is_text(content_type: str) -> bool:
    """True when SSE carries the stream's bytes as text (``text/*`` and JSON), else base64."""
    kind = normalize(content_type)
    return kind.startswith("text/") or kind == JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """Parse a JSON body strictly (no NaN/Infinity), big integers included; else BadBody."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson refuses integers past 64 bits, which JSON allows
        return json.loads(body.decode(), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBody(f"the body is not valid JSON: {exc}") from exc


def _dump(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_fragment(body: bytes, *, allow_empty: bool) -> tuple[bytes, int]:
    """The stored fragment of a JSON append and its message count.

    An array is flattened one level; an empty array is refused unless ``allow_empty`` (a PUT).
    """
    value = parse_json(body)
    items = value if isinstance(value, list) else [value]
    if not items and not allow_empty:
        raise BadBody("an empty JSON array appends nothing")
    return ",".join(_dump(item) for item in items).encode(), len(items)


def json_items(fragment: bytes) -> list[Any]:
    """The messages of one stored JSON fragment."""
    return list(parse_json(b"[" + fragment + b"]")) if fragment else []


def json_texts(fragment: bytes) -> list[str]:
    """Each message of one stored JSON fragment as compact JSON text."""
    return [_dump(item) for item in json_items(fragment)]


def json_prefix(fragment: bytes, count: int) -> bytes:
    """The stored fragment of the first ``count`` messages of ``fragment``."""
    return ",".join(_dump(item) for item in json_items(fragment)[:count]).encode()


def json_body(fragments: Iterable[bytes]) -> bytes:
    """A JSON-mode read body: every message of ``fragments`` in one array."""
    return b"[" + b",".join(f for f in fragments if f) + b"]"


def sse_data(content_type: str, data: bytes) -> str:
    """The text of one SSE ``data`` event: JSON as an array, text as is, other bytes in base64."""
    if is_json(content_type):
        return json_body([data]).decode()
    if is_text(content_type):
        return data.decode(errors="replace")
    return base64.b64encode(data).decode()


def encode_sse(event: str, text: str) -> bytes:
    """One SSE frame; each line of ``text`` becomes a ``data:`` line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return (f"event: {event}\n" + "".join(f"data:{line}\n" for line in lines) + "\n").encode()

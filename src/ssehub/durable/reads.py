"""Reads of a stream: catch-up, long-poll and SSE (``live=sse``) with ``control`` events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache

import orjson
from starlette.responses import Response, StreamingResponse

from ..errors import BadRequest
from . import content
from .errors import StreamNotFound
from .headers import CLOSED, CURSOR, NEXT_OFFSET, SECURITY, SSE_ENCODING, UP_TO_DATE
from .offsets import NOW, START, format_offset, next_cursor, parse_offset
from .service import DurableStreams
from .store import ReadResult, StreamMeta
from .waiters import wait

LIVE_MODES = (None, "long-poll", "sse")
CACHEABLE = "max-age=60, stale-while-revalidate=300"


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """The query of a GET: where to start, the live mode and the echoed cursor."""

    offset: str
    live: str | None
    cursor: str | None

    @classmethod
    def parse(cls, params: list[tuple[str, str]]) -> ReadQuery:
        """Validate ``offset`` (one, a sentinel or one of ours), ``live`` and ``cursor``."""
        offsets = [v for k, v in params if k == "offset"]
        lives = [v for k, v in params if k == "live"]
        cursors = [v for k, v in params if k == "cursor"]
        if len(offsets) > 1:
            raise BadRequest("send one offset")
        if offsets and offsets[0] not in (START, NOW) and parse_offset(offsets[0]) is None:
            raise BadRequest("offset must be -1, now, or an offset this server returned")
        live = lives[0] if lives else None
        if live not in LIVE_MODES:
            raise BadRequest("live must be long-poll or sse")
        if live is not None and not offsets:
            raise BadRequest(f"live={live} needs an offset")
        return cls(offsets[0] if offsets else START, live, cursors[0] if cursors else None)

    def start_seq(self, meta: StreamMeta) -> int:
        """The position to read after."""
        if self.offset == START:
            return 0
        if self.offset == NOW:
            return meta.tail_seq
        return parse_offset(self.offset) or 0


def body_of(meta: StreamMeta, result: ReadResult) -> bytes:
    """The response body of the chunks read: a JSON array in JSON mode, else the bytes."""
    if content.is_json(meta.content_type):
        return content.json_body(c.data for c in result.chunks)
    return b"".join(c.data for c in result.chunks)


def etag(meta: StreamMeta, start: str, end: int, closed: bool) -> str:
    """``"<stream id>:<start>:<end>"``, with ``:c`` once the stream is closed at that end."""
    return f'"{meta.id}:{start}:{format_offset(end)}{":c" if closed else ""}"'


async def read_response(
    ds: DurableStreams,
    meta: StreamMeta,
    query: ReadQuery,
    *,
    if_none_match: str | None,
    private: bool,
) -> Response:
    """A catch-up or long-poll read."""
    cache = f"{'private' if private else 'public'}, {CACHEABLE}"
    after = query.start_seq(meta)
    await ds.store.touch(meta)
    ds.metrics.reads.labels(query.live or "catch-up").inc()
    if query.offset == NOW and query.live is None:
        headers = {NEXT_OFFSET: format_offset(meta.tail_seq), UP_TO_DATE: "true"}
        headers["Cache-Control"] = "no-store"
        if meta.closed:
            headers[CLOSED] = "true"
        empty = b"[]" if content.is_json(meta.content_type) else b""
        return _response(200, empty, meta.content_type, headers)
    if query.live == "long-poll":
        result = await long_poll(ds, meta, after)
    else:
        result = await ds.store.read(meta, after, max_bytes=ds.settings.ds_max_read_bytes)
    end = result.next_seq if result.next_seq is not None else result.tail_seq
    at_tail = end >= result.tail_seq
    closed = result.closed and at_tail
    headers = {NEXT_OFFSET: format_offset(end)}
    if at_tail:
        headers[UP_TO_DATE] = "true"
    if closed:
        headers[CLOSED] = "true"
    if query.live == "long-poll" and not closed:
        headers[CURSOR] = next_cursor(query.cursor)
    if query.live == "long-poll" and not result.chunks:
        return _response(204, b"", None, headers)
    headers["ETag"] = etag(meta, query.offset, end, closed)
    if if_none_match is not None and if_none_match == headers["ETag"]:
        return _response(304, b"", None, {"ETag": headers["ETag"]})
    headers["Cache-Control"] = cache
    return _response(200, body_of(meta, result), meta.content_type, headers)


async def long_poll(ds: DurableStreams, meta: StreamMeta, after: int) -> ReadResult:
    """Chunks after ``after`` now, or the first ones appended within the long-poll timeout."""
    deadline = time.monotonic() + ds.settings.ds_long_poll_seconds
    ds.metrics.live_readers.inc()
    try:
        with ds.waiters.watching(meta.path):
            while True:
                woken = ds.waiters.current(meta.path)
                result = await ds.read(meta, after)
                if result.chunks or result.closed:
                    return result
                if not await wait(woken, deadline - time.monotonic()):
                    return await ds.read(meta, after)
    finally:
        ds.metrics.live_readers.dec()


def _response(
    status: int, body: bytes, media_type: str | None, headers: dict[str, str]
) -> Response:
    response = Response(body, status_code=status, headers={**SECURITY, **headers})
    if media_type is not None:
        response.headers["content-type"] = media_type
    return response


def control(next_seq: int, *, closed: bool, up_to_date: bool, cursor: str | None) -> bytes:
    """A ``control`` event: the next offset, and the cursor and up-to-date flag or the EOF flag."""
    return control_frame(next_seq, closed, up_to_date, None if closed else next_cursor(cursor))


@lru_cache(maxsize=4096)
def control_frame(next_seq: int, closed: bool, up_to_date: bool, cursor: str | None) -> bytes:
    """The encoded control event (shared: every reader woken by one append sends the same)."""
    fields: dict[str, object] = {"streamNextOffset": format_offset(next_seq)}
    if closed:
        fields["streamClosed"] = True
        fields["upToDate"] = True
    else:
        fields["streamCursor"] = cursor
        if up_to_date:
            fields["upToDate"] = True
    return content.encode_sse("control", orjson.dumps(fields).decode())


@lru_cache(maxsize=4096)
def data_frame(content_type: str, data: bytes) -> bytes:
    """The encoded data event of one append (encoded once for all its live readers)."""
    return content.encode_sse("data", content.sse_data(content_type, data))


def sse_response(ds: DurableStreams, meta: StreamMeta, query: ReadQuery) -> StreamingResponse:
    """An SSE read: data events for appends, a control event after each batch, EOF on close."""
    headers = {
        **SECURITY,
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    }
    if not content.is_text(meta.content_type):
        headers[SSE_ENCODING] = "base64"
    ds.metrics.reads.labels("sse").inc()
    return StreamingResponse(sse_frames(ds, meta, query), headers=headers)


async def follow(
    ds: DurableStreams, meta: StreamMeta, position: int
) -> AsyncIterator[ReadResult | None]:
    """Reads from ``position`` on as appends arrive (None: a quiet keep-alive period passed).

    Ends after the stream's final read once it is closed, when it is deleted, or when the
    connection's time (``ds_sse_seconds``) is up; the client then resumes from its offset.
    """
    settings = ds.settings
    ends = time.monotonic() + settings.ds_sse_seconds
    await ds.store.touch(meta)
    ds.metrics.live_readers.inc()
    try:
        with ds.waiters.watching(meta.path):
            while True:
                woken = ds.waiters.current(meta.path)
                try:
                    result = await ds.read(meta, position)
                except StreamNotFound:
                    return  # deleted meanwhile: the client's next request gets the 404
                yield result
                position = result.next_position(position)
                if position < result.tail_seq:
                    continue
                if result.closed:
                    return
                left = ends - time.monotonic()
                if left <= 0:
                    return
                if not await wait(woken, min(left, settings.ds_keepalive_seconds)):
                    yield None
    finally:
        ds.metrics.live_readers.dec()


async def sse_frames(
    ds: DurableStreams, meta: StreamMeta, query: ReadQuery
) -> AsyncIterator[bytes]:
    """The protocol's SSE: a data event per append, each followed by a control event."""
    position = query.start_seq(meta)
    announce = True  # the first read always ends with a control event, as a quiet period does
    async for result in follow(ds, meta, position):
        if result is None:
            yield control(position, closed=False, up_to_date=True, cursor=query.cursor)
            continue
        frames = []
        tail = result.tail_seq
        for chunk in result.chunks:
            closed = result.closed and chunk.seq >= tail
            frames.append(data_frame(meta.content_type, chunk.data))
            frames.append(
                control(chunk.seq, closed=closed, up_to_date=chunk.seq >= tail, cursor=query.cursor)
            )
        position = result.next_position(position)
        at_tail = position >= tail
        if not frames and (announce or (result.closed and at_tail)):
            closed = result.closed and at_tail
            frames.append(control(position, closed=closed, up_to_date=at_tail, cursor=query.cursor))
        announce = False
        if frames:
            yield b"".join(frames)

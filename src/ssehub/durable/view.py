"""A Durable Stream read as an ordinary ssehub event stream, for browsers' ``EventSource``.

``GET /api/v1/sse/ds/{path}`` sends every message as a ``message`` event whose ``id:`` is a
resumable position, so the browser's automatic reconnect (``Last-Event-ID``) continues exactly
after the last event it received; the protocol's own SSE mode has no ids. One append of a JSON
stream is one event per JSON message: the last message's id is the append's offset, the ones
before it are ``<previous offset>.<k>`` (k messages of that append already received). Text
streams send each append's text, other types its bytes in base64. At the end of a closed stream
a ``closed`` event follows, and a reconnect from the final offset gets 204, which stops an
EventSource for good.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..auth import require_subscribe
from ..errors import BadRequest, HubError
from ..event import encode_comment, encode_fields, encode_retry
from ..refusals import hub_error_response
from . import content
from .admission import admit_reader, releasing
from .offsets import format_offset, parse_offset
from .reads import follow
from .routes import existing, rights_name, validate_path
from .service import DurableStreams
from .store import Chunk, StreamMeta

PREFIX = "/api/v1/sse/ds"
HEARTBEAT = encode_comment("ping")


def parse_resume(value: str | None) -> tuple[int, int]:
    """``Last-Event-ID`` as (offset sequence, messages of the next append already sent)."""
    if not value:
        return 0, 0
    offset, _, sent = value.partition(".")
    seq = parse_offset(offset)
    if seq is None or (sent and not (sent.isdigit() and len(sent) <= 9)):
        raise BadRequest("Last-Event-ID is not a position of this stream")
    return seq, int(sent or 0)


def chunk_events(meta: StreamMeta, previous: int, chunk: Chunk, skip: int) -> list[bytes]:
    """The ``message`` events of one append after its first ``skip`` messages, with their ids."""
    if content.is_json(meta.content_type):
        texts = content.json_texts(chunk.data)
        last = len(texts)
        return [
            encode_fields(
                id=format_offset(chunk.seq) if k == last else f"{format_offset(previous)}.{k}",
                event="message",
                data=text,
            )
            for k, text in enumerate(texts, start=1)
            if k > skip
        ]
    if content.is_text(meta.content_type):
        text = chunk.data.decode(errors="replace")
    else:
        text = base64.b64encode(chunk.data).decode()
    return [encode_fields(id=format_offset(chunk.seq), event="message", data=text)]


async def view_frames(
    ds: DurableStreams, meta: StreamMeta, position: int, skip: int
) -> AsyncIterator[bytes]:
    """The event stream: retry, then messages as they are stored, then ``closed`` at EOF."""
    yield encode_retry(ds.hub.retry_ms or 3000)
    async for result in follow(ds, meta, position):
        if result is None:
            yield HEARTBEAT
            continue
        frames: list[bytes] = []
        for chunk in result.chunks:
            frames.extend(chunk_events(meta, position, chunk, skip))
            position, skip = chunk.seq, 0
        if result.closed and position >= result.tail_seq:
            end = f'{{"offset":"{format_offset(position)}"}}'
            frames.append(encode_fields(id=format_offset(position), event="closed", data=end))
        if frames:
            yield b"".join(frames)


async def eventsource(request: Request) -> Response:
    """``GET /api/v1/sse/ds/{path}``: the stream for EventSource, resumable by Last-Event-ID."""
    ds: DurableStreams = request.app.state.durable
    try:
        path = validate_path(request.path_params["path"])
        principal = await request.app.state.authenticator.authenticate(request)
        require_subscribe(principal, rights_name(path))
        meta = await existing(ds, path)
        last_id = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
        position, skip = parse_resume(last_id)
        if last_id and meta.closed and position >= meta.tail_seq:
            return Response(status_code=204)  # the end was delivered: EventSource stops
        release = await admit_reader(request, principal, rights_name(path))
    except HubError as exc:
        return hub_error_response(request.app.state.metrics, exc)
    ds.metrics.reads.labels("eventsource").inc()
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    headers["Content-Type"] = "text/event-stream; charset=utf-8"
    frames = view_frames(ds, meta, position, skip)
    return releasing(StreamingResponse(frames, headers=headers), release)

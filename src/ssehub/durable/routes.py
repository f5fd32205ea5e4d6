"""The HTTP face of Durable Streams: PUT, POST, GET, HEAD and DELETE on ``{mount}/{path}``.

Rights: a stream at ``{mount}/chat/42`` is the channel name ``ds:chat:42`` for the token's
patterns (``/`` becomes ``:``, as channel names have no ``/``): ``publish`` to create, append,
close and delete it, ``subscribe`` to read it (and to fork it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ..auth import Principal, require_publish, require_subscribe
from ..errors import BadRequest, HubError, NotFound, TooManyRequests
from ..gate import client_ip
from ..refusals import hub_error_response
from . import headers as h
from .admission import admit_reader, releasing
from .errors import ProducerGap, StaleEpoch, StreamGone, StreamNotFound
from .offsets import format_offset
from .producers import Verdict
from .reads import ReadQuery, read_response, sse_response
from .service import DurableStreams
from .store import AppendRequest, AppendResult, StreamMeta

RIGHTS_PREFIX = "ds:"
MAX_PATH = 1024
RESERVED_SEGMENT = "__ds"

Handler = Callable[[DurableStreams, Request, str, Principal], Awaitable[Response]]


def rights_name(path: str) -> str:
    """The name a stream's path is checked as against ``publish``/``subscribe`` patterns."""
    return RIGHTS_PREFIX + path.replace("/", ":")


def validate_path(path: str) -> str:
    """A stream path: 1-1024 characters, no control characters, not the reserved ``__ds``."""
    if not path or len(path) > MAX_PATH:
        raise BadRequest(f"a stream path has 1-{MAX_PATH} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in path):
        raise BadRequest("a stream path has no control characters")
    if path.split("/", 1)[0] == RESERVED_SEGMENT:
        raise NotFound("the __ds control APIs (subscriptions) are not served by this hub")
    return path


def source_path(value: str | None, mount: str) -> str | None:
    """The stream path ``Stream-Forked-From`` names: a URL, a path under the mount, or relative."""
    if value is None:
        return None
    path = unquote(urlsplit(value.strip()).path)
    if mount and path.startswith(mount + "/"):
        path = path[len(mount) :]
    return validate_path(path.lstrip("/"))


def respond(status: int, headers: dict[str, str], media_type: str | None = None) -> Response:
    """An empty response with the protocol's security headers."""
    response = Response(b"", status_code=status, headers={**h.SECURITY, **headers})
    if media_type is not None:
        response.headers["content-type"] = media_type
    return response


async def charged_body(request: Request, principal: Principal) -> bytes:
    """The body of a write, charged one publish and its bytes (as event data is), or 429."""
    gate, ip = request.app.state.gate, client_ip(request)
    await gate.check_rate("publish", principal, ip)
    body = await request.body()
    await gate.check_rate("publish_bytes", principal, ip, cost=len(body))
    return body


async def create(ds: DurableStreams, request: Request, path: str, principal: Principal) -> Response:
    """PUT: create a stream (201), confirm an identical one (200), or fork one."""
    require_publish(principal, rights_name(path))
    source = source_path(request.headers.get(h.FORKED_FROM), ds.settings.ds_mount.rstrip("/"))
    if source is not None:
        require_subscribe(principal, rights_name(source))
    body = await charged_body(request, principal)
    wanted = h.create_request(path, request.headers, body, owner=principal.user_id, source=source)
    if principal.user_id is not None and not principal.admin:
        limit = ds.settings.ds_max_streams_per_user
        if await ds.store.count_owned(principal.user_id) >= limit:
            raise TooManyRequests(
                f"user {principal.user_id!r} already owns {limit} streams (the limit)",
                code="too_many_streams",
            )
    meta, created = await ds.store.create(wanted)
    headers = {h.NEXT_OFFSET: format_offset(meta.tail_seq)}
    if meta.closed:
        headers[h.CLOSED] = "true"
    if created:
        headers["Location"] = str(request.url.replace(query=""))
        ds.metrics.append_bytes.inc(len(body))
    return respond(201 if created else 200, headers, meta.content_type)


async def append(ds: DurableStreams, request: Request, path: str, principal: Principal) -> Response:
    """POST: append, append-and-close or close (idempotent producers deduplicated)."""
    require_publish(principal, rights_name(path))
    wanted = h.append_request(path, request.headers, await charged_body(request, principal))
    result = await ds.store.append(wanted)
    if result.appended:
        ds.metrics.appends.inc()
        ds.metrics.append_bytes.inc(len(wanted.data))
        await ds.wakeups.notify(path, result.tail_seq)
    return append_response(wanted, result)


def append_response(wanted: AppendRequest, result: AppendResult) -> Response:
    """The status and headers of an append's outcome (see the protocol's producer table)."""
    headers = {h.NEXT_OFFSET: format_offset(result.tail_seq)}
    if result.closed:
        headers[h.CLOSED] = "true"
    decision, producer = result.decision, wanted.producer
    if decision is None or producer is None:
        return respond(204, headers)
    verdict, state = decision.verdict, decision.state
    if verdict is Verdict.ACCEPT:
        headers |= {h.PRODUCER_EPOCH: str(producer.epoch), h.PRODUCER_SEQ: str(producer.seq)}
        return respond(200 if wanted.data else 204, headers)
    if verdict is Verdict.DUPLICATE:
        assert state is not None
        headers |= {h.PRODUCER_EPOCH: str(producer.epoch), h.PRODUCER_SEQ: str(state.last_seq)}
        return respond(204, headers)
    if verdict is Verdict.STALE_EPOCH:
        assert state is not None
        raise StaleEpoch(
            f"producer epoch {producer.epoch} is older than the stream's {state.epoch}",
            headers={h.PRODUCER_EPOCH: str(state.epoch)},
        )
    if verdict is Verdict.BAD_EPOCH_SEQ:
        raise BadRequest("a new producer epoch starts at Producer-Seq 0")
    raise ProducerGap(
        f"producer sequence gap: expected {decision.expected_seq}, got {producer.seq}",
        headers={
            h.PRODUCER_EXPECTED_SEQ: str(decision.expected_seq),
            h.PRODUCER_RECEIVED_SEQ: str(producer.seq),
        },
    )


async def existing(ds: DurableStreams, path: str) -> StreamMeta:
    """The live stream at ``path`` (404 absent or expired, 410 deleted with forks left)."""
    meta = await ds.store.get(path)
    if meta is None:
        raise StreamNotFound(f"no stream at {path!r}")
    if meta.soft_deleted:
        raise StreamGone("the stream was deleted")
    return meta


async def head(ds: DurableStreams, request: Request, path: str, principal: Principal) -> Response:
    """HEAD: the stream's metadata (never cached)."""
    require_subscribe(principal, rights_name(path))
    meta = await existing(ds, path)
    headers = {h.NEXT_OFFSET: format_offset(meta.tail_seq), "Cache-Control": "no-store"}
    if meta.closed:
        headers[h.CLOSED] = "true"
    if meta.ttl_seconds is not None:
        headers[h.TTL] = str(meta.ttl_seconds)
    if meta.expires_at is not None:
        headers[h.EXPIRES_AT] = meta.expires_at
    closed = ":c" if meta.closed else ""
    headers["ETag"] = f'"{meta.id}:-1:{format_offset(meta.tail_seq)}{closed}"'
    return respond(200, headers, meta.content_type)


async def read(ds: DurableStreams, request: Request, path: str, principal: Principal) -> Response:
    """GET: catch-up, long-poll or SSE."""
    require_subscribe(principal, rights_name(path))
    meta = await existing(ds, path)
    query = ReadQuery.parse(request.query_params.multi_items())
    if query.live == "sse":
        release = await admit_reader(request, principal, rights_name(path))
        return releasing(sse_response(ds, meta, query), release)
    return await read_response(
        ds,
        meta,
        query,
        if_none_match=request.headers.get("if-none-match"),
        private=principal.authenticated,
    )


async def remove(ds: DurableStreams, request: Request, path: str, principal: Principal) -> Response:
    """DELETE: remove the stream (kept for its forks' reads while they exist)."""
    require_publish(principal, rights_name(path))
    await ds.store.delete(path)
    await ds.wakeups.notify(path, -1)
    return respond(204, {})


HANDLERS: dict[str, Handler] = {
    "PUT": create,
    "POST": append,
    "GET": read,
    "HEAD": head,
    "DELETE": remove,
}


async def endpoint(request: Request) -> Response:
    """Dispatch one protocol request; errors get the JSON error shape and the security headers."""
    ds: DurableStreams = request.app.state.durable
    try:
        handler = HANDLERS.get(request.method)
        if handler is None:
            return respond(405, {"Allow": ", ".join(HANDLERS)})
        path = validate_path(request.path_params["path"])
        ds.used = True
        principal = await request.app.state.authenticator.authenticate(request)
        return await handler(ds, request, path, principal)
    except HubError as exc:
        response = hub_error_response(request.app.state.metrics, exc)
        response.headers.update(h.SECURITY)
        return response

"""The wire publish answers exactly as the application, request by request, and is taken.

Two hubs with the same settings, ``fast_publish`` on and off, get the same raw requests; their
answers (the bytes, with the date, event ids and generated request ids reduced to their shape),
access lines and refusal counters must match. An outermost middleware on the fast hub records
which requests still reached the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from harness import RunningHub, serve_app, wait_until
from redis_support import RedisKeys
from ssehub.app import create_app
from ssehub.auth import JWTAuthenticator, OpenAccess, Principal
from ssehub.errors import Unauthorized
from ssehub.logs import RequestIdFilter
from ssehub.routes import publish_shortcut
from ssehub.settings import Settings
from ssehub.wirepublish import publisher_of
from tokens import SECRET, hs256

ALICE = f"Bearer {hs256('alice', publish=['news', 'news:*', 'ai_story:*'])}"
JSON = "application/json"
PLAIN = b'{"event":"token","data":"hello"}'

EVENT_ID = re.compile(rb'"id":"[0-9a-z]+-[0-9]+"')
DATE = re.compile(rb"\r\ndate: [^\r]*")
GENERATED_RID = re.compile(rb"[0-9a-f]{32}")
WAIT = re.compile(rb"retry in [0-9.]+ s|\r\nretry-after: [0-9]+")


def hub_settings(fast: bool, **extra: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, jwt_secret=SECRET, max_event_bytes=1024, fast_publish=fast, **extra
    )


class Seen:
    """Outermost middleware: the paths of the HTTP requests that reached the application."""

    def __init__(self, app: Any, paths: list[str]) -> None:
        self.app, self.paths = app, paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"] + ("?" if scope["query_string"] else ""))
        await self.app(scope, receive, send)


class Access(logging.Handler):
    """The access lines of every hub of the test, as (method, path, status, request id)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[Any, ...]] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        rid = GENERATED_RID.sub(b"RID", str(record.request_id).encode()).decode()
        fields = (record.method, record.path, record.status, rid)  # type: ignore[attr-defined]
        self.lines.append(fields)


@pytest.fixture
def access() -> Any:
    logger = logging.getLogger("ssehub.access")
    handler, level = Access(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


class Pair:
    """A fast hub and an ASGI-only hub with the same settings."""

    def __init__(self, fast: RunningHub, plain: RunningHub, seen: list[str]) -> None:
        self.fast, self.plain, self.seen = fast, plain, seen

    @property
    def hubs(self) -> tuple[RunningHub, RunningHub]:
        return self.fast, self.plain


@contextlib.asynccontextmanager
async def hub_pair(*, authenticator: Any = None, **extra: Any) -> AsyncIterator[Pair]:
    seen: list[str] = []
    fast_app = create_app(hub_settings(True, **extra), authenticator=authenticator)
    fast_app.add_middleware(Seen, paths=seen)
    plain_app = create_app(hub_settings(False, **extra), authenticator=authenticator)
    async with serve_app(fast_app) as fast, serve_app(plain_app) as plain:
        yield Pair(fast, plain, seen)


def request(
    channel: str = "news",
    body: bytes = PLAIN,
    *,
    headers: dict[str, str] | None = None,
    target: str | None = None,
    version: str = "1.1",
    length: bool = True,
) -> bytes:
    """A raw publish: Host, then ``headers`` (JSON and alice's token unless given), the body."""
    heads = {"Content-Type": JSON, "Authorization": ALICE, **(headers or {})}
    if length:
        heads["Content-Length"] = str(len(body))
    lines = [f"POST {target or '/api/v1/publish/' + channel} HTTP/{version}", "Host: hub"]
    lines += [f"{name}: {value}" for name, value in heads.items() if value]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Conn:
    """A raw client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, hub: RunningHub) -> Conn:
        url = urllib.parse.urlsplit(hub.url)
        return cls(*await asyncio.open_connection(url.hostname, url.port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        with contextlib.suppress(ConnectionError):  # a server that answered early and closed
            await self.writer.drain()

    async def response(self) -> bytes:
        """One whole response: head and ``content-length`` body, or what came until EOF."""
        async with asyncio.timeout(10):
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                return exc.partial
            found = re.search(rb"\r\ncontent-length: ([0-9]+)", head)
            return head + await self.reader.readexactly(int(found.group(1)) if found else 0)

    async def at_eof(self) -> bool:
        async with asyncio.timeout(10):
            return await self.reader.read(1) == b""

    def close(self) -> None:
        self.writer.close()


def shape(raw: bytes) -> bytes:
    """A response with what legitimately differs between two hubs reduced to its shape."""
    raw = DATE.sub(b"\r\ndate: -", raw)
    raw = EVENT_ID.sub(b'"id":"ID"', raw)
    raw = WAIT.sub(b"WAIT", raw)
    return GENERATED_RID.sub(b"RID", raw)


async def exchange(hub: RunningHub, *payloads: bytes, raw: bool = False) -> list[bytes]:
    """The payloads one after the other on one new connection; the answers (shaped unless
    ``raw``)."""
    conn = await Conn.open(hub)
    try:
        answers = []
        for payload in payloads:
            await conn.send(payload)
            answer = await conn.response()
            answers.append(answer if raw else shape(answer))
        return answers
    finally:
        conn.close()


RID = {"X-Request-ID": "req-1"}
# (name, request, taken by the wire path)
CASES: list[tuple[str, bytes, bool]] = [
    ("plain", request(headers=RID), True),
    ("generated request id", request(), True),
    ("invalid request id", request(headers={"X-Request-ID": "a b"}), True),
    ("json data", request("news:1", b'{"data":{"a":[1,2.5,null]},"retry":5}'), True),
    ("idempotency key", request(headers={"Idempotency-Key": "k1"}), True),
    ("charset", request(headers={"Content-Type": "application/json; charset=utf-8"}), True),
    ("retry too long", request(body=b'{"data":"x","retry":999999999}'), True),
    ("event with newline", request(body=b'{"event":"a\\nb","data":"x"}'), True),
    ("data too large", request(body=b'{"data":"' + b"x" * 2000 + b'"}'), True),
    ("no token", request(headers={"Authorization": ""}), True),
    ("bad token", request(headers={"Authorization": "Bearer nope"}), True),
    ("not bearer", request(headers={"Authorization": "Basic eA=="}), True),
    ("no right", request("sports"), True),
    ("bad channel", request("news:a*"), True),
    ("origin without cors", request(headers={"Origin": "http://a.example"}), True),
    ("cookie", request(headers={"Cookie": "x=1"}), True),
    ("connection close", request(headers={"Connection": "close"}), True),
    ("negative retry", request(body=b'{"data":"x","retry":-1}'), False),
    ("other hub's shape", request(body=b'{"type":"a","payload":1}'), False),
    ("broken JSON", request(body=b'{"data":'), False),
    ("big integer", request(body=b'{"data":123456789012345678901234567890}'), False),
    ("empty body", request(body=b""), False),
    ("text body", request(headers={"Content-Type": "text/plain"}), False),
    ("no content type", request(headers={"Content-Type": ""}), False),
    ("query string", request(target="/api/v1/publish/news?x=1"), False),
    ("token in query", request(target=f"/api/v1/publish/news?access_token={ALICE[7:]}"), False),
    ("escaped path", request(target="/api/v1/publish/news%3A2"), False),
    ("trailing slash", request(target="/api/v1/publish/news/"), False),
    ("no channel", request(target="/api/v1/publish/"), False),
    ("forwarded", request(headers={"X-Forwarded-For": "10.1.2.3"}), False),
    ("HTTP/1.0", request(version="1.0"), False),
    ("long key", request(headers={"Idempotency-Key": "k" * 201}), False),
    ("two keys", request(headers={"Idempotency-Key": "a"}).replace(b"Host", b"Idempotency-Key: b\r\nHost"), False),  # noqa: E501
    ("chunked", request(length=False, headers={"Transfer-Encoding": "chunked"}).replace(PLAIN, b"%x\r\n%s\r\n0\r\n\r\n" % (len(PLAIN), PLAIN)), False),  # noqa: E501
    ("over the body limit", request(body=b'{"data":"' + b"x" * 300_000 + b'"}'), False),
]  # fmt: skip


async def test_every_request_gets_the_applications_answer(access: Access) -> None:
    async with hub_pair() as pair:
        assert publisher_of(pair.fast.server.config).eager  # type: ignore[union-attr]
        assert publisher_of(pair.plain.server.config) is None
        for name, payload, taken in CASES:
            before = len(pair.seen)
            fast = await exchange(pair.fast, payload)
            lines = len(access.lines)
            plain = await exchange(pair.plain, payload)
            assert fast == plain, name
            assert access.lines[lines - 1 : lines] == access.lines[-1:], name
            assert (len(pair.seen) == before) is taken, name
        counters = [await metric_lines(hub) for hub in pair.hubs]
        assert counters[0] == counters[1]
        assert any(line.startswith("ssehub_auth_failures") for line in counters[0])


async def test_an_empty_idempotency_key_is_no_key() -> None:
    """An empty ``Idempotency-Key`` (a template's unset variable) names no publish: before,
    every publish after the first one with it was taken for a retry and silently dropped."""
    empty = request(headers={"Idempotency-Key": ""}).replace(b"Host", b"Idempotency-Key: \r\nHost")
    async with hub_pair() as pair:
        for hub in pair.hubs:
            answers = await exchange(hub, empty, empty, raw=True)
            ids = [EVENT_ID.search(answer) for answer in answers]
            assert all(ids) and ids[0].group() != ids[1].group(), answers  # type: ignore[union-attr]


class HeaderAuthenticator:
    """An application's own authenticator: the caller is the ``X-User`` header's user."""

    async def authenticate(self, request: HTTPConnection) -> Principal:
        user = request.headers.get("x-user")
        if user is None:
            raise Unauthorized("send X-User")
        return Principal(user_id=user, publish=(f"news:{user}",))


async def test_an_application_s_authenticator_reads_the_taken_publish() -> None:
    """The wire path names the caller from the head only for the built-in authenticators;
    another one gets the request, as on the ASGI path."""
    payloads = [
        request("news:alice", headers={"X-User": "alice", "Authorization": ""}),
        request("news:alice", headers={"X-User": "bob", "Authorization": ""}),
        request("news:alice", headers={"Authorization": ""}),
        request("news:alice", headers={"X-User": "alice", "Cookie": "ssehub_token=x"}),
    ]
    async with hub_pair(authenticator=HeaderAuthenticator()) as pair:
        answers = [await exchange(hub, *payloads) for hub in pair.hubs]
    assert answers[0] == answers[1]
    statuses = [answer.split(b" ", 2)[1] for answer in answers[0]]
    assert statuses == [b"200", b"403", b"401", b"200"]
    assert not pair.seen


async def metric_lines(hub: RunningHub) -> list[str]:
    conn = await Conn.open(hub)
    try:
        await conn.send(b"GET /metrics HTTP/1.1\r\nHost: hub\r\n\r\n")
        text = (await conn.response()).decode()
    finally:
        conn.close()
    names = ("ssehub_auth_failures", "ssehub_rate_limit_rejections", "ssehub_events_published")
    return [line for line in text.splitlines() if line.startswith(names) and "_created" not in line]


async def test_a_finished_run_refuses_alike() -> None:
    channel = "ai_story:project:r1:stage:rewrite"
    token = b'{"event":"token","data":{}}'
    steps = [token, b'{"event":"done","data":{}}', token]
    async with hub_pair() as pair:
        answers = [await exchange(hub, *(request(channel, s) for s in steps)) for hub in pair.hubs]
    assert answers[0] == answers[1]
    assert answers[0][-1].startswith(b"HTTP/1.1 409 ")
    assert not pair.seen


async def test_rate_limits_refuse_alike(access: Access) -> None:
    async with hub_pair(publish_rate_per_user=0.001, publish_burst_per_user=1) as pair:
        answers = [await exchange(hub, request(), request(headers=RID)) for hub in pair.hubs]
        assert answers[0] == answers[1]
        assert answers[0][1].startswith(b"HTTP/1.1 429 ")
        assert b"WAIT" in answers[0][1]  # Retry-After
        assert access.lines[1] == access.lines[3] == ("POST", "/api/v1/publish/news", 429, "req-1")
        assert await metric_lines(pair.fast) == await metric_lines(pair.plain)
    assert pair.seen == ["/metrics"]


async def test_with_cors_an_origin_goes_to_the_application() -> None:
    origin = {"Origin": "http://app.example"}
    async with hub_pair(cors_origins=["http://app.example"]) as pair:
        answers = [await exchange(hub, request(headers=origin), request()) for hub in pair.hubs]
    assert answers[0] == answers[1]
    assert b"access-control-allow-origin: http://app.example" in answers[0][0]
    assert pair.seen == ["/api/v1/publish/news"]  # the second request was taken


async def test_pipelined_requests_are_answered_in_order() -> None:
    batch = [
        request("news:1"),
        request("news:2"),
        b"GET /nowhere HTTP/1.1\r\nHost: hub\r\n\r\n",
        request(target="/api/v1/publish/news:3?x=1"),
        request("news:4", b'{"data":"x","retry":-1}'),
        request("news:5"),
    ]
    async with hub_pair() as pair:
        answers = []
        for hub in pair.hubs:
            conn = await Conn.open(hub)
            await conn.send(b"".join(batch))
            answers.append([shape(await conn.response()) for _ in batch])
            conn.close()
    assert answers[0] == answers[1]
    statuses = [answer.split(b" ", 2)[1] for answer in answers[0]]
    assert statuses == [b"200", b"200", b"404", b"200", b"400", b"200"]
    channels = [re.findall(rb'"channel":"([^"]+)"', a) for a in answers[0]]
    assert channels == [[b"news:1"], [b"news:2"], [], [b"news:3"], [], [b"news:5"]]


async def test_a_body_in_pieces_and_a_kept_alive_connection() -> None:
    async with hub_pair() as pair:
        conn = await Conn.open(pair.fast)
        try:
            for round_ in range(3):
                payload = request(headers=RID)
                cut = payload.index(b"\r\n\r\n") + 6
                for piece in (payload[:cut], payload[cut : cut + 5], payload[cut + 5 :]):
                    await conn.send(piece)
                    await asyncio.sleep(0.02)  # separate reads (the answer is the same if not)
                answer = await conn.response()
                assert answer.startswith(b"HTTP/1.1 200 "), (round_, answer)
        finally:
            conn.close()
    assert not pair.seen


async def test_connection_close_is_answered_and_closed() -> None:
    async with hub_pair() as pair:
        for hub in pair.hubs:
            conn = await Conn.open(hub)
            await conn.send(request(headers={"Connection": "close"}))
            answer = await conn.response()
            assert b"\r\nconnection: close\r\n" in answer
            assert await conn.at_eof()
            conn.close()


async def never_ending_body(hub: RunningHub) -> bytes:
    """A publish whose body stops short: the answer, once the server closed."""
    conn = await Conn.open(hub)
    await conn.send(request(headers=RID)[:-5])
    answer = await conn.response()
    assert await conn.at_eof()
    conn.close()
    state = hub.server.server_state
    await wait_until(lambda: not state.tasks)
    return answer


async def test_a_slow_body_gets_408_as_from_the_application(access: Access) -> None:
    async with hub_pair(body_timeout_seconds=0.3) as pair:
        answers = [await never_ending_body(hub) for hub in pair.hubs]
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 408 ")
    assert access.lines[0] == access.lines[1]
    assert pair.seen == ["/api/v1/publish/news"]  # handed over with what was read


async def leave_mid_body(hub: RunningHub, access: Access) -> None:
    """Send part of a publish and leave; return once the hub logged it and let it go."""
    state, lines = hub.server.server_state, len(access.lines)
    conn = await Conn.open(hub)
    await conn.send(request(headers=RID)[:-5])
    await wait_until(lambda: state.connections)
    conn.close()
    await wait_until(lambda: len(access.lines) > lines)
    await wait_until(lambda: not state.tasks and not state.connections)


async def test_a_client_leaving_mid_body_is_handled_as_by_the_application(
    access: Access,
) -> None:
    async with hub_pair() as pair:
        for hub in pair.hubs:
            await leave_mid_body(hub, access)
        assert access.lines[0] == access.lines[1]
        assert await metric_lines(pair.fast) == await metric_lines(pair.plain)


async def test_an_idempotent_retry_gets_the_first_id() -> None:
    async with hub_pair() as pair:
        key = {"Idempotency-Key": "once"}
        first, again, other = await exchange(
            pair.fast, request(headers=key), request(headers=key), request(), raw=True
        )
    ids = [re.search(rb'"id":"([^"]+)"', a).group(1) for a in (first, again, other)]  # type: ignore[union-attr]
    assert ids[0] == ids[1] != ids[2]
    assert not pair.seen


def reading_a_request(server: Any) -> bool:
    """Whether the server has begun a request (by the wire publish or by uvicorn): only then
    does the graceful shutdown wait for it, where it closes an idle connection at once."""
    return any(
        getattr(conn, "wire", None) is not None or conn.cycle is not None
        for conn in server.server_state.connections
    )


async def end_body_after_shutdown(hub: RunningHub, payload: bytes) -> Conn:
    """A connection that sent ``payload`` but its last bytes only once the server began its
    graceful shutdown."""
    server = hub.server
    conn = await Conn.open(hub)
    await conn.send(payload[:-5])
    await wait_until(lambda: reading_a_request(server))
    server.should_exit = True
    await wait_until(lambda: not server.servers[0].is_serving())  # connections told to close
    await conn.send(payload[-5:])
    return conn


async def publish_across_shutdown(hub: RunningHub) -> bytes:
    """The answer to a publish whose body ends after the server began its graceful shutdown."""
    conn = await end_body_after_shutdown(hub, request(headers=RID))
    answer = shape(await conn.response())
    assert await conn.at_eof()
    conn.close()
    return answer


async def test_a_graceful_shutdown_finishes_the_publish_being_read() -> None:
    async with hub_pair() as pair:
        answers = [await publish_across_shutdown(hub) for hub in pair.hubs]
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 200 ")
    assert b"\r\nconnection: close\r\n" in answers[0]


async def test_on_redis_the_publish_is_taken_and_answers_alike(redis_keys: RedisKeys) -> None:
    key = {"Idempotency-Key": "r1"}
    payloads = [request(headers=key), request(headers=key), request("sports"), request()]
    async with hub_pair(broker_url=redis_keys.url, redis_prefix=redis_keys.prefix) as pair:
        assert not publisher_of(pair.fast.server.config).eager  # type: ignore[union-attr]
        answers = [await exchange(hub, *payloads, raw=True) for hub in pair.hubs]
    for answer in answers:
        first, again = (re.search(rb'"id":"([^"]+)"', a).group(1) for a in answer[:2])  # type: ignore[union-attr]
        assert first == again
    assert [shape(a) for a in answers[0]] == [shape(a) for a in answers[1]]
    assert not pair.seen


async def trickle_body(hub: RunningHub) -> bytes:
    """A publish whose body comes a byte at a time, more slowly than the body timeout allows."""
    conn = await Conn.open(hub)
    payload = request(headers=RID, body=b'{"data":"' + b"x" * 60 + b'"}')
    cut = payload.index(b"\r\n\r\n") + 4
    await conn.send(payload[:cut])
    reading = asyncio.ensure_future(conn.response())
    for byte in payload[cut:]:
        if reading.done():
            break
        await conn.send(bytes([byte]))
        await asyncio.sleep(0.05)  # 3 s for the body; the timeout is 0.4 s from its start
    answer = await reading
    conn.close()
    return answer


async def test_a_trickled_body_is_timed_from_its_start() -> None:
    async with hub_pair(body_timeout_seconds=0.4) as pair:
        answers = [await trickle_body(hub) for hub in pair.hubs]
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 408 ")


async def test_an_application_error_is_answered_as_by_the_application(
    access: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("the broker fell over")

    monkeypatch.setattr(publish_shortcut, "accept_publish", broken)
    async with hub_pair() as pair:
        answers = []
        for hub in pair.hubs:
            conn = await Conn.open(hub)
            await conn.send(request(headers=RID))
            answers.append(shape(await conn.response()))
            assert await conn.at_eof()
            conn.close()
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 500 ")
    assert access.lines == [("POST", "/api/v1/publish/news", 0, "req-1")] * 2
    assert not pair.seen


# The head's credentials as each built-in authenticator reads them, whoever built it.
ODD_CREDENTIALS = [
    request(headers={"Authorization": "Basic eA=="}),
    request(headers={"Authorization": "Bearer"}),
    request(headers={"Authorization": "", "Cookie": "mine=" + ALICE[7:]}),
    request(headers={"Authorization": "", "Cookie": "ssehub_token=" + ALICE[7:]}),
]


async def answers_alike(pair: Pair, payloads: list[bytes]) -> list[bytes]:
    answers = [await exchange(hub, *payloads) for hub in pair.hubs]
    assert answers[0] == answers[1]
    assert not pair.seen
    return answers[0]


async def test_open_access_ignores_the_authorization_header() -> None:
    """OpenAccess names no caller from a token: an odd Authorization header is no 401."""
    async with hub_pair(authenticator=OpenAccess()) as pair:
        answers = await answers_alike(pair, ODD_CREDENTIALS)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200"] * 4


async def test_an_application_s_jwt_authenticator_reads_its_own_cookie() -> None:
    """A JWTAuthenticator given to create_app reads the cookie its own settings name."""
    mine = JWTAuthenticator(hub_settings(False, token_cookie="mine"))
    async with hub_pair(authenticator=mine) as pair:
        answers = await answers_alike(pair, ODD_CREDENTIALS)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"401", b"401", b"200", b"401"]


class TenantAuthenticator(JWTAuthenticator):
    """An application's JWT authenticator that also wants an ``X-Tenant`` header."""

    async def authenticate(self, request: HTTPConnection) -> Principal:
        if request.headers.get("x-tenant") != "acme":
            raise Unauthorized("send X-Tenant")
        return await super().authenticate(request)


async def test_a_subclass_of_a_built_in_authenticator_reads_the_request() -> None:
    """A subclass may read more of the request than the token: it gets the request."""
    payloads = [request(), request(headers={"X-Tenant": "acme"})]
    async with hub_pair(authenticator=TenantAuthenticator(hub_settings(False))) as pair:
        answers = await answers_alike(pair, payloads)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"401", b"200"]


class TenantWrapper:
    """An application's wrapper of the hub's authenticator (an ``inner`` too, like the tickets'
    wrapper) that also wants an ``X-Tenant`` header."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def authenticate(self, request: HTTPConnection) -> Principal:
        if request.headers.get("x-tenant") != "acme":
            raise Unauthorized("send X-Tenant")
        return await self.inner.authenticate(request)  # type: ignore[no-any-return]


async def test_a_wrapper_of_the_authenticator_set_on_the_app_reads_the_request() -> None:
    payloads = [request(), request(headers={"X-Tenant": "acme"})]
    seen: list[str] = []
    apps = [create_app(hub_settings(fast)) for fast in (True, False)]
    for app in apps:
        app.state.authenticator = TenantWrapper(app.state.authenticator.inner)
    apps[0].add_middleware(Seen, paths=seen)
    async with serve_app(apps[0]) as fast, serve_app(apps[1]) as plain:
        answers = await answers_alike(Pair(fast, plain, seen), payloads)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"401", b"200"]


async def test_the_settings_cookie_and_anonymous_rights_answer_alike() -> None:
    """``token_cookie`` names the cookie read; ``anonymous_publish`` lets a caller without a
    token publish (counted by address), not one with a bad token."""
    payloads = [
        *ODD_CREDENTIALS,
        request("open:1", headers={"Authorization": ""}),
        request("open:1", headers={"Authorization": "", "Cookie": "mine=nope"}),
        request("open:1", headers={"Authorization": "", "Cookie": "ssehub_token=nope"}),
        request("open:1", headers={"Authorization": "", "Cookie": "mine="}),
    ]
    settings = {"token_cookie": "mine", "anonymous_publish": ["open:*"]}
    async with hub_pair(**settings) as pair:
        answers = await answers_alike(pair, payloads)
    statuses = [a.split(b" ", 2)[1] for a in answers]
    assert statuses == [b"401", b"401", b"200", b"401", b"200", b"401", b"200", b"200"]


async def test_a_cached_token_that_expires_is_refused_alike() -> None:
    """A token verified (and kept) while valid is refused once past its ``exp`` and leeway."""
    exp = int(time.time()) + 2
    token = hs256("alice", publish=["news"], exp=exp)
    payload = request(headers={"Authorization": f"Bearer {token}"})
    async with hub_pair(jwt_leeway_seconds=0) as pair:
        first = await answers_alike(pair, [payload])
        await wait_until(lambda: time.time() >= exp, timeout=5)
        later = await answers_alike(pair, [payload])
    assert first[0].startswith(b"HTTP/1.1 200 ")
    assert later[0].startswith(b"HTTP/1.1 401 ") and b"expired" in later[0]

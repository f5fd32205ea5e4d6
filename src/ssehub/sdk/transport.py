"""How SDK publishers reach a hub: straight to the broker in-process, or over HTTP.

Both raise :class:`~ssehub.runs.RunClosed` when the hub refuses a message because its run
already ended (done, error, cancelled): that 409 is the cancellation back-channel to workers.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
import orjson

from ..errors import HubError
from ..event import make_event
from ..runs import RunClosed

if TYPE_CHECKING:
    from ..hub import Hub

# Connection-level failures worth a retry under the same Idempotency-Key (a bad URL is not).
ASYNC_FAULTS = (aiohttp.ClientError, asyncio.TimeoutError)


class PublishFailed(HubError):
    """The hub answered a publish with an error other than 409."""


class Answered(Protocol):
    """What the retry logic reads of an HTTP answer (httpx's or aiohttp's response)."""

    @property
    def headers(self) -> Mapping[str, str]: ...


def retry_delay(attempt: int, response: Answered | None, backoff: float = 0.1) -> float:
    """Seconds before retry ``attempt``: the hub's ``Retry-After`` (at most 5 s), else doubling."""
    after = response.headers.get("retry-after") if response is not None else None
    if after and after.replace(".", "", 1).isdigit():
        return min(float(after), 5.0)
    return float(min(backoff * 2**attempt, 5.0))


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY``, ``ALL_PROXY``, minus
    ``NO_PROXY``), looked up once per client as httpx does, not per request."""
    parts = urlsplit(url)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def encode(body: Any) -> bytes:
    """A publish body as compact UTF-8 JSON, encoded once, exactly as httpx's ``json=`` sent it:
    NaN and infinities are refused (ValueError) rather than sent as JSON no parser takes."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class Transport(Protocol):
    """Delivers one event; sync from worker threads, async in an event loop."""

    def send(self, channel: str, event: str, data: Any) -> None:
        """Publish and wait for the hub's answer."""

    async def asend(self, channel: str, event: str, data: Any) -> None:
        """Publish from a coroutine."""

    def close(self) -> None:
        """Release connections (sync)."""

    async def aclose(self) -> None:
        """Release connections (async)."""


class BrokerTransport:
    """In-process: through the hub's publish door (run lifecycle, broker, metrics)."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.hub = hub
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the hub runs in (known once it started)."""
        return self._loop or self.hub.loop

    async def asend(self, channel: str, event: str, data: Any) -> None:
        await self.hub.publish(make_event(channel, event, data))

    def send(self, channel: str, event: str, data: Any) -> None:
        loop = self.loop
        if loop is None:
            raise RuntimeError("BrokerTransport.send needs the hub's event loop")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("use `async with Publisher(...)` inside the hub's event loop")
        asyncio.run_coroutine_threadsafe(self.asend(channel, event, data), loop).result(30)

    def close(self) -> None:
        """Nothing to release."""

    async def aclose(self) -> None:
        """Nothing to release."""


class HttpTransport:
    """Remote: ``POST /api/v1/publish/{channel}`` on pooled connections, 503s retried.

    Sync calls go through httpx; coroutines through aiohttp, whose client costs a fraction of
    httpx's async client per request (its anyio layer), which matters at a message per token
    batch."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        retries: int = 5,
        backoff: float = 0.1,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._session: aiohttp.ClientSession | None = None

    def _url(self, channel: str) -> str:
        return f"{self.base_url}/api/v1/publish/{quote(channel, safe=':@=')}"

    def _delay(self, attempt: int, response: Answered | None) -> float:
        return retry_delay(attempt, response, self.backoff)

    def _outcome(
        self, status: int | None, body: bytes, error: Exception | None, attempt: int
    ) -> bool:
        """True when the attempt succeeded; False to retry it; else the failure is raised;
        ``status`` is None when the attempt failed with ``error`` before an answer."""
        if status is not None and status < 300:
            return True
        retryable = error is not None or status == 503
        if retryable and attempt < self.retries:
            return False
        if error is not None or status is None:
            unreachable = PublishFailed(f"hub unreachable: {error}", code="unavailable")
            unreachable.status = 503
            raise unreachable from error
        try:
            problem = orjson.loads(body)["error"]
            code, message = str(problem["code"]), str(problem["message"])
        except Exception:
            code, message = "error", body.decode(errors="replace")[:200]
        if status == 409:
            # Never a retry of an attempt that landed: the hub answers that one as it did
            # first. So the message was not stored, and its run has ended.
            raise RunClosed(message)
        failure = PublishFailed(message, code=code)
        failure.status = status
        raise failure

    def send(self, channel: str, event: str, data: Any) -> None:
        self.post(channel, {"event": event, "data": data})

    def post(
        self, channel: str, body: dict[str, Any], *, idempotency_key: str | None = None
    ) -> httpx.Response | None:
        """Publish ``body``; 503s and lost connections are retried under one Idempotency-Key
        (a 503 means "outcome unknown": the first attempt may still land, and a retry then
        gets its answer). The final answer (None: only for a failure already raised)."""
        if self._client is None:
            self._client = httpx.Client(headers=self.headers, timeout=self.timeout)
        headers = self._request_headers(idempotency_key)
        content = encode(body)
        for attempt in range(self.retries + 1):
            response, error = None, None
            try:
                response = self._client.post(self._url(channel), content=content, headers=headers)
            except httpx.TransportError as exc:
                error = exc
            status = response.status_code if response is not None else None
            answer = response.content if response is not None else b""
            if self._outcome(status, answer, error, attempt):
                return response  # a success: every failure was raised
            time.sleep(self._delay(attempt, response))
        return None  # unreachable: the last attempt is final

    @staticmethod
    def _request_headers(idempotency_key: str | None) -> dict[str, str]:
        return {
            "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
            "Content-Type": "application/json",
        }

    async def asend(self, channel: str, event: str, data: Any) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
                proxy=env_proxy(self.base_url),
            )
        url = self._url(channel)
        content = encode({"event": event, "data": data})
        headers = self._request_headers(None)
        for attempt in range(self.retries + 1):
            status, answer, error = None, b"", None
            response: aiohttp.ClientResponse | None = None
            try:
                async with self._session.post(url, data=content, headers=headers) as response:
                    status, answer = response.status, await response.read()
            except aiohttp.InvalidURL:
                raise
            except ASYNC_FAULTS as exc:
                status, error = None, exc
            if self._outcome(status, answer, error, attempt):
                return
            await asyncio.sleep(self._delay(attempt, response if status is not None else None))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        self.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

"""Python SSE client on httpx: iterate events, reconnect with Last-Event-ID and backoff."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType

import httpx

from .parser import ServerSentEvent, SSEDecoder


class StreamClosed(Exception):
    """The server refused the stream for good (a 4xx other than 429, or 204)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"stream refused with HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body

    @property
    def message(self) -> str:
        """The status and the hub's JSON error message (or the start of the body)."""
        try:
            text = str(json.loads(self.body)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            text = self.body[:200].strip()
        return f"HTTP {self.status}" + (f": {text}" if text else "")


class Backoff:
    """Exponential backoff with full jitter, starting from the server's ``retry:``."""

    def __init__(self, *, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.failures = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt."""
        if retry_after is not None:
            return min(self.maximum, retry_after)
        ceiling = min(self.maximum, self.initial * self.factor**self.failures)
        self.failures += 1
        return ceiling * (0.5 + random.random() / 2)

    def reset(self) -> None:
        """A connection succeeded: start over from the initial delay."""
        self.failures = 0


class SSEClient:
    """Reads an SSE URL as an async iterator of events, resuming across drops.

    ``async for event in SSEClient(url): ...`` reconnects after every drop (honouring ``retry:``
    and ``Retry-After``), sends the last id seen as ``Last-Event-ID``, and ends only on
    :meth:`aclose`, after ``max_attempts`` failed attempts in a row, or when the server refuses
    the stream for good (:class:`StreamClosed`).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        reconnect: bool = True,
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        client: httpx.AsyncClient | None = None,
        on_retry: Callable[[BaseException | None, float], None] | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        self.last_event_id = last_event_id or ""
        self.reconnect = reconnect
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self.connections = 0
        self._timeout = (
            httpx.Timeout(timeout, connect=10.0) if timeout else httpx.Timeout(None, connect=10.0)
        )
        self._client = client
        self._owns_client = client is None
        self._closed = False
        self._response: httpx.Response | None = None
        self.on_retry = on_retry

    async def __aenter__(self) -> SSEClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        return self.events()

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        """Yield events until closed, reconnecting as needed."""
        client = self._client or httpx.AsyncClient(timeout=self._timeout)
        self._client = client
        failures = 0
        try:
            while not self._closed:
                retry_after: float | None = None
                reason: BaseException | None = None
                try:
                    async for event in self._one_connection(client):
                        failures = 0
                        yield event
                except StreamClosed:
                    raise
                except _RetryLater as exc:
                    retry_after, reason = exc.seconds, exc
                    failures += 1
                except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                    reason = exc
                    failures += 1
                if self._closed or not self.reconnect:
                    return
                if self.max_attempts is not None and failures >= self.max_attempts:
                    return
                delay = self.backoff.next_delay(retry_after)
                if self.on_retry is not None:
                    self.on_retry(reason, delay)
                await asyncio.sleep(delay)
        finally:
            if self._owns_client:
                await client.aclose()

    async def _one_connection(self, client: httpx.AsyncClient) -> AsyncIterator[ServerSentEvent]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self.headers}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        decoder = SSEDecoder(self.last_event_id)
        async with client.stream("GET", self.url, headers=headers) as response:
            self._response = response
            if response.status_code in (429, 502, 503, 504) or response.status_code >= 500:
                raise _RetryLater(_retry_after(response), response.status_code)
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                raise StreamClosed(response.status_code, body)
            self.connections += 1
            self.backoff.reset()
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    self.last_event_id = event.id
                    yield event
                if decoder.reconnection_time is not None:
                    self.backoff.initial = decoder.reconnection_time / 1000
        self._response = None

    async def aclose(self) -> None:
        """Stop reading and close the connection."""
        self._closed = True
        if self._response is not None:
            await self._response.aclose()


class _RetryLater(Exception):
    def __init__(self, seconds: float | None, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.seconds = seconds
        self.status = status


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.replace(".", "", 1).isdigit() else None

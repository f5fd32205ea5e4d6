"""Publisher SDK: ``publish_token/stage_update/progress/done/error``, sync and async.

``with Publisher(project_id, stage) as pub:`` publishes synchronously; ``async with`` yields an
:class:`AsyncPublisher` with the same methods as coroutines. Consecutive tokens are coalesced
into one message (window ``coalesce_seconds`` or ``coalesce_tokens``), flushed before any other
message, on exit, and by a timer when no other token comes within the window (sync and async).
Leaving the block on an exception publishes ``error``. Each publisher is one run of its stage:
every message carries its ``run_id`` (a new one per publisher unless given), so the same code
works on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from .. import messages
from ..runs import RunClosed, new_run_id
from ..settings import Settings
from .transport import BrokerTransport, HttpTransport, Transport

if TYPE_CHECKING:
    from ..hub import Hub

_default: dict[str, Any] = {}


def configure(*, hub: Hub | None = None, url: str | None = None, token: str | None = None) -> None:
    """Set where ``Publisher(...)`` without ``hub``/``url`` publishes (this process's default)."""
    _default.clear()
    _default.update(hub=hub, url=url, token=token)


def make_transport(
    hub: Hub | None = None, url: str | None = None, token: str | None = None
) -> Transport:
    """In-process when ``hub`` is given, else HTTP to ``url`` (default: settings' ``hub_url``)."""
    hub = hub if hub is not None else _default.get("hub")
    if hub is not None:
        return BrokerTransport(hub)
    if url is None and _default.get("url"):
        url, token = _default["url"], token or _default.get("token")
    if url is None:
        settings = Settings()
        url, token = settings.hub_url, token or settings.publisher_token
    return HttpTransport(url, token)


class _Stage:
    """State shared by both faces: channel, coalescing buffer, assembled text."""

    def __init__(
        self,
        project_id: str | int,
        stage_name: str,
        *,
        hub: Hub | None = None,
        url: str | None = None,
        token: str | None = None,
        transport: Transport | None = None,
        prefix: str = messages.DEFAULT_PREFIX,
        coalesce_seconds: float = 0.05,
        coalesce_tokens: int = 16,
        token_full_text: bool = False,
        retry_count: int = 0,
        run_id: str | None = None,
    ) -> None:
        self.project_id = str(project_id)
        self.run_id = run_id or new_run_id()
        self.stage = stage_name
        self.channel = messages.stage_channel(self.project_id, stage_name, prefix)
        self._owns_transport = transport is None
        self.transport = transport or make_transport(hub, url, token)
        self.coalesce_seconds = coalesce_seconds
        self.coalesce_tokens = max(1, coalesce_tokens)
        self.token_full_text = token_full_text
        self.retry_count = retry_count
        self.finished = False
        self.messages_sent = 0
        self.tokens_sent = 0
        self.bytes_sent = 0
        self._parts: list[str] = []
        self._buffer: list[str] = []
        self._buffer_full_text: str | None = None
        self._first_at = 0.0

    @property
    def text(self) -> str:
        """Every token content published (or buffered) so far, joined."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def _add(self, content: str, full_text: str | None) -> bool:
        """Buffer a token; True when the batch should go out now."""
        now = time.monotonic()
        if not self._buffer:
            self._first_at = now
        self._buffer.append(content)
        self._parts.append(content)
        if full_text is not None:
            self._buffer_full_text = full_text
        return (
            len(self._buffer) >= self.coalesce_tokens
            or now - self._first_at >= self.coalesce_seconds
        )

    def _take(self) -> dict[str, Any] | None:
        """The coalesced token message of the buffer (and empty it)."""
        if not self._buffer:
            return None
        full_text = self._buffer_full_text
        if full_text is None and self.token_full_text:
            full_text = self.text
        msg = messages.token(self.stage, self.project_id, "".join(self._buffer), full_text)
        msg["token_count"] = len(self._buffer)  # the real tokens this message coalesces
        self.tokens_sent += len(self._buffer)
        self._buffer.clear()
        self._buffer_full_text = None
        return self._stamped(msg)

    def _stamped(self, msg: dict[str, Any]) -> dict[str, Any]:
        msg["run_id"] = self.run_id
        return msg

    def _count(self, msg: dict[str, Any]) -> None:
        self.messages_sent += 1
        self.bytes_sent += len(orjson.dumps(msg))

    def _stage_update(self, status: str, progress: float | int, message: str) -> dict[str, Any]:
        msg = messages.stage_update(self.stage, self.project_id, status, progress, message)
        return self._stamped(msg)

    def _progress(self, current: int, total: int, item_name: str | None) -> dict[str, Any]:
        return self._stamped(
            messages.progress(self.stage, self.project_id, current, total, item_name)
        )

    def _done(self, full_text: str | None, metadata: dict[str, Any] | None) -> dict[str, Any]:
        text = self.text if full_text is None else full_text
        return self._stamped(messages.done(self.stage, self.project_id, text, metadata))

    def _error(self, error: str, retry_count: int | None) -> dict[str, Any]:
        count = self.retry_count if retry_count is None else retry_count
        return self._stamped(messages.error(self.stage, self.project_id, error, count))


def describe(exc: BaseException) -> str:
    """The ``error`` text of an exception."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Publisher(_Stage):
    """Publishes one stage's messages; ``with`` for sync code, ``async with`` for coroutines."""

    def __init__(self, project_id: str | int, stage_name: str, **kw: Any) -> None:
        super().__init__(project_id, stage_name, **kw)
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._failure: Exception | None = None

    def _send(self, msg: dict[str, Any]) -> None:
        self.transport.send(self.channel, msg["type"], msg)
        self._count(msg)

    def _raise_background_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def flush(self) -> None:
        """Send buffered tokens now."""
        self._raise_background_failure()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            msg = self._take()
            if msg is not None:
                self._send(msg)

    def _flush_later(self) -> None:
        """The quiet-window flush on the timer thread; its failure (a 409 after a cancel) is
        raised by the publisher's next call."""
        with self._lock:
            self._timer = None
            try:
                msg = self._take()
                if msg is not None:
                    self._send(msg)
            except Exception as exc:
                self._failure = exc

    def publish_token(self, content: str, full_text: str | None = None) -> None:
        """A piece of streamed text (coalesced; a quiet window flushes it by itself)."""
        self._raise_background_failure()
        with self._lock:
            if self._add(content, full_text):
                self.flush()
            elif self._timer is None:
                self._timer = threading.Timer(self.coalesce_seconds, self._flush_later)
                self._timer.daemon = True
                self._timer.start()

    def publish_stage_update(
        self, status: str, progress: float | int = 0, message: str = ""
    ) -> None:
        """The stage's status and overall progress (0-100)."""
        self.flush()
        self._send(self._stage_update(status, progress, message))

    def publish_progress(self, current: int, total: int, item_name: str | None = None) -> None:
        """Item ``current`` of ``total`` is done."""
        self.flush()
        self._send(self._progress(current, total, item_name))

    def publish_done(
        self, full_text: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        """End the run; ``full_text`` defaults to the tokens published."""
        self.flush()
        self._send(self._done(full_text, metadata))
        self.finished = True

    def publish_error(self, error: str, retry_count: int | None = None) -> None:
        """End the run with an error."""
        self.flush()
        self._send(self._error(error, retry_count))
        self.finished = True

    def stream_openai(self, response: Iterable[Any], metadata: dict[str, Any] | None = None) -> str:
        """Publish an OpenAI-compatible streaming response as tokens, then ``done``."""
        meta = dict(metadata or {})
        for chunk in response:
            content = openai_delta(chunk, meta)
            if content:
                self.publish_token(content)
        self.publish_done(metadata=meta)
        return self.text

    def close(self) -> None:
        """Flush and release the transport if this publisher created it."""
        try:
            self.flush()
        finally:
            if self._owns_transport:
                self.transport.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is not None and not self.finished and not isinstance(exc, RunClosed):
                with contextlib.suppress(RunClosed):
                    self.publish_error(describe(exc))
        finally:
            with contextlib.suppress(RunClosed):
                self.close()

    async def __aenter__(self) -> AsyncPublisher:
        self._async = AsyncPublisher(self)
        return self._async

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._async.__aexit__(kind, exc, tb)


class AsyncPublisher:
    """The coroutine face of a :class:`Publisher` (what ``async with`` yields)."""

    def __init__(self, state: _Stage) -> None:
        self.state = state
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._failure: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)

    async def _send(self, msg: dict[str, Any] | None) -> None:
        if msg is not None:
            await self.state.transport.asend(self.state.channel, msg["type"], msg)
            self.state._count(msg)

    async def flush(self) -> None:
        """Send buffered tokens now."""
        self._raise_background_failure()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            await self._send(self.state._take())

    def _later(self) -> None:
        self._timer = None
        self._flusher = asyncio.ensure_future(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        """The quiet-window flush: its failure (a 409 ``RunClosed`` after a cancel) is raised
        by the publisher's next call, so the stage stops instead of streaming on unheard."""
        try:
            await self.flush()
        except Exception as exc:
            self._failure = exc

    def _raise_background_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def publish_token(self, content: str, full_text: str | None = None) -> None:
        """A piece of streamed text (coalesced; a quiet window flushes it by itself)."""
        self._raise_background_failure()
        if self.state._add(content, full_text):
            await self.flush()
        elif self._timer is None:
            delay = self.state.coalesce_seconds
            self._timer = asyncio.get_running_loop().call_later(delay, self._later)

    async def _final(self, msg: dict[str, Any]) -> None:
        await self.flush()
        async with self._lock:
            await self._send(msg)

    async def publish_stage_update(
        self, status: str, progress: float | int = 0, message: str = ""
    ) -> None:
        """The stage's status and overall progress (0-100)."""
        await self._final(self.state._stage_update(status, progress, message))

    async def publish_progress(
        self, current: int, total: int, item_name: str | None = None
    ) -> None:
        """Item ``current`` of ``total`` is done."""
        await self._final(self.state._progress(current, total, item_name))

    async def publish_done(
        self, full_text: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        """End the run; ``full_text`` defaults to the tokens published."""
        await self.flush()
        await self._final(self.state._done(full_text, metadata))
        self.state.finished = True

    async def publish_error(self, error: str, retry_count: int | None = None) -> None:
        """End the run with an error."""
        await self._final(self.state._error(error, retry_count))
        self.state.finished = True

    async def stream_openai(
        self, response: AsyncIterable[Any] | Iterable[Any], metadata: dict[str, Any] | None = None
    ) -> str:
        """Publish an OpenAI-compatible streaming response (sync or async) as tokens + ``done``."""
        meta = dict(metadata or {})
        if isinstance(response, AsyncIterable):
            async for chunk in response:
                content = openai_delta(chunk, meta)
                if content:
                    await self.publish_token(content)
        else:
            for chunk in response:
                content = openai_delta(chunk, meta)
                if content:
                    await self.publish_token(content)
        await self.publish_done(metadata=meta)
        return str(self.state.text)

    async def aclose(self) -> None:
        """Flush and release the transport if the publisher created it."""
        try:
            await self.flush()
        finally:
            if self.state._owns_transport:
                await self.state.transport.aclose()

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is not None and not self.state.finished and not isinstance(exc, RunClosed):
                with contextlib.suppress(RunClosed):
                    what = "cancelled" if isinstance(exc, asyncio.CancelledError) else describe(exc)
                    await self.publish_error(what)
        finally:
            with contextlib.suppress(RunClosed):
                await self.aclose()


def openai_delta(chunk: Any, meta: dict[str, Any]) -> str:
    """The text of one streamed chat-completion chunk (object or dict); notes model/usage."""
    get = chunk.get if isinstance(chunk, dict) else lambda k, d=None: getattr(chunk, k, d)
    if get("model"):
        meta.setdefault("model", get("model"))
    usage = get("usage")
    if usage:
        meta["usage"] = usage if isinstance(usage, dict) else usage.model_dump()
    choices = get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    cget = choice.get if isinstance(choice, dict) else lambda k, d=None: getattr(choice, k, d)
    if cget("finish_reason"):
        meta["finish_reason"] = cget("finish_reason")
    delta = cget("delta")
    if delta is None:
        return ""
    content = delta.get("content") if isinstance(delta, dict) else getattr(delta, "content", None)
    return content or ""

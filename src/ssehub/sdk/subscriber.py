"""Subscriber SDK: ``subscribe/listen/get_message/unsubscribe``, sync and async.

Messages are the JSON objects publishers sent (``message["type"]`` is the event name), read
in-process from the hub (a registered stream, with replay and snapshots like any client) or
over SSE from a remote hub, resuming with Last-Event-ID after a drop.
``with Subscriber(...)`` gives the blocking API (on a private event loop thread, or on the
hub's loop in-process); ``async with`` yields an :class:`AsyncSubscriber`.

A stage subscription follows the current or next run: a run that had already ended when the
subscriber joined (its ``snapshot`` says so) is history and is skipped, its replayed ``done`` or
``error`` included, unless ``previous_runs=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import orjson

from .. import messages
from ..channels import Selector
from ..settings import Settings
from .client import SSEClient
from .parser import ServerSentEvent, SSEDecoder

if TYPE_CHECKING:
    from ..hub import Hub

T = TypeVar("T")
QUEUE_SIZE = 10_000
SKIPPED = frozenset({"connected"})
MAX_KNOWN_RUNS = 1000


class RunFilter:
    """Tells the events of runs that ended before a client joined from the ones it follows."""

    def __init__(self) -> None:
        self.seen: dict[str, None] = {}  # run ids this client received live events of
        self.history: dict[str, str] = {}  # ended earlier run id → its last event id

    @staticmethod
    def _remember(store: dict[str, Any], key: str, value: Any) -> None:
        store[key] = value
        while len(store) > MAX_KNOWN_RUNS:
            del store[next(iter(store))]

    def is_history(self, msg: dict[str, Any], event_id: str) -> bool:
        """True for a finished run's snapshot and the events of that run (seen from now on)."""
        rid = msg.get("run_id")
        if not isinstance(rid, str) or not rid:
            return event_id != "" and event_id in self.history.values()
        ended = msg.get("type") == "snapshot" and msg.get("status") not in (None, "running")
        if ended and rid not in self.seen:
            self._remember(self.history, rid, str(msg.get("last_event_id") or ""))
        if rid in self.history:
            return True
        if msg.get("type") != "snapshot":
            self._remember(self.seen, rid, None)
        return False


def to_message(event: ServerSentEvent) -> dict[str, Any]:
    """The JSON object of an event (non-objects wrapped), with ``type`` and ``id`` filled in."""
    try:
        data: Any = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        data = event.data
    msg = data if isinstance(data, dict) else {"data": data}
    msg.setdefault("type", event.event)
    return msg


class AsyncSubscriber:
    """Reads one stage (or every stage) of a project inside an event loop."""

    def __init__(
        self,
        project_id: str | int,
        stage_name: str | None = None,
        *,
        hub: Hub | None = None,
        url: str | None = None,
        token: str | None = None,
        prefix: str = messages.DEFAULT_PREFIX,
        last_event_id: str | None = None,
        previous_runs: bool = False,
    ) -> None:
        self.project_id = str(project_id)
        self.previous_runs = previous_runs
        self.runs = RunFilter()
        self.stage = stage_name
        self.hub = hub
        self.url = (url or Settings().hub_url).rstrip("/") if hub is None else None
        self.token = token
        self.channel = (
            messages.stage_channel(self.project_id, stage_name, prefix)
            if stage_name
            else messages.project_pattern(self.project_id, prefix)
        )
        self.last_event_id = last_event_id or ""
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._pump: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()
        self._ready = asyncio.Event()

    def _stream_url(self) -> str:
        base = f"{self.url}/api/v1/sse/projects/{quote(self.project_id, safe='')}/"
        if self.stage:
            base += f"stages/{quote(self.stage, safe='')}/"
        return base + ("stream/" if self.token else "")

    async def subscribe(self, timeout: float = 10.0) -> None:
        """Start receiving; returns once the stream is open (idempotent)."""
        if self._pump is None:
            self._ended.clear()
            reader = self._read_hub(self.hub) if self.hub is not None else self._read_remote()
            self._pump = asyncio.create_task(reader, name=f"subscriber-{self.channel}")
        if not self._ready.is_set():
            ready = asyncio.ensure_future(self._ready.wait())
            await asyncio.wait({ready, self._pump}, timeout=timeout, return_when="FIRST_COMPLETED")
            ready.cancel()
            if self._pump.done() and not self._ready.is_set():
                pump, self._pump = self._pump, None
                pump.result()  # raises why the stream could not open
                raise ConnectionError(f"the stream of {self.channel} ended before it opened")

    async def _put(self, event: ServerSentEvent) -> None:
        if event.id:
            self.last_event_id = event.id
        if event.event == "connected":
            self._ready.set()
        if event.event in SKIPPED:
            return
        msg = to_message(event)
        if self.runs.is_history(msg, event.id) and not self.previous_runs:
            return
        await self._queue.put(msg)

    async def _read_hub(self, hub: Hub) -> None:
        from ..connection import Connection  # the hub's side: loaded only in-process

        try:
            while not hub.closing:
                conn = Connection(
                    client_id=f"sdk-{uuid.uuid4()}",
                    selector=Selector.of([self.channel]),
                    max_buffer=QUEUE_SIZE,
                )
                await hub.open(conn, self.last_event_id or None)
                decoder = SSEDecoder(self.last_event_id)
                try:
                    while (chunk := await conn.next_chunk()) is not None:
                        for event in decoder.feed(chunk):
                            await self._put(event)
                finally:
                    await hub.detach(conn)
        finally:
            self._ended.set()

    async def _read_remote(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        client = SSEClient(
            self._stream_url(), headers=headers, last_event_id=self.last_event_id or None
        )
        try:
            async for event in client:
                await self._put(event)
        finally:
            await client.aclose()
            self._ended.set()

    def get_message(self) -> dict[str, Any] | None:
        """The next received message, or None when none is waiting (never blocks)."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def next_message(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait up to ``timeout`` seconds for the next message (None on timeout)."""
        await self.subscribe()
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def ends_listen(self, msg: dict[str, Any]) -> bool:
        """The stage's ``done`` or ``error`` of the run followed (not an earlier run's)."""
        return (
            bool(self.stage)
            and msg.get("type") in messages.TERMINAL_TYPES
            and msg.get("run_id") not in self.runs.history
        )

    async def listen(self, timeout: float = 300) -> AsyncIterator[dict[str, Any]]:
        """Messages until ``done`` or ``error`` of the run followed, or ``timeout`` s in all.

        A whole-project subscription ends only on timeout (each stage sends its own ``done``).
        """
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = await self.next_message(left)
            if msg is None:
                return
            yield msg
            if self.ends_listen(msg):
                return

    async def unsubscribe(self) -> None:
        """Stop receiving and release the stream."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None

    async def __aenter__(self) -> AsyncSubscriber:
        await self.subscribe()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.unsubscribe()


class Subscriber:
    """The blocking face: the ``with RedisStreamSubscriber(...)`` usage, unchanged."""

    def __init__(self, project_id: str | int, stage_name: str | None = None, **kw: Any) -> None:
        self._args = (project_id, stage_name)
        self._kw = kw
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inner: AsyncSubscriber | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._loop is None:
            hub: Hub | None = self._kw.get("hub")
            loop = hub.loop if hub is not None else None
            if loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, daemon=True)
                self._thread.start()
            self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _make(self) -> AsyncSubscriber:
        return AsyncSubscriber(*self._args, **self._kw)

    def subscribe(self) -> None:
        """Start receiving."""
        if self._inner is None:
            self._inner = self._run(self._make())
        self._run(self._inner.subscribe())

    def get_message(self) -> dict[str, Any] | None:
        """The next received message, or None (never blocks)."""
        if self._inner is None:
            return None
        inner = self._inner

        async def take() -> dict[str, Any] | None:
            return inner.get_message()

        return self._run(take())

    def listen(self, timeout: float = 300) -> Iterator[dict[str, Any]]:
        """Messages until the stage's ``done``/``error`` or ``timeout`` seconds in all."""
        self.subscribe()
        assert self._inner is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self._run(self._inner.next_message(left))
            if msg is None:
                return
            yield msg
            if self._inner.ends_listen(msg):
                return

    def unsubscribe(self) -> None:
        """Stop receiving and release the stream (and the private loop thread)."""
        if self._inner is not None:
            self._run(self._inner.unsubscribe())
            self._inner = None
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
            self._thread = self._loop = None

    def __enter__(self) -> Subscriber:
        self.subscribe()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unsubscribe()

    async def __aenter__(self) -> AsyncSubscriber:
        self._async = AsyncSubscriber(*self._args, **self._kw)
        await self._async.subscribe()
        return self._async

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._async.unsubscribe()

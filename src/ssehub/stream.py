"""The ASGI response that writes one Connection's frames to the client until it ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .connection import CLIENT_GONE, AwaitingWriter, Connection

ABORT = "ssehub: stream aborted (slow or dead consumer)"
# Scope extension of a server that writes streams itself (fastpath.py): ``{"adopt": callable}``.
EXTENSION = "ssehub.direct"

STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}


class EventStreamResponse(Response):
    """Streams an opened Connection until it closes; ``closer`` unregisters it afterwards."""

    media_type = "text/event-stream"

    def __init__(
        self,
        conn: Connection,
        *,
        closer: Callable[[], Awaitable[None]],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=200)
        self.conn = conn
        self.closer = closer
        self.extra_headers = headers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = self.conn
        headers = {**STREAM_HEADERS, "x-client-id": conn.client_id, **self.extra_headers}
        raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
        direct = scope.get("extensions", {}).get(EXTENSION)
        try:
            # The head passes every middleware (request id, CORS) on both paths.
            await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
            if direct is not None and direct["adopt"](conn, self.closer, metrics):
                return  # the server's protocol writes this stream from now on (fastpath.py)
        except BaseException:
            await self.closer()
            raise
        task = asyncio.current_task()
        assert task is not None
        writer = AwaitingWriter(on_abort=lambda: task.cancel(ABORT))
        conn.attach(writer)
        watcher = asyncio.create_task(_watch_disconnect(receive, conn))
        try:
            while True:
                oldest = conn.oldest_at  # before take_chunk starts the next latency window
                chunk = conn.take_chunk()
                if chunk is None:
                    if conn.closed:
                        break
                    await writer.wait()
                    continue
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                conn.wrote()
                if metrics is not None:
                    metrics.wrote(len(chunk), oldest)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            await self.closer()


async def _watch_disconnect(receive: Receive, conn: Connection) -> None:
    """Close the connection as soon as the client goes away."""
    with contextlib.suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass
    conn.close(CLIENT_GONE)


class AbortedStreamFilter(logging.Filter):
    """Hide uvicorn's traceback for streams the hub aborted on purpose (slow consumers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, asyncio.CancelledError) and exc.args == (ABORT,))

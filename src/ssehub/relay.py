"""A hub stream re-encoded in another SSE protocol (AI SDK UI messages, AG-UI events).

The hub opens the connection as for any stream (limits, resume from history, heartbeats, idle
timeout, shutdown); :class:`RelayResponse` reads its SSE frames, hands each event to a
``translate`` function and writes what it returns. Comments (heartbeats) pass through as they
are; the response ends when ``translate`` says the protocol's stream is over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .connection import CLIENT_GONE, Connection
from .sdk.parser import ServerSentEvent, SSEDecoder
from .stream import STREAM_HEADERS

ENDED = "protocol_stream_ended"


class Translation:
    """What a relay turns each hub event into; ``done`` once the protocol's stream is complete."""

    done = False

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        """The frames for one hub event."""
        raise NotImplementedError

    def closing(self) -> bytes:
        """Frames written after the last event (a protocol's terminator), also on shutdown."""
        return b""


class RelayResponse(Response):
    """Streams an opened Connection through ``translation`` until either ends."""

    def __init__(
        self,
        conn: Connection,
        translation: Translation,
        *,
        closer: Callable[[], Awaitable[None]],
        headers: dict[str, str] | None = None,
        prelude: list[bytes] | None = None,
    ) -> None:
        super().__init__(status_code=200)
        self.conn = conn
        self.translation = translation
        self.closer = closer
        self.extra_headers = headers or {}
        self.prelude = prelude or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn, translation = self.conn, self.translation
        headers = {**STREAM_HEADERS, "x-client-id": conn.client_id, **self.extra_headers}
        watcher = asyncio.create_task(_watch_disconnect(receive, conn))
        decoder = SSEDecoder()
        try:
            raw = [(k.encode(), v.encode()) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": 200, "headers": raw})
            if self.prelude:
                await _write(send, b"".join(self.prelude))
            while not translation.done and (chunk := await conn.next_chunk()) is not None:
                events = decoder.feed(chunk)
                if not events:
                    if chunk.startswith(b":"):
                        await _write(send, chunk)  # a heartbeat keeps proxies from closing us
                    continue
                frames = [frame for event in events for frame in translation.feed(event)]
                if frames:
                    await _write(send, b"".join(frames))
                    conn.wrote()
            if conn.close_reason != CLIENT_GONE:
                await send(
                    {
                        "type": "http.response.body",
                        "body": translation.closing(),
                        "more_body": False,
                    }
                )
        finally:
            watcher.cancel()
            conn.close(ENDED)
            await self.closer()


async def _write(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _watch_disconnect(receive: Receive, conn: Connection) -> None:
    """Close the connection as soon as the client goes away."""
    with contextlib.suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass
    conn.close(CLIENT_GONE)


def fixed_response(frames: list[bytes], headers: dict[str, str]) -> Response:
    """A complete protocol stream known up front (a rejoin after the end)."""
    return Response(b"".join(frames), headers={**STREAM_HEADERS, **headers})

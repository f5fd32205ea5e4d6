"""A bound on request bodies: larger ones get 413 before they are read into memory or parsed.

Routes may have their own, smaller bound (a single publish needs room for one event only).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PayloadTooLarge


class BodyLimitMiddleware:
    """Refuse a declared ``Content-Length`` over the limit at once; cut chunked bodies there.

    ``max_bytes`` bounds every body; ``routes`` maps paths to lower limits of their own (a path
    ending in ``*`` covers every path it prefixes, and the longest matching entry wins).
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, routes: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        routes = routes or {}
        self.exact = {path: min(n, max_bytes) for path, n in routes.items() if path[-1:] != "*"}
        self.prefixes = sorted(
            ((path[:-1], min(n, max_bytes)) for path, n in routes.items() if path[-1:] == "*"),
            key=lambda item: -len(item[0]),
        )

    def limit(self, path: str) -> int:
        """The largest body accepted on ``path``."""
        exact = self.exact.get(path)
        if exact is not None:
            return exact
        for prefix, limit in self.prefixes:
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit(scope["path"])
        chunked = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                if not value.isdigit() or int(value) > max_bytes:
                    await self._refuse(send, max_bytes)
                    return
            elif key == b"transfer-encoding":
                chunked = True
        if not chunked:
            # No body, or one framed by a Content-Length already checked: the HTTP parser
            # delivers no more than that, so streams and such requests pass untouched.
            await self.app(scope, receive, send)
            return
        received = 0
        refused = False

        async def limited() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    # Answer 413 now and make the app see a gone client; its own answer is dropped.
                    refused = True
                    await self._refuse(send, max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, guarded)

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        error = PayloadTooLarge(f"the request body exceeds {max_bytes} bytes")
        body = orjson.dumps(error.to_json())
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

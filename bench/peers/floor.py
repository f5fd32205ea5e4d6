"""The floor: a bare ASGI app answering every request with a fixed JSON body.

Served by the same uvicorn (uvloop, httptools) as every other target, it is what one request
costs before any framework, validation or hub work: the least a publish can cost here.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"id":"0-1","channel":"bench"}'
HEAD = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"30")],
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the body (as any publish must), answer the fixed JSON."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(HEAD)
    await send({"type": "http.response.body", "body": BODY})

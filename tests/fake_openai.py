"""A local OpenAI-compatible chat server for tests: real HTTP and real SSE chunks.

The request's ``model`` picks the behaviour: ``ok`` streams ``ANSWER`` then usage and
``[DONE]``; ``fail-mid`` sends three chunks then an error object; ``slow`` sends a word every
``SLOW_PACE`` seconds for a long time (to cancel); ``steady`` sends ``STEADY_CHUNKS`` words at
``STEADY_PACE`` (to resume mid-answer); ``stall`` sends one chunk and goes silent;
``unauthorized`` answers 401 and ``rate-limited`` 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

ANSWER = ["Hello", ", ", "this ", "is ", "the ", "fake ", "model", "."]
MID_CHUNKS = ["Partial ", "answer ", "before "]
SLOW_PACE = 0.05
STEADY_CHUNKS = 40
STEADY_PACE = 0.02


def steady_words() -> list[str]:
    """The chunks of the ``steady`` model."""
    return [f"w{i} " for i in range(STEADY_CHUNKS)]


@dataclass
class FakeOpenAI:
    """The server's record of what it was asked and how each stream ended."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    disconnects: int = 0
    finished: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    def _note(self) -> None:
        self.changed.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] != "/v1/chat/completions":
            await _json(send, 404, {"error": {"message": "not found"}})
            return
        request = orjson.loads(body)
        self.requests.append(request)
        self._note()
        model = request.get("model")
        if model == "unauthorized":
            await _json(send, 401, {"error": {"message": "Incorrect API key", "type": "auth"}})
            return
        if model == "rate-limited":
            error = {"error": {"message": "Rate limit reached", "type": "requests"}}
            await _json(send, 429, error, {"retry-after": "0"})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        gone = asyncio.Event()

        async def watch() -> None:
            with contextlib.suppress(Exception):
                while (await receive())["type"] != "http.disconnect":
                    pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            async for frame in _frames(model, request, gone):
                if gone.is_set():
                    self.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.finished += 1
        except OSError:
            self.disconnects += 1
        finally:
            watcher.cancel()
            self._note()


async def _json(send: Any, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    raw = orjson.dumps(body)
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *extra],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def _chunk(model: str, content: str | None = None, **extra: Any) -> bytes:
    delta = {"content": content} if content is not None else {}
    payload = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        **extra,
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _frames(model: str, request: dict[str, Any], gone: asyncio.Event) -> AsyncIterator[bytes]:
    if model == "fail-mid":
        for word in MID_CHUNKS:
            yield _chunk(model, word)
        error = {"error": {"message": "model overloaded", "type": "server_error"}}
        yield b"data: " + orjson.dumps(error) + b"\n\n"
        return
    if model == "stall":
        yield _chunk(model, "Thinking ")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), 60)
        return
    if model == "slow":
        words, pace = [f"s{i} " for i in range(2000)], SLOW_PACE
    elif model == "steady":
        words, pace = steady_words(), STEADY_PACE
    else:
        words, pace = ANSWER, 0.0
    yield _chunk(model, None)  # the role-only first chunk real servers send
    for word in words:
        if pace:
            await asyncio.sleep(pace)
        yield _chunk(model, word)
    usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
    if (request.get("stream_options") or {}).get("include_usage"):
        yield b"data: " + orjson.dumps({"id": "x", "choices": [], "usage": usage}) + b"\n\n"
    yield b"data: [DONE]\n\n"


@contextlib.asynccontextmanager
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """Serve a FakeOpenAI on a free loopback port in the running loop."""
    fake = FakeOpenAI()
    config = uvicorn.Config(fake, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, 15)

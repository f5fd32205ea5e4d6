"""The remote publisher's HTTP transport against a real server that answers 503 first."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from harness import serve_app
from ssehub.publisher import Publisher
from ssehub.settings import Settings
from ssehub.transport import HttpTransport, PublishFailed


class Flaky:
    """A publish endpoint that is unavailable for its first ``failures`` requests."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: Request) -> JSONResponse:
        self.seen.append((request.headers.get("idempotency-key", ""), await request.json()))
        if len(self.seen) <= self.failures:
            body = {"error": {"code": "unavailable", "message": "busy"}}
            return JSONResponse(body, self.status, headers={"Retry-After": "0"})
        return JSONResponse({"id": "e-1", "channel": request.path_params["channel"]})

    def app(self) -> Any:
        app = Starlette(routes=[Route("/api/v1/publish/{channel}", self.handle, methods=["POST"])])
        app.state.hub = type("NoHub", (), {"close_all": lambda self: None})()
        app.state.settings = Settings(_env_file=None)  # type: ignore[call-arg]
        return app


async def test_async_publish_retries_503_with_the_same_idempotency_key() -> None:
    flaky = Flaky(failures=2)
    async with (
        serve_app(flaky.app()) as server,
        Publisher("t1", "rewrite", url=server.url, coalesce_tokens=1) as pub,
    ):
        await pub.publish_token("hi")
    keys = {key for key, _ in flaky.seen}
    assert len(flaky.seen) == 3 and len(keys) == 1 and keys != {""}
    assert flaky.seen[-1][1]["event"] == "token"
    assert flaky.seen[-1][1]["data"]["content"] == "hi"


async def test_gives_up_after_retries_and_does_not_retry_4xx() -> None:
    flaky = Flaky(failures=100)
    async with serve_app(flaky.app()) as server:
        transport = HttpTransport(server.url, retries=2, backoff=0.01)
        with pytest.raises(PublishFailed) as failure:
            await transport.asend("c", "token", {})
        await transport.aclose()
        assert failure.value.status == 503 and len(flaky.seen) == 3
    forbidden = Flaky(failures=100, status=403)
    async with serve_app(forbidden.app()) as server:
        transport = HttpTransport(server.url, retries=2, backoff=0.01)
        with pytest.raises(PublishFailed) as failure:
            await asyncio.to_thread(transport.send, "c", "token", {})  # blocking API
        transport.close()
        assert failure.value.status == 403 and len(forbidden.seen) == 1

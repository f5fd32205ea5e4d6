"""The remote publisher's HTTP transport against a real server that answers 503 first."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from harness import serve_app
from ssehub import cli
from ssehub.agent import HubClient
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


def publish_with(kind: str, url: str) -> None:
    """One publish by a sync SDK publisher, the generic client or the command line."""
    if kind == "publisher":
        with Publisher("t1", "rewrite", url=url) as pub:
            pub.publish_progress(1, 2)
    elif kind == "hub_client":
        with HubClient(url=url) as client:
            client.publish("news", "headline", {"n": 1})
    else:
        result = CliRunner().invoke(cli.app, ["publish", "news", "--data", "1", "--url", url])
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.output) == {"id": "e-1", "channel": "news"}


@pytest.mark.parametrize("kind", ["publisher", "hub_client", "cli"])
async def test_every_publisher_retries_503_with_one_idempotency_key(kind: str) -> None:
    """A 503 means "outcome unknown": retries carry the key of the first attempt."""
    flaky = Flaky(failures=2)
    async with serve_app(flaky.app()) as server:
        await asyncio.to_thread(publish_with, kind, server.url)
    keys = [key for key, _ in flaky.seen]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1, keys

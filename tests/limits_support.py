"""Helpers of the limit and credential tests: JWT hub settings, stream status, 429 checks."""

from __future__ import annotations

from typing import Any

import httpx

from ssehub.settings import Settings
from tokens import SECRET, expect_error


def jwt_settings(**kw: Any) -> Settings:
    """Settings of a hub verifying HS256 tokens signed with the test secret."""
    return Settings(_env_file=None, jwt_secret=SECRET, **kw)  # type: ignore[call-arg]


async def stream_status(client: httpx.AsyncClient, url: str, **kw: Any) -> httpx.Response:
    """Open a stream and close it at once: the response with its status and (error) body."""
    async with client.stream("GET", url, **kw) as response:
        if response.status_code != 200:
            await response.aread()
        return response


def expect_rate_limited(response: httpx.Response, code: str = "rate_limited") -> None:
    """A 429 JSON error with ``code`` and a Retry-After of at least one second."""
    expect_error(response, 429, code)
    assert int(response.headers["retry-after"]) >= 1

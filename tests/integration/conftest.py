"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fake_openai import FakeOpenAI, fake_openai


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    """A local OpenAI-compatible streaming server on a free loopback port."""
    async with fake_openai() as server:
        yield server

"""Fixtures of the security tests: a fresh SQLite conversation store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chat_support import database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Settings of a fresh SQLite chat store."""
    async with database("sqlite", tmp_path) as settings:
        yield settings

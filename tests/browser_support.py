"""Helpers shared by the browser tests: demo settings and waiting on the page's state."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Page

from ssehub.settings import Settings

OPEN = "#state[data-state=open]"
CONNECTING = "#state[data-state=connecting]"


def demo_settings(**overrides: Any) -> Settings:
    """The settings `make run` serves: open demo access, memory broker, no .env file."""
    return Settings(_env_file=None, demo=True, **overrides)  # type: ignore[call-arg]


def unique_channel(prefix: str = "e2e") -> str:
    """A channel no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def open_demo(page: Page, base: str, channel: str, **query: str) -> None:
    """Load the demo page on ``channel`` and wait until its stream is open."""
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    await page.goto(f"{base}/?channel={channel}{extra}")
    await page.wait_for_selector(OPEN, timeout=10_000)


def log_entry(event_id: str) -> str:
    """Selector of the live log's entry for one event id."""
    return f'#log li[data-id="{event_id}"]'

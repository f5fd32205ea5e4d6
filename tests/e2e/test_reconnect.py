"""The page survives a hub restart: the indicator goes `connecting`, then `open` by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page

from browser_support import CONNECTING, OPEN, log_entry, open_demo, unique_channel
from harness import HubProcess, free_port, publish, start_hub_process
from redis_support import delete_prefix, shared_redis_url, unique_prefix

# Short retry so the browser's own reconnects come quickly; demo settings (open access).
BASE_ENV = {"SSEHUB_DEMO": "true", "SSEHUB_RETRY_MS": "300", "SSEHUB_SHUTDOWN_GRACE_SECONDS": "1"}


async def start(tmp_path: Path, env: dict[str, str], port: int) -> HubProcess:
    return await asyncio.to_thread(start_hub_process, tmp_path, {**BASE_ENV, **env}, port=port)


async def stop(process: HubProcess) -> None:
    await asyncio.to_thread(process.terminate)


@pytest.mark.slow
async def test_indicator_reconnects_after_restart_on_the_same_port(
    page: Page, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    port = free_port()
    hub = await start(tmp_path, {}, port)
    try:
        channel = unique_channel()
        await open_demo(page, hub.url, channel)
        before = await publish(client, hub.url, channel, {"n": "before"})
        await page.wait_for_selector(log_entry(before["id"]), timeout=1000)

        await stop(hub)
        await page.wait_for_selector(CONNECTING, timeout=5000)
        hub = await start(tmp_path, {}, port)
        await page.wait_for_selector(OPEN, timeout=15_000)

        after = await publish(client, hub.url, channel, {"n": "after"})
        await page.wait_for_selector(log_entry(after["id"]), timeout=1000)
        transitions = await page.locator('#log li[data-type="client"] .data').all_inner_texts()
        assert any("open → connecting" in t for t in transitions), transitions
        assert any("connecting → open" in t for t in transitions[:1]), transitions
    finally:
        await stop(hub)


@pytest.mark.slow
@pytest.mark.redis
async def test_redis_broker_replays_what_was_published_while_down(
    page: Page, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = shared_redis_url()
    prefix = unique_prefix()
    env = {"SSEHUB_BROKER_URL": url, "SSEHUB_REDIS_PREFIX": prefix}
    port = free_port()
    hub = await start(tmp_path, env, port)
    other = await start(tmp_path, env, free_port())
    try:
        channel = unique_channel()
        await open_demo(page, hub.url, channel)
        first = await publish(client, hub.url, channel, {"n": 0})
        await page.wait_for_selector(log_entry(first["id"]), timeout=1000)

        await stop(hub)
        await page.wait_for_selector(CONNECTING, timeout=5000)
        # Published through another hub process on the same Redis while the page's hub is down.
        missed = [(await publish(client, other.url, channel, {"n": n}))["id"] for n in (1, 2, 3)]
        hub = await start(tmp_path, env, port)
        await page.wait_for_selector(OPEN, timeout=15_000)
        for event_id in missed:
            await page.wait_for_selector(log_entry(event_id), timeout=2000)
        assert await page.locator('#log li[data-type="reset"]').count() == 0
        ids = await page.locator("#log li[data-id]:not([data-type=connected])").evaluate_all(
            "els => els.map(e => e.dataset.id).reverse()"
        )
        assert ids == [first["id"], *missed], "each event exactly once, in order"
    finally:
        await stop(hub)
        await stop(other)
        await asyncio.to_thread(delete_prefix, url, prefix)

"""The demo page in real Chromium: live log, publish form, transports, admin, screenshots."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest
from playwright.async_api import Page

from browser_support import OPEN, demo_settings, log_entry, open_demo, unique_channel
from harness import publish, running_hub
from ssehub.settings import Settings


async def test_published_event_appears_within_a_second(
    page: Page, client: httpx.AsyncClient
) -> None:
    async with running_hub(demo_settings()) as hub:
        channel = unique_channel()
        await open_demo(page, hub.url, channel)
        assert await page.inner_text("#state") == "open"
        started = time.monotonic()
        out = await publish(client, hub.url, channel, {"text": "hello from python"})
        await page.wait_for_selector(log_entry(out["id"]), timeout=1000)
        assert time.monotonic() - started < 1.0
        entry = page.locator(log_entry(out["id"]))
        assert await entry.get_attribute("data-type") == "message"
        assert "hello from python" in await entry.locator(".data").inner_text()


@pytest.mark.parametrize(("transport", "timeout_ms"), [("fetch", 1000), ("poll", 4000)])
async def test_other_transports_receive_every_event_type(
    page: Page, client: httpx.AsyncClient, transport: str, timeout_ms: int
) -> None:
    async with running_hub(demo_settings()) as hub:
        channel = unique_channel()
        old = await publish(client, hub.url, channel, {"n": 0})
        await open_demo(page, hub.url, channel, transport=transport)
        out = await publish(client, hub.url, channel, {"n": 1}, event="custom.kind")
        await page.wait_for_selector(log_entry(out["id"]), timeout=timeout_ms)
        entry = page.locator(log_entry(out["id"]))
        assert await entry.get_attribute("data-type") == "custom.kind"
        # Like a stream, a fresh poller starts live: history before it is not replayed.
        replayed = page.locator(f'{log_entry(old["id"])}:not([data-type="connected"])')
        assert await replayed.count() == 0


async def test_publish_form_reaches_the_log(page: Page) -> None:
    async with running_hub(demo_settings()) as hub:
        channel = unique_channel()
        await open_demo(page, hub.url, channel)
        await page.fill("#pub-event", "greeting")
        await page.fill("#pub-data", '{"hello": "world"}')
        await page.click("#publish-form button[type=submit]")
        await page.wait_for_selector("#pub-result.ok", timeout=2000)
        event_id = (await page.inner_text("#pub-result")).split()[-1]
        entry = page.locator(log_entry(event_id))
        await entry.wait_for(timeout=1000)
        assert await entry.get_attribute("data-type") == "greeting"
        assert '"hello":"world"' in await entry.locator(".data").inner_text()


async def test_admin_panel_shows_stats_and_broadcast_reaches_the_inbox(page: Page) -> None:
    async with running_hub(demo_settings()) as hub:
        await open_demo(page, hub.url, unique_channel())
        await page.wait_for_selector("#inbox-state[data-state=open]", timeout=5000)
        probe = await page.request.get(f"{hub.url}/api/v1/sse/stats")
        if probe.status == 404:
            pytest.skip("the admin API (issue 3) is not mounted on this hub")
        # Two streams of this page (main + inbox) are connected.
        await page.wait_for_function(
            "Number(document.getElementById('stat-active').textContent) >= 2", timeout=5000
        )
        # The table follows from the poll's second request (clients, after stats): wait for it.
        await page.wait_for_function(
            "document.querySelectorAll('#clients tbody tr').length >= 2", timeout=5000
        )
        await page.fill("#bc-event", "announcement")
        await page.fill("#bc-data", '{"text": "hello everyone"}')
        await page.click("#broadcast-form button[type=submit]")
        entry = page.locator('#inbox li[data-type="announcement"]')
        await entry.wait_for(timeout=2000)
        assert "hello everyone" in await entry.inner_text()


async def test_screenshots_wide_and_narrow(
    page: Page, client: httpx.AsyncClient, artifacts: Path
) -> None:
    async with running_hub(demo_settings()) as hub:
        channel = "demo"
        await open_demo(page, hub.url, channel)
        samples = [
            ("stage_update", {"stage": "rewrite", "status": "processing", "progress": 40}),
            ("token", {"content": "Once upon", "stage": "rewrite"}),
            (None, "a plain text message"),
        ]
        ids = [
            (await publish(client, hub.url, channel, data, event=ev))["id"] for ev, data in samples
        ]
        await page.wait_for_selector(log_entry(ids[-1]), timeout=2000)
        await page.screenshot(path=str(artifacts / "demo-page.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.wait_for_selector(OPEN)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
        await page.screenshot(path=str(artifacts / "demo-page-narrow.png"), full_page=True)
        assert (artifacts / "demo-page.png").stat().st_size > 10_000


async def test_admin_panel_needs_an_admin_token(page: Page) -> None:
    secret = "e2e-admin-secret-" + "y" * 32
    settings = Settings(_env_file=None, jwt_secret=secret)  # type: ignore[call-arg]
    exp = int(time.time()) + 600
    admin = jwt.encode({"sub": "root", "admin": True, "exp": exp}, secret, algorithm="HS256")
    user = jwt.encode({"sub": "bob", "subscribe": ["e2e-*"], "exp": exp}, secret)
    async with running_hub(settings) as hub:
        probe = await page.request.get(f"{hub.url}/api/v1/sse/stats")
        if probe.status == 404:
            pytest.skip("the admin API (issue 3) is not mounted on this hub")
        await open_demo(page, hub.url, unique_channel(), token=admin)
        await page.wait_for_function(
            "Number(document.getElementById('stat-active').textContent) >= 1", timeout=5000
        )
        await page.click(".token summary")
        await page.fill("#token", user)
        await page.click("#token-form button")
        await page.wait_for_selector(OPEN, timeout=5000)
        await page.wait_for_function(
            "document.getElementById('admin-meta').textContent === 'this token is not an admin'",
            timeout=5000,
        )

"""The demo page as a new user meets it: every event shown, refusals explained, phone width."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Browser, Page, Route

from browser_support import OPEN, demo_settings, log_entry, open_demo, unique_channel
from harness import publish, running_hub
from ssehub.settings import Settings
from tokens import SECRET

CLOSED = "#state[data-state=closed]"


async def test_eventsource_log_shows_event_types_it_did_not_know(
    page: Page, client: httpx.AsyncClient
) -> None:
    async with running_hub(demo_settings()) as hub:
        channel = unique_channel()
        await open_demo(page, hub.url, channel)
        assert await page.input_value("#transport") == "eventsource"
        first = await publish(client, hub.url, channel, {"order": 1}, event="order_created")
        await page.wait_for_selector(log_entry(first["id"]), timeout=8000)
        second = await publish(client, hub.url, channel, {"order": 2}, event="order_created")
        await page.wait_for_selector(log_entry(second["id"]), timeout=8000)
        for out in (first, second):
            entry = page.locator(log_entry(out["id"]))
            assert await entry.count() == 1
            assert await entry.get_attribute("data-type") == "order_created"


async def test_a_refused_stream_shows_the_status_and_the_hub_message(page: Page) -> None:
    async with running_hub(demo_settings()) as hub:
        await page.goto(f"{hub.url}/?channel=bad%20channel!")
        await page.wait_for_selector(CLOSED, timeout=10_000)
        meta = await page.inner_text("#stream-meta")
        assert "HTTP 400" in meta and "invalid channel pattern 'bad channel!'" in meta
    settings = Settings(_env_file=None, jwt_secret=SECRET)  # type: ignore[call-arg]
    async with running_hub(settings) as hub:
        await page.goto(f"{hub.url}/?channel=demo")
        await page.wait_for_selector(CLOSED, timeout=10_000)
        assert "HTTP 401" in await page.inner_text("#stream-meta")
        refused = page.locator('#log li[data-type="client"]', has_text="stream refused")
        assert await refused.count() == 1


async def test_watch_project_leaves_the_publish_channel_alone(page: Page) -> None:
    async with running_hub(demo_settings()) as hub:
        channel = unique_channel()
        await open_demo(page, hub.url, channel)
        await page.click("#watch-project-btn")
        await page.wait_for_function(
            "document.getElementById('channel').value.endsWith('project:1:stage:*')",
            timeout=5000,
        )
        await page.wait_for_selector(OPEN)
        assert await page.input_value("#pub-channel") == channel
        await page.click("#publish-form button[type=submit]")
        await page.wait_for_selector("#pub-result.ok", timeout=5000)


async def test_stage_card_progress_moves_before_the_run_is_done(page: Page) -> None:
    async with running_hub(demo_settings()) as hub:
        await open_demo(page, hub.url, unique_channel())
        await page.fill("#stage-input", '{"tokens": 40, "pace": 0.05}')
        await page.click("#stage-start")
        await page.wait_for_function(
            "(() => { const v = Number(document.getElementById('stage-progress').dataset.value);"
            " return v > 0 && v < 100; })()",
            timeout=10_000,
        )
        await page.wait_for_selector("#stage-status[data-status=done]", timeout=15_000)


async def test_nothing_is_clipped_at_390_px(browser: Browser, artifacts: Path) -> None:
    async with running_hub(demo_settings()) as hub:
        context = await browser.new_context(viewport={"width": 390, "height": 844})
        page = await context.new_page()
        try:
            await open_demo(page, hub.url, unique_channel())
            await page.wait_for_selector("#clients tbody tr", timeout=10_000)
            sizes = await page.evaluate(
                """() => {
                  const wrap = document.querySelector('#admin-card .table-wrap');
                  return {
                    page: document.documentElement.scrollWidth,
                    stageName: document.getElementById('stage-name').getBoundingClientRect().width,
                    tableScroll: wrap.scrollWidth, tableWidth: wrap.clientWidth,
                  };
                }"""
            )
            await page.screenshot(path=str(artifacts / "demo-390.png"), full_page=True)
        finally:
            await context.close()
    assert sizes["page"] <= 390
    assert sizes["stageName"] >= 120  # room for a stage name, not two characters
    assert sizes["tableScroll"] <= sizes["tableWidth"]


async def test_api_docs_render_with_other_hosts_blocked(browser: Browser) -> None:
    async with running_hub(demo_settings()) as hub:
        context = await browser.new_context()
        blocked: list[str] = []

        async def only_the_hub(route: Route) -> None:
            if urlsplit(route.request.url).hostname == "127.0.0.1":
                await route.continue_()
            else:
                blocked.append(route.request.url)
                await route.abort()

        await context.route("**/*", only_the_hub)
        page = await context.new_page()
        try:
            await page.goto(f"{hub.url}/docs")
            await page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
            assert "ssehub" in await page.inner_text(".swagger-ui .info .title")
            assert await page.locator(".opblock").count() > 10
            assert blocked == []
            await page.goto(f"{hub.url}/redoc")
            await page.wait_for_selector("h1", timeout=15_000)
            assert "ssehub" in await page.inner_text("h1")
            assert await page.locator("[data-section-id^='operation/']").count() > 10
        finally:
            await context.close()
    # ReDoc's only outside request is its "powered by" logo, which it renders without.
    assert all(url.startswith("https://cdn.redoc.ly/redoc/logo") for url in blocked)


async def test_a_second_stage_run_shows_its_own_events(page: Page) -> None:
    """The stage stream replays the run before (snapshot, done): the card waits for this one."""
    async with running_hub(demo_settings()) as hub:
        await open_demo(page, hub.url, unique_channel())
        for text in ("first run words", "second run here"):
            await page.fill("#stage-input", f'{{"text": "{text}", "pace": 0.05}}')
            await page.click("#stage-start")
            await page.wait_for_selector("#stage-status[data-status=done]", timeout=15_000)
            assert await page.inner_text("#stage-text") == text
            assert await page.inner_text("#stage-message") == "done"  # its stage_update

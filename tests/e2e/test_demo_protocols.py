"""The demo page's "AI SDK chat" and "AG-UI run" tabs, in Chromium against the demo settings."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

from browser_support import demo_settings
from harness import running_hub

ENDS = "instead."  # the demo provider's answer ends so


async def test_the_protocol_tabs_stream_a_chat_answer_and_a_stage_run(
    page: Page, tmp_path: Path
) -> None:
    settings = demo_settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", demo_pace_seconds=0.01
    )
    async with running_hub(settings) as hub:
        await page.goto(f"{hub.url}/")
        await page.click("#tab-ai-sdk")
        await page.fill("#sdk-input", "hello from the tab")
        await page.click("#sdk-send")
        await page.wait_for_function(
            f"document.querySelector('#sdk-text').textContent.endsWith('{ENDS}')", timeout=20_000
        )
        await page.wait_for_selector("#sdk-parts li:has-text('finish')", timeout=10_000)

        await page.click("#tab-ag-ui")
        assert await page.is_hidden("#panel-ai-sdk")
        await page.click("#agui-run")
        await page.wait_for_function(
            f"document.querySelector('#agui-text').textContent.endsWith('{ENDS}')", timeout=20_000
        )
        await page.wait_for_selector("#agui-events li:has-text('RUN_FINISHED')", timeout=10_000)

        await page.select_option("#agui-agent", "stage")
        await page.click("#agui-run")
        await page.wait_for_function(
            "document.querySelector('#agui-state').textContent.includes('completed')",
            timeout=20_000,
        )
        await page.wait_for_selector("#agui-events li:has-text('STEP_FINISHED')", timeout=10_000)
        assert "STATE_DELTA" in await page.inner_text("#agui-events")

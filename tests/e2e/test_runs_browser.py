"""Runs and reconnects in real Chromium: re-runs, fetch `retry:`, single-use tickets, the panel."""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.async_api import Page

from browser_support import demo_settings, unique_channel
from harness import RunningHub, running_hub, wait_until
from ssehub.publisher import Publisher
from ssehub.settings import Settings
from tokens import SECRET, hs256

PRELUDE = "const m = await import('/static/ssehub.js');"


async def run_js(page: Page, body: str, arg: Any = None) -> Any:
    return await page.evaluate(f"async (arg) => {{ {PRELUDE} {body} }}", arg)


async def finished_run(hub: RunningHub, project: str, text: str) -> str:
    async with Publisher(project, "rewrite", hub=hub.hub, coalesce_tokens=1) as pub:
        await pub.publish_token(text)
        await pub.publish_done()
        return str(pub.run_id)


def drop_streams(hub: RunningHub) -> None:
    """The server ends every open stream (what a network drop looks like to the client)."""
    for conn in list(hub.hub.connections.values()):
        conn.close("test_drop")


async def test_the_seed_client_waits_for_the_next_run_instead_of_the_old_done(
    page: Page,
) -> None:
    async with running_hub(demo_settings()) as hub:
        await page.goto(f"{hub.url}/healthz")
        await finished_run(hub, "jr1", "old")
        # The stage pipeline design's client code: connected / token / done handlers.
        await run_js(
            page,
            "window.log = [];"
            "const client = new m.SSEClient('/api/v1/sse/projects/jr1/stages/rewrite/');"
            "client"
            "  .on('connected', (data) => window.log.push('已连接'))"
            "  .on('token', (data) => window.log.push('Token: ' + data.content))"
            "  .on('done', (data) => window.log.push('完成 ' + data.run_id))"
            "  .connect();",
        )
        await page.wait_for_function("window.log.includes('已连接')", timeout=5000)
        new = await finished_run(hub, "jr1", "new")
        await page.wait_for_function("window.log.some(l => l.startsWith('完成'))", timeout=5000)
        log = await page.evaluate("window.log")
    assert log == ["已连接", "Token: new", f"完成 {new}"]


async def test_fetch_transport_honours_retry_and_reports_no_status_for_a_drop(
    page: Page,
) -> None:
    async with running_hub(demo_settings(retry_ms=150)) as hub:
        await page.goto(f"{hub.url}/healthz")
        channel = unique_channel()
        await run_js(
            page,
            "window.errors = []; window.opens = 0;"
            "const c = new m.SSEClient(`/api/v1/sse/stream/${arg}`,"
            "  {transport: 'fetch', reconnect: {initialMs: 20000, maxMs: 30000}});"
            "c.on('connectionerror', (i) => window.errors.push(i));"
            "c.on('open', () => window.opens++);"
            "c.connect();",
            channel,
        )
        await page.wait_for_function("window.opens === 1", timeout=5000)
        await wait_until(lambda: len(hub.hub.connections) == 1, timeout=5)
        drop_streams(hub)
        await page.wait_for_function("window.opens === 2", timeout=10_000)
        first = (await page.evaluate("window.errors"))[0]
    assert first["status"] is None and first["fatal"] is False
    assert first["delayMs"] == 150  # the server's `retry:`, not the 20 s backoff


async def test_single_use_tickets_are_fetched_again_for_each_reconnect(
    page: Page, client: httpx.AsyncClient
) -> None:
    settings = Settings(_env_file=None, jwt_secret=SECRET)  # type: ignore[call-arg]
    async with running_hub(settings) as hub:
        await page.goto(f"{hub.url}/healthz")
        channel = unique_channel()
        token = hs256("alice", subscribe=[channel], publish=[channel])
        await run_js(
            page,
            "window.notes = []; window.tickets = 0; window.opens = 0;"
            "const ticket = async () => { window.tickets++;"
            "  const r = await fetch('/api/v1/sse/tickets', {method: 'POST', headers:"
            "    {Authorization: `Bearer ${arg.token}`, 'Content-Type': 'application/json'},"
            "    body: JSON.stringify({channels: [arg.channel]})});"
            "  return (await r.json()).ticket; };"
            "const c = new m.SSEClient(`/api/v1/sse/stream/${arg.channel}`,"
            "  {ticket, reconnect: {initialMs: 50, maxMs: 100}});"
            "c.on('note', (d) => window.notes.push(d.n)).on('open', () => window.opens++);"
            "c.connect();",
            {"token": token, "channel": channel},
        )
        await page.wait_for_function("window.opens === 1", timeout=5000)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{hub.url}/api/v1/publish/{channel}"
        await client.post(url, json={"event": "note", "data": {"n": 1}}, headers=headers)
        await page.wait_for_function("window.notes.length === 1", timeout=5000)
        drop_streams(hub)
        await page.wait_for_function("window.opens === 2", timeout=10_000)
        await client.post(url, json={"event": "note", "data": {"n": 2}}, headers=headers)
        await page.wait_for_function("window.notes.length === 2", timeout=5000)
        assert await page.evaluate("[window.notes, window.tickets]") == [[1, 2], 2]


async def test_the_stage_panel_runs_again_and_cancels_the_new_run(
    page: Page, client: httpx.AsyncClient
) -> None:
    async with running_hub(demo_settings()) as hub:
        await page.goto(f"{hub.url}/?channel={unique_channel()}")
        await page.fill("#stage-project", "jr4")
        await page.fill("#stage-input", json.dumps({"tokens": 5, "pace": 0}))
        await page.click("#stage-start")
        await page.wait_for_selector("#stage-done:not([hidden])", timeout=10_000)
        assert (await page.inner_text("#stage-done")).startswith("Done")
        await page.wait_for_selector("#stage-start:not([disabled])")

        await page.fill("#stage-input", json.dumps({"tokens": 10_000, "pace": 0.05}))
        await page.click("#stage-start")
        await page.wait_for_selector("#stage-cancel:not([disabled])", timeout=10_000)
        assert await page.is_hidden("#stage-done"), await page.inner_text("#stage-done")
        await page.click("#stage-cancel")
        await page.wait_for_selector("#stage-done:not([hidden])", timeout=10_000)
        assert await page.inner_text("#stage-done") == "Cancelled"


async def test_use_sse_on_message_gets_start_progress_complete_and_error(
    page: Page, client: httpx.AsyncClient
) -> None:
    from test_react_hook import hook_page

    async with running_hub(demo_settings()) as hub:
        await page.goto(f"{hub.url}/healthz")
        script = (
            "import { render } from 'react';"
            "import { useSSE } from '/static/react/useSSE.js';"
            "window.types = [];"
            "window.start = (channel) => render(() => useSSE(channel, {"
            "  onMessage: (data, event) => window.types.push(event.type) }));"
            "window.ready = true;"
        )
        await page.set_content(hook_page(script))
        await page.wait_for_function("window.ready === true", timeout=5000)
        channel = unique_channel()
        await page.evaluate("(c) => window.start(c)", channel)
        await page.wait_for_function("window.hookResult.connectionState === 'open'", timeout=5000)
        await wait_until(lambda: len(hub.hub.connections) == 1, timeout=5)
        for name in ("start", "progress", "complete", "error"):
            await client.post(
                f"{hub.url}/api/v1/publish/{channel}", json={"event": name, "data": {"x": 1}}
            )
        await page.wait_for_function("window.types.includes('error')", timeout=5000)
        types = await page.evaluate("window.types.filter(t => t !== 'connected')")
    assert types == ["start", "progress", "complete", "error"]

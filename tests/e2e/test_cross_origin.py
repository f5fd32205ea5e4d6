"""A page on another origin streams and publishes through CORS, in real Chromium."""

from __future__ import annotations

from playwright.async_api import Page

from browser_support import demo_settings, unique_channel
from harness import running_hub

# Stream one event through EventSource and publish one with fetch, both cross-origin.
CROSS_ORIGIN = """async ([hub, channel]) => {
  const within = (p) => Promise.race([p, new Promise((_, no) =>
    setTimeout(() => no(new Error('timed out in the page')), 5000))]);
  const source = new EventSource(`${hub}/api/v1/sse/stream/${channel}`, {withCredentials: true});
  try {
    await within(new Promise((ok, no) => {
      source.addEventListener('connected', ok);
      source.onerror = () => no(new Error('stream refused'));
    }));
    const got = new Promise(ok => source.addEventListener('note', e => ok(e.data)));
    const sent = await fetch(`${hub}/api/v1/publish/${channel}`, {
      method: 'POST', credentials: 'include',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({event: 'note', data: 'from the page'}),
    });
    return {status: sent.status, data: await within(got)};
  } catch (error) {
    return {error: String(error)};
  } finally {
    source.close();
  }
}"""


async def test_an_allowed_origin_streams_and_publishes(page: Page) -> None:
    async with (
        running_hub(demo_settings()) as site,
        running_hub(demo_settings(cors_origins=[site.url])) as hub,
    ):
        await page.goto(f"{site.url}/healthz")
        result = await page.evaluate(CROSS_ORIGIN, [hub.url, unique_channel()])
        assert result == {"status": 200, "data": "from the page"}


async def test_without_cors_the_browser_refuses_the_stream(page: Page) -> None:
    async with running_hub(demo_settings()) as site, running_hub(demo_settings()) as hub:
        await page.goto(f"{site.url}/healthz")
        result = await page.evaluate(CROSS_ORIGIN, [hub.url, unique_channel()])
        assert result == {"error": "Error: stream refused"}

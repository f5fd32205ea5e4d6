"""useSSE (static/react/useSSE.js) in Chromium, under a minimal hooks runtime standing in for React.

React itself is not vendored (no network at test time); the runtime below implements the four
hooks the module uses with React's semantics (state, refs, memoized callbacks, effects with
cleanup) so the hook's own logic runs unchanged against a real hub.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from playwright.async_api import Page

from browser_support import demo_settings, unique_channel
from harness import RunningHub, publish, running_hub

MINI_REACT = """
const slots = []; let index = 0; let pending = []; let component = null; let scheduled = false;
const same = (a, b) => a && b && a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
function schedule() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(() => { scheduled = false; render(component); });
}
export function useState(init) {
  const i = index++;
  if (!(i in slots)) slots[i] = { value: init };
  const slot = slots[i];
  return [slot.value, (v) => { if (!Object.is(v, slot.value)) { slot.value = v; schedule(); } }];
}
export function useRef(init) {
  const i = index++;
  if (!(i in slots)) slots[i] = { current: init };
  return slots[i];
}
export function useCallback(fn, deps) {
  const i = index++;
  if (slots[i] && same(slots[i].deps, deps)) return slots[i].fn;
  slots[i] = { fn, deps };
  return fn;
}
export function useEffect(fn, deps) {
  const i = index++;
  const prev = slots[i];
  if (prev && same(prev.deps, deps)) return;
  slots[i] = { deps, cleanup: prev?.cleanup };
  pending.push(() => { slots[i].cleanup?.(); slots[i].cleanup = fn(); });
}
export function render(fn) {
  component = fn; index = 0;
  window.hookResult = fn();
  const effects = pending; pending = [];
  effects.forEach((run) => run());
}
export function unmount() { slots.forEach((s) => s?.cleanup?.()); }
"""


def hook_page(script: str) -> str:
    """A page whose ``react`` import is the runtime above, running the module ``script``."""
    react_url = "data:text/javascript," + MINI_REACT.replace("%", "%25").replace("#", "%23")
    importmap = json.dumps({"imports": {"react": react_url}})
    return f'<!doctype html><script type="importmap">{importmap}</script>' + (
        f'<script type="module">{script}</script>'
    )


SCRIPT = """
  import { render, unmount } from 'react';
  import { useSSE } from '/static/react/useSSE.js';
  window.notes = [];
  window.start = (channel) => render(() => useSSE(channel, {
    reconnect: { maxAttempts: 1, initialMs: 20 },
    events: { note: (data) => window.notes.push(data) },
  }));
  window.unmount = unmount;
  window.ready = true;
"""


async def server_streams(hub: RunningHub, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(hub.hub.connections) != count:
        assert time.monotonic() < deadline, "stream count did not settle"
        await asyncio.sleep(0.02)


async def test_use_sse_tracks_state_delivers_events_and_cleans_up(
    page: Page, client: httpx.AsyncClient
) -> None:
    async with running_hub(demo_settings()) as hub:
        await page.goto(f"{hub.url}/healthz")
        await page.set_content(hook_page(SCRIPT))
        await page.wait_for_function("window.ready === true", timeout=5000)
        channel = unique_channel()
        await page.evaluate("(c) => window.start(c)", channel)
        await page.wait_for_function("window.hookResult.connectionState === 'open'", timeout=5000)
        assert await page.evaluate("window.hookResult.lastError") is None
        await server_streams(hub, 1)

        await publish(client, hub.url, channel, {"n": 1}, event="note")
        await page.wait_for_function("window.notes.length === 1", timeout=2000)
        assert await page.evaluate("window.notes") == [{"n": 1}]

        await page.evaluate("window.hookResult.disconnect()")
        await page.wait_for_function("window.hookResult.connectionState === 'closed'")
        await server_streams(hub, 0)
        await page.evaluate("window.hookResult.reconnect()")
        await page.wait_for_function("window.hookResult.connectionState === 'open'")
        await server_streams(hub, 1)
        await page.evaluate("window.unmount()")
        await server_streams(hub, 0)

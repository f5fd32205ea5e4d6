"""ssehub.js through a 40 s network outage in real Chromium: it comes back and misses nothing.

The page reaches the hub through a TCP proxy on loopback. The outage cuts the proxy (open
connections aborted, new ones refused) and takes the browser offline; events are published to
the hub all along. When the network returns, every event must arrive exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from browser_support import demo_settings, unique_channel
from harness import free_port, publish, running_hub

OUTAGE_SECONDS = 40.0


class CuttableProxy:
    """Forwards loopback TCP to a port; ``cut`` aborts every connection and stops listening."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update({writer, up_writer})
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()


PAGE_JS = """async (channel) => {
  const m = await import('/static/ssehub.js');
  window.got = []; window.states = []; window.errors = [];
  const c = new m.SSEClient(`/api/v1/sse/stream/${channel}`)
    .on('note', (d, e) => window.got.push(e.id))
    .on('statechange', ({state}) => window.states.push(state))
    .on('connectionerror', (i) => window.errors.push(i));
  window.client = c;
  await new Promise((r) => { c.on('open', r); c.connect(); });
}"""


@pytest.mark.slow
async def test_a_40_second_outage_loses_nothing(page: Page, client: httpx.AsyncClient) -> None:
    async with running_hub(demo_settings()) as hub:
        proxy = CuttableProxy(int(hub.url.rsplit(":", 1)[1]))
        await proxy.start()
        base = f"http://127.0.0.1:{proxy.port}"
        await page.goto(f"{base}/healthz")
        channel = unique_channel()
        await page.evaluate(PAGE_JS, channel)
        before = [(await publish(client, hub.url, channel, {"n": n}, "note"))["id"] for n in (0, 1)]
        await page.wait_for_function("window.got.length === 2", timeout=10_000)

        await proxy.cut()
        await page.context.set_offline(True)
        await page.wait_for_function("window.client.state === 'connecting'", timeout=10_000)
        during: list[str] = []
        started = time.monotonic()
        n = 2
        while time.monotonic() - started < OUTAGE_SECONDS:
            during.append((await publish(client, hub.url, channel, {"n": n}, "note"))["id"])
            n += 1
            await asyncio.sleep(2.0)  # the outage's length, not a wait for a result
        errors_in_outage = len(await page.evaluate("window.errors"))
        state_at_end = await page.evaluate("window.client.state")

        await proxy.start()
        await page.context.set_offline(False)
        total = len(before) + len(during)
        await page.wait_for_function(f"window.got.length >= {total}", timeout=30_000)
        after = (await publish(client, hub.url, channel, {"n": n}, "note"))["id"]
        await page.wait_for_function(f"window.got.length >= {total + 1}", timeout=10_000)
        got: list[Any] = await page.evaluate("window.got")
    print(
        f"outage {OUTAGE_SECONDS:.0f} s: {len(during)} events published during it, "
        f"{len([i for i in got if i in during])} delivered after it; "
        f"{errors_in_outage} connection errors reported meanwhile"
    )
    assert state_at_end == "connecting", "the client gave up during the outage"
    assert got == [*before, *during, after]  # every event once, in order

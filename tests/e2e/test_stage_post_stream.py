"""A stage answered on the POST that starts it, read in Chromium like a training stream.

The page reads ``POST /api/v1/projects/{id}/execute_stage/stream/`` with ``streamPost`` and the
callbacks of a training-stream reader (onMessage for progress, onComplete, onError); the
events and ids match the stage channel's, a client resumes on the channel, and closing the
response does not stop the run.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from playwright.async_api import Page

from browser_support import demo_settings
from harness import open_stream, running_hub

# The training-stream reader's callbacks, fed by streamPost instead of an EventSource (a POST).
READER = """async (arg) => {
  const m = await import('/static/ssehub.js');
  window.messages = []; window.completed = null; window.failed = null;
  const onMessage = (data) => window.messages.push(data);
  const onComplete = (data) => { window.completed = data; };
  const onError = (error) => { window.failed = error; };
  const abort = new AbortController();
  window.abortTraining = () => abort.abort();
  const events = m.streamPost(`/api/v1/projects/${arg.project}/execute_stage/stream/`,
    {stage_name: 'rewrite', input_data: arg.input}, {
      stage_update: (data) => onMessage({ type: 'stage_update', ...data }),
      token: (data, event) => onMessage({ type: 'token', data: event.data }),
      done: (data) => onComplete(data),
      error: (data) => onError(data),
    }, {signal: abort.signal});
  if (arg.wait === false) { events.catch(() => {}); return null; }
  return (await events).map((e) => [e.type, e.id]);
}"""


async def test_a_stage_streams_on_its_post_with_the_channel_ids(
    page: Page, client: httpx.AsyncClient
) -> None:
    async with running_hub(demo_settings()) as hub:
        await page.goto(f"{hub.url}/healthz")
        url = f"{hub.url}/api/v1/sse/projects/ps1/stages/rewrite/"
        async with open_stream(client, url) as channel:
            arg = {"project": "ps1", "input": {"text": "one two three", "pace": 0}}
            got: list[Any] = await page.evaluate(READER, arg)
            await channel.wait_count(1, event="done")
        completed = await page.evaluate("window.completed")
        messages = await page.evaluate("window.messages")
    on_channel = [[e.event, e.id] for e in channel.events if e.event != "connected"]
    assert got[0][0] == "connected"
    assert got[1:] == on_channel  # the same events with the same ids, ending with the run
    assert completed["full_text"] == "one two three"
    assert messages[0]["type"] == "stage_update" and messages[0]["status"] == "pending"
    assert "".join(json.loads(m["data"])["content"] for m in messages if m["type"] == "token") == (
        "one two three"
    )


async def test_closing_the_post_keeps_the_run_and_the_channel_resumes_it(
    page: Page, client: httpx.AsyncClient
) -> None:
    async with running_hub(demo_settings()) as hub:
        await page.goto(f"{hub.url}/healthz")
        arg = {"project": "ps2", "input": {"tokens": 30, "pace": 0.05}, "wait": False}
        await page.evaluate(READER, arg)
        await page.wait_for_function(
            "window.messages.filter(m => m.type === 'token').length >= 2", timeout=10_000
        )
        await page.evaluate("window.abortTraining()")
        seen = await page.evaluate("window.messages.length")
        # Resume on the channel from the last event the POST response delivered.
        last = await page.evaluate(
            "(async () => { const r = await fetch('/api/v1/channels/'"
            " + encodeURIComponent('ai_story:project:ps2:stage:rewrite') + '/events');"
            " return (await r.json()).events; })()"
        )
        resume_from = last[seen - 1]["id"]
        url = f"{hub.url}/api/v1/sse/projects/ps2/stages/rewrite/"
        async with open_stream(client, url, headers={"Last-Event-ID": resume_from}) as rest:
            await rest.wait_count(1, event="done", timeout=20)
    done = json.loads(rest.of_type("done")[0].data)
    assert done["metadata"] == {"tokens_used": 30}  # the run went on after the POST closed
    assert rest.of_type("error") == []

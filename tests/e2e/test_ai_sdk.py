"""The Vercel AI SDK's ``useChat`` (pinned npm packages, bundled at test time) against a live hub.

The page is what an existing app writes: ``useChat`` with ``resume: true`` and the SDK's default
HTTP transport pointed at ``/api/v1/ai-sdk/chat``, initial messages from the chat's
``/messages``, and the SDK's documented stop (stop endpoint, then ``stop()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from harness import running_hub, start_hub_process, wait_until
from protocol_support import build_page, serve_page
from redis_support import delete_prefix, shared_redis_url, unique_prefix
from ssehub.llm.demo import LABEL
from ssehub.settings import Settings

API = "/api/v1/ai-sdk/chat"
ASSISTANT = '.message[data-role="assistant"]'


@pytest.fixture(scope="module")
def chat_bundle() -> Path:
    return build_page("chat.jsx")


def demo_settings(tmp_path: Path, pace: float) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        demo=True,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        demo_pace_seconds=pace,
    )


async def open_chat(page: Page, base: str, bundle: Path, chat_id: str) -> None:
    url = await serve_page(page, base, bundle)
    await page.goto(f"{url}?chat={chat_id}")
    await page.wait_for_function("window.chat !== undefined", timeout=15_000)


async def assistant_texts(page: Page) -> list[str]:
    return await page.locator(ASSISTANT).all_inner_texts()


async def wait_text(page: Page, minimum: int = 1, answer: int = 1) -> None:
    """Until assistant message number ``answer`` has at least ``minimum`` characters."""
    nth = f"document.querySelectorAll('{ASSISTANT}')[{answer - 1}]"
    await page.wait_for_function(f"{nth}?.textContent.length >= {minimum}", timeout=20_000)


async def wait_ready(page: Page) -> None:
    await page.wait_for_selector('#status[data-status="ready"]', timeout=30_000)


async def stored_answer(base: str, chat_id: str, *, status: str | None = None) -> dict[str, Any]:
    """The chat's last stored answer (waiting until it has ``status`` when given)."""
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(300):
            detail = (await client.get(f"{base}/api/v1/conversations/{chat_id}")).json()
            answer = detail["messages"][-1]
            if status is None or answer["status"] == status:
                return answer  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)
    raise AssertionError(f"the answer never reached {status}: {answer}")


async def test_use_chat_streams_an_answer_stored_as_the_conversation(
    page: Page, chat_bundle: Path, tmp_path: Path
) -> None:
    chat_id = uuid.uuid4().hex[:16]
    async with running_hub(demo_settings(tmp_path, 0.01)) as hub:
        await open_chat(page, hub.url, chat_bundle, chat_id)
        await page.evaluate("void chat.send('What is ssehub?')")
        await page.wait_for_function(
            f"document.querySelector('{ASSISTANT}')?.textContent.endsWith('instead.')",
            timeout=20_000,
        )
        await wait_ready(page)
        stored = await stored_answer(hub.url, chat_id, status="complete")
        assert await assistant_texts(page) == [stored["content"]]
        assert "What is ssehub?" in stored["content"]
        async with httpx.AsyncClient() as client:
            idle = await client.get(f"{hub.url}{API}/{chat_id}/stream")
        assert idle.status_code == 204  # nothing running: the SDK's reconnect gets no content


async def test_reload_mid_answer_shows_the_full_answer_once(
    page: Page, chat_bundle: Path, tmp_path: Path
) -> None:
    chat_id = uuid.uuid4().hex[:16]
    async with running_hub(demo_settings(tmp_path, 0.08)) as hub:
        await open_chat(page, hub.url, chat_bundle, chat_id)
        await page.evaluate("void chat.send('reload me')")
        await wait_text(page, 20)
        await page.reload()
        await page.wait_for_function("window.chat !== undefined", timeout=15_000)
        await wait_text(page, 20)  # the resumed stream replays the start at once
        await wait_ready(page)
        stored = await stored_answer(hub.url, chat_id, status="complete")
        shown = await assistant_texts(page)
        assert shown == [stored["content"]]
        assert shown[0].count(LABEL) == 1


async def test_stop_reaches_the_model_also_on_a_resumed_stream(
    page: Page, chat_bundle: Path, tmp_path: Path
) -> None:
    chat_id = uuid.uuid4().hex[:16]
    async with running_hub(demo_settings(tmp_path, 0.15)) as hub:
        await open_chat(page, hub.url, chat_bundle, chat_id)
        await page.evaluate("void chat.send('stop me')")
        await wait_text(page, 10)
        await page.evaluate("void chat.stop()")
        first = await stored_answer(hub.url, chat_id, status="cancelled")
        assert LABEL.startswith(first["content"].strip()[:10])
        # The model call ends: its turn goes once the stored answer is final, not before.
        await wait_until(lambda: not hub.app.state.chat.turns)
        await wait_ready(page)  # the SDK's own stop is done too: it would abort the next send

        await page.evaluate("void chat.send('stop me after a reload')")
        await wait_text(page, 10, answer=2)
        await page.reload()
        await page.wait_for_function("window.chat !== undefined", timeout=15_000)
        await page.wait_for_selector('#status[data-status="streaming"]', timeout=15_000)
        await page.evaluate("void chat.stop()")
        second = await stored_answer(hub.url, chat_id, status="cancelled")
        assert "instead." not in second["content"]
        await wait_until(lambda: not hub.app.state.chat.turns)
        async with httpx.AsyncClient() as client:
            idle = await client.get(f"{hub.url}{API}/{chat_id}/stream")
        assert idle.status_code == 204


@contextlib.contextmanager
def two_hub_processes(tmp_path: Path) -> Any:
    """Two ``ssehub serve`` processes sharing Redis and a conversation store."""
    url, prefix = shared_redis_url(), unique_prefix()
    env = {
        "SSEHUB_DEMO": "true",
        "SSEHUB_BROKER_URL": url,
        "SSEHUB_REDIS_PREFIX": prefix,
        "SSEHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        "SSEHUB_DEMO_PACE_SECONDS": "0.08",
        "SSEHUB_CHAT_CHECKPOINT_SECONDS": "0.3",
    }
    first = start_hub_process(tmp_path, env)
    second = None
    try:
        second = start_hub_process(tmp_path, env)
        yield first, second
    finally:
        for process in (first, second):
            if process is not None:
                process.terminate()
        delete_prefix(url, prefix)


@pytest.mark.slow
async def test_reload_lands_on_another_hub_process_over_redis(
    page: Page, chat_bundle: Path, tmp_path: Path
) -> None:
    chat_id = uuid.uuid4().hex[:16]
    with two_hub_processes(tmp_path) as (runner, other):
        await open_chat(page, runner.url, chat_bundle, chat_id)
        await page.evaluate("void chat.send('answered on one process, resumed on the other')")
        await wait_text(page, 20)
        await open_chat(page, other.url, chat_bundle, chat_id)  # the reload, served elsewhere
        await wait_text(page, 20)
        await wait_ready(page)
        stored = await stored_answer(other.url, chat_id, status="complete")
        shown = await assistant_texts(page)
        assert shown == [stored["content"]]
        assert shown[0].count(LABEL) == 1

        # Stop on the other process: the answering one ends the model call at its checkpoint.
        await open_chat(page, runner.url, chat_bundle, chat_id)
        await page.evaluate("void chat.send('stopped from the other process')")
        await wait_text(page, 20, answer=2)
        await open_chat(page, other.url, chat_bundle, chat_id)
        await wait_text(page, 20, answer=2)  # resumed there
        await page.evaluate("void chat.stop()")
        stopped = await stored_answer(runner.url, chat_id, status="cancelled")
        assert "instead." not in stopped["content"]

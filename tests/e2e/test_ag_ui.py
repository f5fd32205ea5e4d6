"""@ag-ui/client's HttpAgent (pinned npm package, in Node) against a live hub's chat agent.

HttpAgent.runAgent passes every stream through the protocol's own event verifier, so each
scenario finishing at all means the verifier accepted its stream (prelude included).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import running_hub, wait_until
from protocol_support import ensure_packages, run_node
from ssehub.settings import Settings
from ssehub.tasks.builtin import words

STAGE_INPUT = {"text": "one two three four five six", "tokens": 40}  # as in agui.mjs


async def stored_answer(client: httpx.AsyncClient, base: str, thread_id: str) -> dict[str, Any]:
    detail = (await client.get(f"{base}/api/v1/conversations/{thread_id}")).json()
    return detail["messages"][-1]  # type: ignore[no-any-return]


@pytest.mark.slow
async def test_http_agent_on_chat_and_stages_runs_reconnects_joins_late_and_cancels(
    tmp_path: Path,
) -> None:
    ensure_packages()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        demo=True,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        demo_pace_seconds=0.05,
    )
    async with running_hub(settings) as hub, httpx.AsyncClient(timeout=10) as client:
        result: Any = await asyncio.to_thread(run_node, "agui.mjs", {"HUB": hub.url}, 120)

        full = result["full"]
        answer = await stored_answer(client, hub.url, full["threadId"])
        assert answer["status"] == "complete"
        assert full["texts"] == [answer["content"]]
        assert full["types"][:2] == ["RUN_STARTED", "TEXT_MESSAGE_START"]
        assert full["types"][-2:] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]

        # Reconnected with the last id it read: the text continues exactly, none twice.
        again = result["reconnect"]
        answer = await stored_answer(client, hub.url, again["threadId"])
        assert again["partial"] and answer["content"].startswith(again["partial"])
        assert again["partial"] != answer["content"]
        assert again["texts"] == [answer["content"]]
        assert again["types"][:2] == ["RUN_STARTED", "TEXT_MESSAGE_START"]

        # Joined late: run start, messages snapshot, the re-opened message, then the live tail.
        late = result["late"]
        answer = await stored_answer(client, hub.url, late["threadId"])
        assert late["types"][:3] == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "TEXT_MESSAGE_START"]
        assert late["types"][-1] == "RUN_FINISHED"
        assert late["texts"] == [answer["content"]] == late["runnerTexts"]
        assert late["roles"] == ["user", "assistant"]

        stopped = result["cancelled"]
        answer = await stored_answer(client, hub.url, stopped["threadId"])
        assert answer["status"] == "cancelled"
        assert stopped["outcome"] == {"type": "cancelled"}
        assert stopped["texts"] == [answer["content"]]
        await wait_until(lambda: not hub.app.state.chat.turns)  # its turn goes after the answer

        stage_runs(result, await task_state(client, hub.url, result["stageCancelled"]["taskId"]))


async def task_state(client: httpx.AsyncClient, base: str, task_id: str) -> str:
    return (await client.get(f"{base}/api/v1/tasks/{task_id}")).json()["status"]  # type: ignore[no-any-return]


def stage_runs(result: Any, cancelled_task: str) -> None:
    """The stage agent: a step with state deltas and a text message; joins and a cancel."""
    full = result["stage"]
    assert full["types"][:3] == ["RUN_STARTED", "STEP_STARTED", "STATE_SNAPSHOT"]
    assert "STATE_DELTA" in full["types"]
    assert full["types"][-3:] == ["TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"]
    assert full["text"] == "".join(words({**STAGE_INPUT, "tokens": 10}))
    state = full["state"]
    assert (state["stage"], state["status"], state["progress"]) == ("rewrite", "completed", 100)

    joined, text = result["stageJoin"], "".join(words(STAGE_INPUT))
    assert joined["lateTypes"][:4] == [
        "RUN_STARTED",
        "STEP_STARTED",
        "STATE_SNAPSHOT",
        "TEXT_MESSAGE_START",
    ]
    assert joined["lateText"] == text  # the snapshot's text so far, then the live tail
    assert joined["lateState"]["status"] == "completed"
    assert joined["againText"] == text  # reconnected after its last id: each token once
    assert joined["againTypes"][-1] == "RUN_FINISHED"

    stopped = result["stageCancelled"]
    assert stopped["outcome"] == {"type": "cancelled"}
    assert text.startswith(stopped["text"]) and stopped["text"] != text
    assert cancelled_task == "cancelled"

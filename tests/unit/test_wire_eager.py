"""``run_eagerly``: a coroutine runs at once, and a task carries it on only if it suspends."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from ssehub.wirepublish import run_eagerly

seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="-")


async def test_a_coroutine_that_never_suspends_runs_at_once_without_a_task() -> None:
    steps: list[str] = []

    async def plain() -> None:
        seen.set("inside")
        steps.append("ran")

    tasks: set[asyncio.Task[None]] = set()
    run_eagerly(plain(), tasks)
    assert steps == ["ran"] and not tasks
    assert seen.get() == "-"  # what it set stays in its own context


async def test_a_coroutine_that_suspends_is_carried_on_by_a_task() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waits() -> None:
        seen.set("inside")
        steps.append(await gate)
        await asyncio.sleep(0)  # a bare yield
        steps.append(seen.get())

    tasks: set[asyncio.Task[None]] = set()
    run_eagerly(waits(), tasks)
    assert steps == [] and len(tasks) == 1
    gate.set_result("woke")
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert steps == ["woke", "inside"] and not tasks
    assert seen.get() == "-"


async def test_cancelling_the_task_reaches_the_coroutine() -> None:
    cancelled = asyncio.Event()

    async def waits() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    tasks: set[asyncio.Task[None]] = set()
    run_eagerly(waits(), tasks)
    (task,) = tasks
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()

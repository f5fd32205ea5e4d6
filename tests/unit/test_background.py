"""stop_task ends background loops, even one that swallows a cancellation (as redis-py can)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from ssehub.background import stop_task


async def test_stops_a_loop_that_absorbs_the_first_cancel() -> None:
    absorbed = asyncio.Event()

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if absorbed.is_set():
                    raise
                absorbed.set()  # swallowed, like a cancel landing inside a redis-py command

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task), 3)
    assert absorbed.is_set()
    assert task.cancelled()


async def test_gives_up_after_the_grace_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async def immortal() -> None:
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = asyncio.create_task(immortal(), name="immortal")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="ssehub"):
        await asyncio.wait_for(stop_task(task, grace=0.5), 3)
    assert not task.done()
    assert "immortal did not stop" in caplog.text
    task.get_coro().close()  # type: ignore[union-attr]


async def test_reports_a_loop_that_had_failed(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken(), name="broken")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="ssehub"):
        await stop_task(task)
    assert "broken had failed: RuntimeError('boom')" in caplog.text
    await stop_task(None)  # nothing started: nothing to do

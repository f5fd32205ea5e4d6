"""Stopping the hub's background loops (heartbeats, watchdogs, keep-alives) reliably."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("ssehub")


async def stop_task(task: asyncio.Task[Any] | None, *, grace: float = 5.0) -> None:
    """Cancel ``task`` and wait until it has ended (at most ``grace`` seconds).

    redis-py can absorb a cancellation that lands inside a command, and a loop around it then
    carries on: so the cancel is repeated until the task ends. A shutdown must never hang on it.
    """
    if task is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while not task.done():
        if loop.time() > deadline:
            log.warning("background task %s did not stop in %.0f s", task.get_name(), grace)
            return
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("background task %s had failed: %r", task.get_name(), exc)

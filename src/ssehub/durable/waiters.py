"""Wake-ups of live readers: local futures per stream path, fed from every hub process.

A reader takes the path's current future *before* it reads the store, so an append committed
between its read and its wait still wakes it. Appends on any process reach the others as events
of the reserved ``$ds`` channel of the broker (``Hub.tap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from ..event import Event, make_event
from ..hub import Hub

log = logging.getLogger("ssehub.durable")

WAKE_CHANNEL = "$ds"
WAKE_EVENT = "append"


@dataclass(slots=True)
class _Slot:
    future: asyncio.Future[None]
    readers: int = 0


class Waiters:
    """Per-path futures that local live readers await; resolved on every append or close."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    @contextlib.contextmanager
    def watching(self, path: str) -> Iterator[None]:
        """Keep ``path``'s slot while a reader may wait on it."""
        slot = self._slots.get(path)
        if slot is None:
            slot = self._slots[path] = _Slot(asyncio.get_running_loop().create_future())
        slot.readers += 1
        try:
            yield
        finally:
            slot.readers -= 1
            if slot.readers <= 0 and self._slots.get(path) is slot:
                del self._slots[path]

    def current(self, path: str) -> asyncio.Future[None]:
        """The future the next append to ``path`` resolves (inside ``watching``)."""
        return self._slots[path].future

    def wake(self, path: str) -> None:
        """Resolve ``path``'s future and arm a new one."""
        slot = self._slots.get(path)
        if slot is None:
            return
        if not slot.future.done():
            slot.future.set_result(None)
        slot.future = asyncio.get_running_loop().create_future()

    @property
    def watched(self) -> int:
        """Paths with a local live reader."""
        return len(self._slots)


async def wait(future: asyncio.Future[None], timeout: float) -> bool:
    """True when ``future`` resolved within ``timeout`` seconds."""
    if timeout <= 0:
        return future.done()
    try:
        await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        return False
    return True


class Wakeups:
    """Wake local readers now and readers of other processes through the broker."""

    def __init__(self, hub: Hub, waiters: Waiters) -> None:
        self.hub = hub
        self.waiters = waiters

    async def start(self) -> None:
        """Receive the wake-ups of other processes."""
        await self.hub.tap(WAKE_CHANNEL, self._on_event)

    def _on_event(self, event: Event) -> None:
        try:
            path = orjson.loads(event.data)["path"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        self.waiters.wake(path)

    async def notify(self, path: str, tail: int) -> None:
        """An append or close of ``path`` committed: wake its readers everywhere."""
        self.waiters.wake(path)
        try:
            await self.hub.publish(
                make_event(WAKE_CHANNEL, WAKE_EVENT, {"path": path, "tail": tail})
            )
        except Exception:  # the data is stored; remote readers find it at their next check
            log.warning("could not publish the wake-up of %s", path, exc_info=True)

"""The Durable Streams service of one hub process: its store, live-reader wake-ups and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..background import stop_task
from ..hub import Hub
from ..settings import Settings
from ..store import Store
from .metrics import DurableMetrics
from .sql import SqlDurableStore
from .store import DurableStore, ReadResult, StreamMeta
from .waiters import Waiters, Wakeups

log = logging.getLogger("ssehub.durable")

SWEEP_SECONDS = 60.0
SWEEP_BATCH = 500


class DurableStreams:
    """What the routes share: settings, the store, the waiters and the wake-ups."""

    def __init__(self, settings: Settings, hub: Hub, *, store: DurableStore | None = None) -> None:
        self.settings = settings
        self.hub = hub
        self.store: DurableStore = store or SqlDurableStore(
            Store(
                settings.ds_database_url or settings.database_url,
                schema=settings.database_schema,
                auto_migrate=settings.database_auto_migrate,
            )
        )
        self.waiters = Waiters()
        self.wakeups = Wakeups(hub, self.waiters)
        self.metrics = DurableMetrics(hub.metrics.registry)
        self._sweeper: asyncio.Task[None] | None = None
        self.used = False  # no sweep (nor migration) for a process that never served a stream
        self._reads: dict[tuple[int, int], asyncio.Future[ReadResult]] = {}

    async def start(self) -> None:
        """Open the store, listen for other processes' appends, start the expiry sweeper."""
        await self.store.start()
        await self.wakeups.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ssehub-ds-sweeper")

    async def close(self) -> None:
        """Stop the sweeper and close the store."""
        await stop_task(self._sweeper)
        await self.store.close()

    async def read(self, meta: StreamMeta, after_seq: int) -> ReadResult:
        """A read of the store shared by every local reader asking for the same position now.

        An append wakes all live readers of a stream at once, mostly at the same position: one
        query answers them all (only while it runs, so nobody gets an older answer).
        """
        key = (meta.id, after_seq)
        pending = self._reads.get(key)
        if pending is None:
            pending = asyncio.ensure_future(
                self.store.read(meta, after_seq, max_bytes=self.settings.ds_max_read_bytes)
            )
            self._reads[key] = pending
            pending.add_done_callback(lambda _: self._reads.pop(key, None))
        return await asyncio.shield(pending)

    async def _sweep_forever(self) -> None:
        """Remove expired streams in bounded batches (reads also drop them on sight)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            if self.used:
                await self._sweep()

    async def _sweep(self) -> None:
        with contextlib.suppress(Exception):
            for _ in range(100):  # at most 100 batches a round
                if await self.store.sweep(limit=SWEEP_BATCH) < SWEEP_BATCH:
                    return

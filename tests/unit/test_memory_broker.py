"""Memory-broker specifics beyond the shared broker contract."""

from __future__ import annotations

import asyncio

from ssehub.brokers import MemoryBroker
from ssehub.channels import Selector
from ssehub.event import make_event


async def test_a_channel_forgotten_whole_still_reports_a_gap_when_reused() -> None:
    broker = MemoryBroker(history_ttl=0.2)
    await broker.start(lambda event: None)
    try:
        before = await broker.head()
        await broker.publish(make_event("gone", "e", "expires unseen"))
        async with asyncio.timeout(5):
            while broker._logs:  # the sweeper drops the expired channel whole
                await asyncio.sleep(0.05)
        await broker.publish(make_event("gone", "e", "new"))
        history = await broker.history(Selector.of(["gone"]), before)
        assert history.gap
        assert [e.data for e in history.events] == ["new"]
    finally:
        await broker.close()

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


async def test_total_bytes_are_bounded_by_forgetting_the_least_recent_channels() -> None:
    broker = MemoryBroker(max_bytes=20_000)
    await broker.start(lambda event: None)
    try:
        start = await broker.head()
        for i in range(100):
            await broker.publish(make_event(f"c{i}", "e", "x" * 1000))
        assert broker._bytes <= 20_000
        assert list(broker._logs)[-1] == "c99" and "c0" not in broker._logs
        assert (await broker.history(Selector.of(["c0"]), start)).gap
        assert (await broker.history(Selector.of(["c*"]), start)).gap
        # One channel alone over the bound keeps its newest events.
        for i in range(100):
            await broker.publish(make_event("big", "e", str(i) * 1000))
        assert broker._bytes <= 20_000 and list(broker._logs) == ["big"]
        assert (await broker.recent(Selector.of(["big"]), limit=1))[0].data == "99" * 1000
    finally:
        await broker.close()

"""Runs on the publish and resume paths; the run state itself lives in :mod:`ssehub.runstate`.

The names of ``ssehub.runstate`` are importable from here too.
"""

from __future__ import annotations

from typing import Protocol

from . import runstate
from .brokers.base import Broker, format_id, parse_id
from .channels import Selector
from .event import Event
from .runstate import *  # noqa: F403
from .runstate import MemoryRunStore, RunStore

MemoryRuns = MemoryRunStore  # its former name

__all__ = [*runstate.__all__, "MemoryRuns", "publish_event", "snapshot_tail"]


class PublishDoor(Protocol):
    """Where publishes enter: :meth:`ssehub.hub.Hub.publish`."""

    async def publish(self, event: Event, *, key: str | None = None) -> Event:
        """Publish ``event`` with the run lifecycle."""


async def publish_event(hub: PublishDoor, event: Event, key: str | None = None) -> Event:
    """``hub.publish(event, key=key)``, under its former name."""
    return await hub.publish(event, key=key)


async def snapshot_tail(
    broker: Broker, runs: RunStore, selector: Selector, after: str
) -> tuple[list[Event], list[Event]]:
    """Snapshots of ``selector``'s runs and the events after them that they do not cover.

    History is read again from the oldest snapshot's position, and each channel skips what its
    own snapshot already contains, so the client ends with exactly the published text.
    """
    snaps = await runs.snapshots(selector)
    if not snaps:
        return [], []
    oldest = min(snap.seq for snap in snaps)
    history = await broker.history(selector, format_id(broker.epoch, oldest))
    if history.gap:
        return snaps, []
    cut = {snap.channel: snap.seq for snap in snaps}
    parsed = parse_id(after)
    floor = parsed[1] if parsed else 0
    return snaps, [e for e in history.events if e.seq > cut.get(e.channel, floor)]

"""Run state in this process's memory: right for one process with the memory broker."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from ..background import stop_task
from ..channels import Selector
from ..event import Event
from .base import MAX_ENDED_IDS, Publish, RunState, end_silent_run
from .rules import (
    RunTimes,
    StageMessage,
    complete_message,
    opens_run,
    resolve_run,
    run_id_to_add,
    stage_channel,
)

MAX_RUNS = 10_000


class MemoryRunStore:
    """The RunStore of one process, bounded to the latest ``MAX_RUNS`` runs.

    A run untouched for ``times.keep`` seconds is forgotten, as its Redis keys expire.
    """

    def __init__(self, times: RunTimes | None = None) -> None:
        self.times = times or RunTimes()
        self._keep = self.times.keep
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        self._watchdog: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def get(self, channel: str) -> RunState | None:
        return self._kept(channel)

    def set_retention(self, event: Event) -> None:
        self.times.set_retention(event)

    async def check(self, event: Event) -> str | None:
        message = StageMessage.read(event)
        if message is None:
            return None
        run = self._kept(event.channel)
        if run is None:
            rid = resolve_run(None, "", [], message)
        else:
            rid = resolve_run(run.status, run.run_id, run.ended, message)
        return run_id_to_add(message, rid)

    async def before(self, event: Event) -> None:
        await complete_message(self, event)

    async def after(self, event: Event) -> None:
        await self.observe(event)

    async def observe(self, event: Event) -> None:
        message = StageMessage.read(event)
        if message is None:
            return
        now = time.monotonic()
        run = self._kept(event.channel, now)
        if run is None or opens_run(run.status, run.run_id, message):
            run = self._open(event.channel, run, message.run_id)
        elif run.status != "running":
            return  # ended: what did not open the next run changes nothing
        self._runs.move_to_end(event.channel)
        run.touched = now
        if event.seq > run.last_seq:
            run.last_seq, run.last_id = event.seq, event.id
        fields, text, added, outcome = message.changes()
        for name, value in fields.items():
            setattr(run, name, value)
        if text is not None:
            run.parts[:] = [text]
        elif added:
            run.parts.append(added)
        if outcome is not None:
            run.status = outcome

    def _open(self, channel: str, previous: RunState | None, run_id: str | None) -> RunState:
        """A new run on ``channel`` replacing ``previous`` (whose id it remembers as ended)."""
        _, project, stage = stage_channel(channel)  # type: ignore[misc]
        ended = previous.ended if previous is not None else []
        if previous is not None and previous.run_id != run_id:
            ended = [*ended, previous.run_id][-MAX_ENDED_IDS:]
        run = RunState(channel=channel, project_id=project, stage=stage, ended=ended)
        run.run_id = run_id or run.run_id
        self._runs[channel] = run
        while len(self._runs) > MAX_RUNS:
            self._runs.popitem(last=False)
        return run

    def _kept(self, channel: str, now: float | None = None) -> RunState | None:
        """The run of ``channel`` unless it was untouched longer than it is kept."""
        run = self._runs.get(channel)
        if run is not None and run.touched < (now or time.monotonic()) - self._keep:
            del self._runs[channel]
            return None
        return run

    async def snapshots(self, selector: Selector) -> list[Event]:
        found = {c for c in selector.channels if c in self._runs}
        projects = {project_of(p) for p in selector.patterns} - {None}
        if projects:
            found.update(
                name
                for name in self._runs
                if project_of(name) in projects and selector.covers(name)
            )
        runs = [self._kept(channel) for channel in sorted(found)]
        return [run.snapshot_event() for run in runs if run is not None and run.last_id]

    # -- publisher timeout ---------------------------------------------------------------------

    async def start(self, publish: Publish) -> None:
        self.loop = asyncio.get_running_loop()
        self._watchdog = asyncio.create_task(self._sweep_forever(publish), name="ssehub-runs")

    async def close(self) -> None:
        await stop_task(self._watchdog)

    async def _sweep_forever(self, publish: Publish) -> None:
        """Every interval: forget runs kept long enough, end those silent too long."""
        timeout = self.times.publisher_timeout
        while True:
            await asyncio.sleep(self.times.watch_interval)
            self._forget_old()
            if timeout <= 0:
                continue
            cutoff = time.monotonic() - timeout
            for run in [r for r in self._runs.values() if not r.finished and r.touched < cutoff]:
                await end_silent_run(publish, run)

    def _forget_old(self) -> None:
        """Drop runs untouched longer than they are kept (their full text goes with them)."""
        cutoff = time.monotonic() - self._keep
        for channel in [c for c, r in self._runs.items() if r.touched < cutoff]:
            del self._runs[channel]


def project_of(name: str) -> tuple[str, str] | None:
    """(prefix, project) of a stage channel or of a pattern within one project, else None."""
    parsed = stage_channel(name)
    if parsed is None or "*" in parsed[0] + parsed[1]:
        return None
    return parsed[0], parsed[1]

"""A stream of one run: the events of its channel that carry its run id, ending with the run.

It answers ``POST .../execute_stage/stream/``: a real subscription of the stage channel (so the
events and ids are the channel's, and a client resumes there with Last-Event-ID), filtered to
one run and closed after that run's ``done`` or ``error``.
"""

from __future__ import annotations

import orjson

from . import messages
from .connection import NOTHING, Connection
from .event import Event

RUN_ENDED = "run_ended"


class RunConnection(Connection):
    """A Connection that receives one run's events and closes after its terminal event."""

    __slots__ = ("run_id",)

    def __init__(self, *, run_id: str, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.run_id = run_id

    def keep_opening_frame_only(self) -> None:
        """Drop what ``Hub.open`` queued after ``connected`` (an earlier run's snapshot)."""
        kept = self.queued[:1]
        self.buffer = kept[0] if kept else NOTHING

    def push(self, event: Event) -> None:
        if event.event not in messages.STAGE_TYPES or not self._of_run(event):
            return
        super().push(event)
        if event.event in messages.TERMINAL_TYPES:
            self.close(RUN_ENDED)

    def _of_run(self, event: Event) -> bool:
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return False
        return isinstance(data, dict) and data.get("run_id") == self.run_id

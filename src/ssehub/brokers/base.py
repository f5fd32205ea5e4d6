"""The Broker protocol: the seam between one hub process and the backplane.

A broker assigns event ids, keeps bounded history for resume and delivers every published event
to the hub of every process through one callback. Ids are ``<epoch>-<seq>``: ``seq`` is one
sequence over all channels of the backplane, so a stream over many channels or a pattern resumes
from a single id; ``epoch`` changes when the backplane loses its history, so a resume across that
loss is told apart from "caught up" and answered with a ``reset``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..channels import Selector
from ..event import Event

EventHandler = Callable[[Event], None]
GapHandler = Callable[[set[str]], None]


def format_id(epoch: str, seq: int) -> str:
    """The public event id for a position."""
    return f"{epoch}-{seq}"


def parse_id(event_id: str) -> tuple[str, int] | None:
    """Split an event id into (epoch, seq); None when it is not one of ours."""
    epoch, sep, seq = event_id.rpartition("-")
    if not sep or not epoch or not seq.isascii() or not seq.isdigit() or len(seq) > 19:
        return None
    return epoch, int(seq)


@dataclass(slots=True)
class History:
    """Events after a position, oldest first; ``gap`` when some of them are no longer kept.

    ``resume_from`` is set when the position is of another epoch: ``events`` are then every kept
    event of the current epoch, from that position on (a gap otherwise restarts at the head).
    """

    events: list[Event] = field(default_factory=list)
    gap: bool = False
    resume_from: str | None = None


class PublishStep(Protocol):
    """What a store does with a publish (the run state: ``RunStore``), which the broker runs
    with it: atomically with the append where it can, else ``before`` and ``after`` around it."""

    async def before(self, event: Event) -> None:
        """Refuse ``event`` (raise) or complete it; runs before a replay is recognised."""

    async def after(self, event: Event) -> None:
        """Take in the stored event (never a replay)."""


@runtime_checkable
class Broker(Protocol):
    """What the hub needs from a backplane; memory and Redis implement it alike."""

    @property
    def epoch(self) -> str:
        """The current epoch of the backplane's ids."""

    async def start(self, on_event: EventHandler, on_gap: GapHandler | None = None) -> None:
        """Connect and start delivering published events to ``on_event``.

        ``on_gap(names)`` is called when live delivery of those listened channels and patterns
        may have skipped events it can no longer recover (history trimmed or the backplane
        reset during an outage), so the hub can send their streams through a resume.
        """

    async def close(self) -> None:
        """Stop delivering and release connections."""

    async def publish(
        self,
        event: Event,
        *,
        idempotency_key: str | None = None,
        step: PublishStep | None = None,
    ) -> Event:
        """Assign an id, store the event in history and fan it out; returns the stored event.

        With an ``idempotency_key`` seen within the window, returns the first event instead, as
        a new object: the caller tells a replay by ``stored is not event``. ``step`` runs with
        the publish: its refusal raises before anything is stored, a replay is not taken in.
        """

    async def history(self, selector: Selector, after: str, *, limit: int | None = None) -> History:
        """Kept events of ``selector``'s channels with an id after ``after``, oldest first."""

    async def recent(self, selector: Selector, *, limit: int) -> list[Event]:
        """The latest ``limit`` kept events of ``selector``'s channels, oldest first."""

    async def head(self) -> str:
        """The id of the newest event on the backplane (a position a new stream starts from)."""

    async def listen(self, name: str) -> None:
        """This process has a local subscriber for a channel or pattern."""

    async def unlisten(self, name: str) -> None:
        """This process no longer has a local subscriber for a channel or pattern."""


@runtime_checkable
class HealthChecker(Protocol):
    """Optional power of a broker: report whether it can accept events now."""

    async def healthy(self) -> bool:
        """True when publishes would succeed."""

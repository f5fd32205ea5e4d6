"""One chat answer read from its conversation channel, for the protocol adapters (AI SDK, AG-UI).

The chat publishes ``ai_response_start``, ``ai_response_chunk`` (each with the text so far),
then ``ai_response_complete`` or ``conversation_error``. :class:`AnswerFollower` turns those
events of one answer into three steps a protocol encodes: ``opened`` (with the text a joining
client lacks), ``delta`` and ``ended``. :func:`locate_answer` finds where an answer's events sit
in the channel history, so a late joiner is positioned on them by the hub's ordinary resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .brokers.base import format_id, parse_id
from .channels import Selector
from .event import Event
from .relay import Translation
from .sdk.parser import ServerSentEvent

START = "ai_response_start"
CHUNK = "ai_response_chunk"
COMPLETE = "ai_response_complete"
ERROR = "conversation_error"
ANSWER_EVENTS = frozenset({START, CHUNK, COMPLETE, ERROR})
ENDS = frozenset({COMPLETE, ERROR})


@dataclass(slots=True)
class Ending:
    """How an answer ended: ``complete``, ``cancelled`` or ``error`` (with its message)."""

    status: str
    text: str
    error: str | None = None
    code: str | None = None


class AnswerSteps(Protocol):
    """What a protocol does with an answer: encode its opening, its deltas and its end."""

    def opened(self, message_id: int, text: str, event_id: str) -> list[bytes]:
        """The answer begins for this client; ``text`` is what it already says (late join)."""

    def delta(self, text: str, event_id: str) -> list[bytes]:
        """More text."""

    def ended(self, ending: Ending, event_id: str) -> list[bytes]:
        """The answer's last frames."""


def event_data(data: str) -> dict[str, Any]:
    """The JSON object of a chat event (empty when it is not one)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


class AnswerFollower(Translation):
    """Feeds one answer's hub events to ``steps``; other answers' events are skipped.

    A stream starting mid-answer opens with the whole text so far; after :meth:`reopen` (a
    reconnect whose client holds the text up to there) only deltas follow. ``terminator`` ends
    the protocol's stream.
    """

    def __init__(
        self,
        steps: AnswerSteps,
        message_id: int | None,
        *,
        terminator: bytes = b"",
    ) -> None:
        self.steps = steps
        self.message_id = message_id
        self.terminator = terminator
        self.open = False
        self.done = False

    def closing(self) -> bytes:
        return self.terminator

    def reopen(self, message_id: int, event_id: str) -> list[bytes]:
        """Open the answer for a client that already holds its text up to ``event_id``."""
        self.message_id, self.open = message_id, True
        return self.steps.opened(message_id, "", event_id)

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        """The protocol frames for one hub event."""
        if self.done or event.event not in ANSWER_EVENTS:
            return []
        data = event_data(event.data)
        message_id = data.get("message_id")
        if self.message_id is None and event.event == START:
            self.message_id = message_id
        if message_id != self.message_id or not isinstance(message_id, int):
            return []
        out: list[bytes] = []
        if not self.open:
            self.open = True
            out += self.steps.opened(message_id, self._text_before(event.event, data), event.id)
        if event.event == CHUNK:
            out += self.steps.delta(str(data.get("content") or ""), event.id)
        elif event.event in ENDS:
            self.done = True
            out += self.steps.ended(ending_of(event.event, data), event.id)
        return out

    def _text_before(self, kind: str, data: dict[str, Any]) -> str:
        """The text a client joining at this event lacks (all of it before this event)."""
        if kind == START:
            return ""
        if kind == CHUNK:
            whole = str(data.get("accumulated_content") or "")
            return whole[: len(whole) - len(str(data.get("content") or ""))]
        return str(data.get("final_content") or data.get("partial_content") or "")


def ending_of(kind: str, data: dict[str, Any]) -> Ending:
    """The Ending an ``ai_response_complete`` or ``conversation_error`` describes."""
    if kind == COMPLETE:
        return Ending(str(data.get("status") or "complete"), str(data.get("final_content") or ""))
    return Ending(
        "error",
        str(data.get("partial_content") or ""),
        str(data.get("error") or "the answer failed"),
        data.get("code"),
    )


@dataclass(slots=True)
class AnswerSpan:
    """Where one answer's events are in history: before its newest one, and how it ended."""

    message_id: int
    newest_id: str  # id of the newest kept event of the answer
    before_newest: str  # resume position just before the newest kept event of the answer
    before_first: str  # just before the oldest kept one (its start while history keeps it)
    ended: bool


async def locate_answer(
    broker: Any, channel: str, message_id: int | None, *, limit: int
) -> AnswerSpan | None:
    """The span of answer ``message_id`` (the latest answer when None) among the last ``limit``
    events of ``channel``; None when history keeps none of its events."""
    events: list[Event] = await broker.recent(Selector.of([channel]), limit=limit)
    newest: Event | None = None
    oldest: Event | None = None
    ended = False
    for event in reversed(events):
        if event.event not in ANSWER_EVENTS:
            continue
        found = event_data(event.data).get("message_id")
        if message_id is None and isinstance(found, int):
            message_id = found
        if found != message_id:
            if newest is not None:
                break  # an older answer: this one's events are all behind us
            continue
        newest = newest or event
        oldest = event
        ended = ended or event.event in ENDS
    if newest is None or oldest is None or message_id is None:
        return None
    return AnswerSpan(
        message_id, newest.id, position_before(newest), position_before(oldest), ended
    )


def position_before(event: Event) -> str:
    """The resume position whose next event is ``event``."""
    parsed = parse_id(event.id)
    epoch = parsed[0] if parsed else ""
    return format_id(epoch, event.seq - 1)

"""Chat answers as an AG-UI agent: ``RunAgentInput`` in, AG-UI events out, resumable by event id.

``POST /api/v1/ag-ui/chat`` runs the thread's new user message (thread id = conversation id).
Every event carries the id of the hub event it comes from; a client that sends it back as
``Last-Event-ID`` continues exactly: the run is re-opened at once (``RUN_STARTED``, the
message's ``TEXT_MESSAGE_START`` again) and only the text after that id follows.
``POST .../chat/join`` joins the thread's running (or latest) answer late: run start, a messages
snapshot, the re-opened message with its text so far, then the live tail. Event shapes and
encoding come from ``ag-ui-protocol``.
"""

from __future__ import annotations

from typing import Any

from ag_ui.core import (
    AssistantMessage,
    BaseEvent,
    MessagesSnapshotEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    UserMessage,
)
from ag_ui.encoder import EventEncoder
from fastapi import APIRouter, Depends, Request, Response

from ..answers import AnswerFollower, Ending
from ..auth import Principal
from ..brokers.base import parse_id
from ..chat import ChatService
from ..errors import BadRequest, Conflict
from ..event import validate_field
from ..hub import Hub
from ..relay import RelayResponse, fixed_response
from ..settings import Settings
from ..store import CANCELLED, COMPLETE, STREAMING, Conversation
from .aisdk import ui_message_id
from .answer_streams import (
    find_answer,
    join_stream,
    prompt_text,
    thread_conversation,
)
from .conversations import ERRORS, answer_stream, get_chat
from .deps import get_hub, get_principal, get_settings
from .streams import resume_id

router = APIRouter(prefix="/api/v1/ag-ui", tags=["ag-ui"])

ENCODER = EventEncoder()
RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": {"text/event-stream": {}}, "description": "AG-UI events."},
}


def frame(event: BaseEvent, event_id: str) -> bytes:
    """One AG-UI event as an SSE frame with ``id:`` (the position a reconnect resumes after)."""
    head = f"id: {validate_field('id', event_id)}\n" if event_id else ""
    return (head + ENCODER.encode(event)).encode()


class RunSteps:
    """An answer as one AG-UI run: started, its text message, then finished or failed."""

    def __init__(self, run: RunAgentInput, *, snapshot: list[Any] | None = None) -> None:
        self.run = run
        self.snapshot = snapshot  # earlier messages for a late joiner
        self.message_id = ""

    def started(self, event_id: str) -> list[bytes]:
        run = RunStartedEvent(thread_id=self.run.thread_id, run_id=self.run.run_id)
        out = [frame(run, event_id)]
        if self.snapshot is not None:
            out.append(frame(MessagesSnapshotEvent(messages=self.snapshot), event_id))
        return out

    def opened(self, message_id: int, text: str, event_id: str) -> list[bytes]:
        self.message_id = ui_message_id(message_id)
        start = TextMessageStartEvent(message_id=self.message_id, role="assistant")
        return [*self.started(event_id), frame(start, event_id), *self.delta(text, event_id)]

    def delta(self, text: str, event_id: str) -> list[bytes]:
        if not text:
            return []
        return [frame(TextMessageContentEvent(message_id=self.message_id, delta=text), event_id)]

    def ended(self, ending: Ending, event_id: str) -> list[bytes]:
        end = frame(TextMessageEndEvent(message_id=self.message_id), event_id)
        return [end, *self.outcome(ending, event_id)]

    def outcome(self, ending: Ending, event_id: str) -> list[bytes]:
        """``RUN_FINISHED`` (cancelled as its outcome) or ``RUN_ERROR``."""
        if ending.status == "error":
            error = RunErrorEvent(message=ending.error or "the answer failed", code=ending.code)
            return [frame(error, event_id)]
        finished = RunFinishedEvent(
            thread_id=self.run.thread_id,
            run_id=self.run.run_id,
            outcome=RunFinishedCancelledOutcome() if ending.status == CANCELLED else None,
        )
        return [frame(finished, event_id)]


def new_message_text(body: RunAgentInput, settings: Settings) -> str:
    """The text of the input's last message, which must be the user's."""
    last = body.messages[-1] if body.messages else None
    if not isinstance(last, UserMessage):
        raise BadRequest("the last message must be the user's new message")
    content = last.content
    if isinstance(content, str):
        return prompt_text([{"type": "text", "text": content}], settings)
    parts = [part.model_dump() for part in content or []]
    return prompt_text(parts, settings)


@router.post("/chat", responses=RESPONSES, response_model=None)
async def run_chat(
    body: RunAgentInput,
    request: Request,
    chat: ChatService = Depends(get_chat),
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> Response:
    """Answer the thread's new user message as an AG-UI run (continues one with Last-Event-ID)."""
    last_id = resume_id(request, None)
    if last_id is not None:
        return await join_chat(body, request, chat, hub, settings, principal)
    conversation = await thread_conversation(chat, body.thread_id, principal, create=True)
    content = new_message_text(body, settings)
    conn, closer, turn = await answer_stream(
        request, chat, hub, settings, conversation, content, principal
    )
    translation = AnswerFollower(RunSteps(body), turn.message_id)
    return RelayResponse(conn, translation, closer=closer)


@router.post("/chat/join", responses=RESPONSES, response_model=None)
async def join_chat(
    body: RunAgentInput,
    request: Request,
    chat: ChatService = Depends(get_chat),
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> Response:
    """Join the thread's running (or latest) answer: exactly after Last-Event-ID when sent,
    else with a prelude (run start, messages snapshot, the message so far), then live."""
    conversation = await thread_conversation(chat, body.thread_id, principal, create=False)
    await chat.reap(conversation.id)
    running = await chat.store.streaming_answer(conversation.id)
    span = await find_answer(hub, settings, conversation, running.id if running else None)
    if span is None:
        raise Conflict("no answer of this thread is kept to join: start a run")
    last_id = resume_id(request, None)
    if last_id is not None:
        if parse_id(last_id) is None:
            raise BadRequest("Last-Event-ID is not an id of this hub")
        if span.ended and not before(last_id, span.newest_id):
            return await ended_run(chat, body, span.message_id, last_id)
        conn, closer = await join_stream(request, hub, settings, principal, conversation, last_id)
        translation = AnswerFollower(RunSteps(body), span.message_id)
        # At once: the run and its message, re-opened; then only what came after that id.
        prelude = translation.reopen(span.message_id, last_id)
        return RelayResponse(conn, translation, closer=closer, prelude=prelude)
    snapshot = await earlier_messages(chat, conversation, span.message_id)
    conn, closer = await join_stream(
        request, hub, settings, principal, conversation, span.before_newest
    )
    translation = AnswerFollower(RunSteps(body, snapshot=snapshot), span.message_id)
    return RelayResponse(conn, translation, closer=closer)


def before(a: str, b: str) -> bool:
    """True when position ``a`` is older than ``b`` in one history (another epoch: unknown)."""
    pa, pb = parse_id(a), parse_id(b)
    return pa is not None and pb is not None and (pa[0] != pb[0] or pa[1] < pb[1])


async def ended_run(
    chat: ChatService, body: RunAgentInput, message_id: int, last_id: str
) -> Response:
    """A reconnect after the run's last event: the run opens and closes with its outcome."""
    stored = await chat.store.get_message(message_id)
    status = stored.status if stored is not None and stored.status != STREAMING else COMPLETE
    error = stored.error if stored is not None else None
    steps = RunSteps(body)
    frames = steps.started(last_id) + steps.outcome(Ending(status, "", error), last_id)
    return fixed_response(frames, {})


async def earlier_messages(
    chat: ChatService, conversation: Conversation, message_id: int
) -> list[Any]:
    """The thread's messages before answer ``message_id``, as AG-UI messages."""
    found: list[Any] = []
    for message in await chat.store.messages(conversation.id, last=chat.history_messages):
        if message.id >= message_id or not message.content:
            continue
        if message.role == "user":
            found.append(UserMessage(id=ui_message_id(message.id), content=message.content))
        elif message.role == "assistant":
            found.append(AssistantMessage(id=ui_message_id(message.id), content=message.content))
    return found

"""The Vercel AI SDK's chat endpoint: ``useChat`` with its default HTTP transport, resume and stop.

``POST /api/v1/ai-sdk/chat`` takes the SDK's request body (chat id, UI messages, trigger) and
answers with the UI message stream protocol; the chat id is the ssehub conversation's id.
``GET .../{id}/stream`` is the SDK's reconnect request: 204 when no answer is running, else the
running answer from its start (as one delta), then live, from any hub process. ``POST
.../{id}/stop`` stops the model call; the answer is saved as ``cancelled``.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..answers import AnswerFollower, Ending
from ..auth import Principal
from ..chat import ChatService
from ..errors import BadRequest
from ..hub import Hub
from ..relay import RelayResponse
from ..settings import Settings
from .answer_streams import (
    find_answer,
    join_stream,
    prompt_text,
    thread_conversation,
)
from .conversations import ERRORS, Cancelled, answer_stream, get_chat
from .deps import get_hub, get_principal, get_settings

router = APIRouter(prefix="/api/v1/ai-sdk/chat", tags=["ai-sdk"])

UI_MESSAGE_STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
DONE = b"data: [DONE]\n\n"
STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "A UI message stream."},
    204: {"description": "No answer is running in this chat."},
}


class UIMessage(BaseModel):
    """One message of the SDK's request (only ``role`` and the text parts are read)."""

    id: str = Field("", max_length=200)
    role: Literal["system", "user", "assistant"]
    parts: list[Any] = Field(default_factory=list, max_length=1000)

    model_config = ConfigDict(extra="allow")


class ChatRequest(BaseModel):
    """The body ``DefaultChatTransport`` sends (or ``message`` alone, as its docs suggest)."""

    id: str = Field(max_length=200, description="The chat id: the ssehub conversation's id.")
    messages: list[UIMessage] = Field(default_factory=list, max_length=10_000)
    message: UIMessage | None = None
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(None, max_length=200)  # the SDK spells it so

    model_config = ConfigDict(extra="allow")

    def user_message(self) -> UIMessage:
        """The new user message: ``message``, else the last of ``messages``."""
        last = self.message or (self.messages[-1] if self.messages else None)
        if last is None or last.role != "user":
            raise BadRequest("the last message must be the user's new message")
        return last


def ui_message_id(message_id: int) -> str:
    """The UI message id of a stored message (stable across resumes and processes)."""
    return f"msg-{message_id}"


def chunk(value: dict[str, Any]) -> bytes:
    """One UI message stream part as an SSE frame."""
    return b"data: " + orjson.dumps(value) + b"\n\n"


class UIMessageSteps:
    """An answer in UI message stream parts: start, text-start/delta/end, then finish or end."""

    def __init__(self) -> None:
        self.text_id = ""

    def opened(self, message_id: int, text: str, event_id: str) -> list[bytes]:
        self.text_id = f"text-{message_id}"
        out = [
            chunk({"type": "start", "messageId": ui_message_id(message_id)}),
            chunk({"type": "text-start", "id": self.text_id}),
        ]
        return out + self.delta(text, event_id)

    def delta(self, text: str, event_id: str) -> list[bytes]:
        return [chunk({"type": "text-delta", "id": self.text_id, "delta": text})] if text else []

    def ended(self, ending: Ending, event_id: str) -> list[bytes]:
        out = [chunk({"type": "text-end", "id": self.text_id})]
        if ending.status == "error":
            out.append(chunk({"type": "error", "errorText": ending.error or "the answer failed"}))
        elif ending.status == "cancelled":
            out.append(chunk({"type": "abort", "reason": ending.error or "cancelled"}))
        else:
            out.append(chunk({"type": "finish", "finishReason": "stop"}))
        return out


def ui_message_stream(message_id: int | None) -> AnswerFollower:
    """One answer's hub events as a UI message stream, ended by ``[DONE]``."""
    return AnswerFollower(UIMessageSteps(), message_id, terminator=DONE)


@router.post("", responses={**ERRORS, 200: STREAM_RESPONSE[200]}, response_model=None)
async def chat_endpoint(
    body: ChatRequest,
    request: Request,
    chat: ChatService = Depends(get_chat),
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> RelayResponse:
    """Answer the chat's new user message as a UI message stream (the conversation is stored)."""
    if body.trigger == "regenerate-message":
        raise BadRequest("regenerating an answer is not supported: send the message again")
    content = prompt_text(body.user_message().parts, settings)
    conversation = await thread_conversation(chat, body.id, principal, create=True)
    conn, closer, turn = await answer_stream(
        request, chat, hub, settings, conversation, content, principal
    )
    translation = ui_message_stream(turn.message_id)
    return RelayResponse(conn, translation, closer=closer, headers=UI_MESSAGE_STREAM_HEADERS)


@router.get("/{chat_id}/stream", responses={**ERRORS, **STREAM_RESPONSE}, response_model=None)
async def resume_stream(
    chat_id: str,
    request: Request,
    answer: str | None = Query(
        None, max_length=40, description="Rejoin this answer (`msg-N`) even after it ended."
    ),
    chat: ChatService = Depends(get_chat),
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> Response:
    """The SDK's reconnect: the running answer from its start, then live; 204 when none runs.

    With ``?answer=msg-N`` a finished answer is replayed too while history keeps its events.
    """
    conversation = await thread_conversation(chat, chat_id, principal, create=False)
    await chat.reap(conversation.id)
    wanted = parse_answer_id(answer)
    if wanted is None:
        running = await chat.store.streaming_answer(conversation.id)
        if running is None:
            return Response(status_code=204)
        wanted = running.id
    span = await find_answer(hub, settings, conversation, wanted)
    if span is not None:
        position = span.before_newest
    elif answer is None:
        position = await hub.head()  # running, nothing published yet: all of it is live
    else:
        return Response(status_code=204)
    conn, closer = await join_stream(request, hub, settings, principal, conversation, position)
    translation = ui_message_stream(wanted)
    return RelayResponse(conn, translation, closer=closer, headers=UI_MESSAGE_STREAM_HEADERS)


def parse_answer_id(value: str | None) -> int | None:
    """``msg-N`` (or ``N``) as a message id; 400 for anything else."""
    if value is None:
        return None
    digits = value.removeprefix("msg-")
    if not digits.isdigit() or len(digits) > 18:
        raise BadRequest("answer must be a UI message id like msg-42")
    return int(digits)


@router.post("/{chat_id}/stop", responses=ERRORS)
async def stop_answer(
    chat_id: str,
    chat: ChatService = Depends(get_chat),
    principal: Principal = Depends(get_principal),
) -> Cancelled:
    """Stop the chat's running answer at the model (saved as ``cancelled``), on any process."""
    conversation = await thread_conversation(chat, chat_id, principal, create=False)
    return Cancelled(**await chat.cancel(conversation))


class UIMessageOut(BaseModel):
    """A stored message as the SDK's UIMessage (``metadata.status``: streaming, complete, ...)."""

    id: str
    role: str
    parts: list[dict[str, Any]]
    metadata: dict[str, Any]


@router.get("/{chat_id}/messages", responses=ERRORS)
async def chat_messages(
    chat_id: str,
    chat: ChatService = Depends(get_chat),
    principal: Principal = Depends(get_principal),
) -> list[UIMessageOut]:
    """The chat's stored messages as UI messages, to pass as ``useChat``'s initial ``messages``."""
    conversation = await thread_conversation(chat, chat_id, principal, create=False)
    await chat.reap(conversation.id)
    return [
        UIMessageOut(
            id=ui_message_id(m.id),
            role=m.role,
            parts=[{"type": "text", "text": m.content}] if m.content else [],
            metadata={"status": m.status},
        )
        for m in await chat.store.messages(conversation.id)
        if m.role in ("user", "assistant")
    ]

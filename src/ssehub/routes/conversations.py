"""Conversations: CRUD, sending messages, the conversation's SSE stream and cancelling."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import HTTPConnection

from ..auth import Principal, require_subscribe
from ..channels import Selector
from ..chat import ChatService, Turn, conversation_channel, owner_of
from ..connection import Connection
from ..errors import BadRequest, Unavailable
from ..gate import Gate, client_ip
from ..hub import Hub
from ..settings import Settings
from ..store import Conversation
from ..stream import EventStreamResponse
from .deps import get_gate, get_hub, get_principal, get_settings, get_stream_principal
from .streams import (
    STREAM_RESPONSES,
    StreamOptions,
    stream_options,
)

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid body."},
    401: {"description": "Missing or invalid credentials."},
    403: {"description": "A token without `sub`: conversations need a user identity."},
    404: {"description": "No such conversation, or not the caller's."},
    409: {"description": "An answer is already streaming in this conversation."},
    429: {"description": "Too many conversations created, or answers streaming (Retry-After)."},
    503: {"description": "The conversation store is unavailable."},
}


def get_chat(request: HTTPConnection) -> ChatService:
    """The ChatService of this app."""
    return request.app.state.chat  # type: ignore[no-any-return]


class CreateConversation(BaseModel):
    """A new conversation; everything optional."""

    title: str | None = Field(None, max_length=200)
    system_prompt: str | None = Field(None, max_length=32000)
    model: str | None = Field(
        None, max_length=200, description="Model for its answers; the configured one if omitted."
    )


class SendMessage(BaseModel):
    """A user message."""

    content: str = Field(min_length=1)


class MessageOut(BaseModel):
    """A stored message."""

    id: int
    role: str
    content: str
    status: str
    error: str | None
    model: str | None
    tokens: int | None
    latency_ms: int | None
    first_token_ms: int | None
    created_at: datetime

    model_config = ConfigDict(from_attributes=True)  # read from a stored Message row


class ConversationOut(BaseModel):
    """A conversation (without its messages)."""

    id: str
    title: str | None
    system_prompt: str | None
    model: str = Field(description="Model of its answers (its own, else the configured one).")
    provider: str = Field(description="`demo` (canned answers, no model) or `openai`.")
    channel: str = Field(description="Its hub channel, streamed at `/{id}/stream`.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Conversation, chat: ChatService) -> ConversationOut:
        return cls(
            id=c.id,
            title=c.title,
            system_prompt=c.system_prompt,
            model=c.model or chat.default_model,
            provider=chat.provider.name,
            channel=conversation_channel(c.id),
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class ConversationDetail(ConversationOut):
    """A conversation with its messages, oldest first."""

    messages: list[MessageOut]


class ConversationList(BaseModel):
    """The caller's conversations, newest first."""

    conversations: list[ConversationOut]


class Accepted(BaseModel):
    """A message saved and its answer started."""

    conversation_id: str
    user_message_id: int
    message_id: int = Field(description="Id of the answer being streamed.")
    channel: str


class Cancelled(BaseModel):
    """The outcome of a cancel."""

    cancelled: bool = Field(description="False when no answer was streaming.")
    message_id: int | None


def check_content(content: str, settings: Settings) -> str:
    """Reject blank and oversized messages."""
    if not content.strip():
        raise BadRequest("content must not be blank")
    if len(content) > settings.chat_max_message_chars:
        raise BadRequest(f"content is longer than {settings.chat_max_message_chars} characters")
    return content


@router.post("", status_code=201, responses=ERRORS)
async def create_conversation(
    request: Request,
    body: CreateConversation | None = None,
    chat: ChatService = Depends(get_chat),
    gate: Gate = Depends(get_gate),
    principal: Principal = Depends(get_principal),
) -> ConversationOut:
    """Start a conversation, optionally with a system prompt and a model."""
    body = body or CreateConversation()
    owner = owner_of(principal)
    await gate.check_rate("conversation", principal, client_ip(request))
    conversation = await chat.store.create_conversation(
        owner, title=body.title, system_prompt=body.system_prompt, model=body.model
    )
    return ConversationOut.of(conversation, chat)


@router.get("", responses=ERRORS)
async def list_conversations(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    chat: ChatService = Depends(get_chat),
    principal: Principal = Depends(get_principal),
) -> ConversationList:
    """The caller's own conversations, newest first."""
    rows = await chat.store.list_conversations(owner_of(principal), limit=limit)
    return ConversationList(conversations=[ConversationOut.of(c, chat) for c in rows])


@router.get("/{conversation_id}", responses=ERRORS)
async def get_conversation(
    conversation_id: str,
    chat: ChatService = Depends(get_chat),
    principal: Principal = Depends(get_principal),
) -> ConversationDetail:
    """One of the caller's conversations with its messages."""
    conversation = await chat.owned(conversation_id, principal)
    await chat.reap(conversation.id)
    messages = await chat.store.messages(conversation.id)
    return ConversationDetail(
        **ConversationOut.of(conversation, chat).model_dump(),
        messages=[MessageOut.model_validate(m) for m in messages],
    )


@router.delete("/{conversation_id}", status_code=204, responses=ERRORS)
async def delete_conversation(
    conversation_id: str,
    chat: ChatService = Depends(get_chat),
    principal: Principal = Depends(get_principal),
) -> Response:
    """Delete one of the caller's conversations (stopping its running answer)."""
    await chat.delete(await chat.owned(conversation_id, principal))
    return Response(status_code=204)


@router.get(
    "/{conversation_id}/stream",
    responses={**STREAM_RESPONSES, 404: ERRORS[404]},
    response_model=None,
)
async def stream_conversation(
    conversation_id: str,
    options: StreamOptions = Depends(stream_options),
    chat: ChatService = Depends(get_chat),
    principal: Principal = Depends(get_stream_principal),
) -> EventStreamResponse:
    """The conversation's events: resumes mid-answer with Last-Event-ID."""
    conversation = await chat.owned(conversation_id, principal)
    channel = conversation_channel(conversation.id)
    if principal.ticket:  # a ticket reads only the channels it was issued for
        require_subscribe(principal, channel)
    # Owning the conversation is the right to read its channel.
    reader = dataclasses.replace(principal, subscribe=(channel,), admin=False)
    return await options.open([channel], reader)


@router.post("/{conversation_id}/messages", status_code=202, responses=ERRORS)
async def send_message(
    conversation_id: str,
    body: SendMessage,
    chat: ChatService = Depends(get_chat),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> Accepted:
    """Save a user message and answer it in the background, on the conversation's stream."""
    conversation = await chat.owned(conversation_id, principal)
    turn = await chat.send(conversation, check_content(body.content, settings))
    return Accepted(
        conversation_id=conversation.id,
        user_message_id=turn.user_message_id,
        message_id=turn.message_id,
        channel=conversation_channel(conversation.id),
    )


@router.post("/{conversation_id}/messages/stream", responses=ERRORS, response_model=None)
async def send_message_stream(
    request: Request,
    conversation_id: str,
    body: SendMessage,
    chat: ChatService = Depends(get_chat),
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> EventStreamResponse:
    """Send a message and receive this answer's events on the POST response (for fetch).

    The events and ids are those of the conversation's stream; the response ends with the
    answer. Closing it does not stop the answer (use ``/cancel``). It counts as a stream
    against the connection limits.
    """
    conversation = await chat.owned(conversation_id, principal)
    content = check_content(body.content, settings)
    conn, closer, _ = await answer_stream(
        request, chat, hub, settings, conversation, content, principal
    )
    return EventStreamResponse(conn, closer=closer)


async def answer_stream(
    request: Request,
    chat: ChatService,
    hub: Hub,
    settings: Settings,
    conversation: Conversation,
    content: str,
    principal: Principal,
) -> tuple[Connection, Callable[[], Awaitable[None]], Turn]:
    """Send ``content``; a connection (counted as a stream) receives this answer's events."""
    if hub.closing:
        raise Unavailable("the hub is shutting down", headers={"Retry-After": "1"})
    gate: Gate = request.app.state.gate
    ip = client_ip(request)
    conn = Connection(
        client_id=str(uuid.uuid4()),
        selector=Selector.of([conversation_channel(conversation.id)]),
        max_buffer=settings.subscriber_buffer,
        user_id=principal.user_id,
        info={"ip": ip, "user_agent": request.headers.get("user-agent", "")},
    )
    await gate.check_rate("stream", principal, ip)
    await gate.admit(conn, principal)
    try:
        turn = await chat.send(conversation, content, listener=conn)
    except BaseException:
        await gate.release(conn)
        raise
    # Counted by the hub (not subscribed): heartbeats, idle timeout, SIGTERM and stats reach it.
    hub.register(conn)

    async def forget() -> None:
        turn.listeners.discard(conn)
        await hub.detach(conn)
        await gate.release(conn)

    return conn, forget, turn


@router.post("/{conversation_id}/cancel", responses=ERRORS)
async def cancel_answer(
    conversation_id: str,
    chat: ChatService = Depends(get_chat),
    principal: Principal = Depends(get_principal),
) -> Cancelled:
    """Stop the running answer; its partial text is saved with status `cancelled`."""
    result = await chat.cancel(await chat.owned(conversation_id, principal))
    return Cancelled(**result)

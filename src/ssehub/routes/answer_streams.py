"""What the protocol endpoints (AI SDK, AG-UI) share: a client's chat id as a conversation and a
stream joining an answer already in the channel's history (a new answer's stream is
``conversations.answer_stream``)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from ..answers import ANSWER_EVENTS, AnswerSpan, locate_answer
from ..auth import Principal
from ..chat import ChatService, conversation_channel, owner_of
from ..connection import Connection
from ..errors import BadRequest, NotFound
from ..hub import Hub
from ..settings import Settings
from ..store import Conversation, StoreUnavailable
from .conversations import check_content
from .streams import open_stream

CHAT_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_PROMPT_PARTS = 1000

Closer = Callable[[], Awaitable[None]]


async def thread_conversation(
    chat: ChatService, chat_id: str, principal: Principal, *, create: bool
) -> Conversation:
    """The caller's conversation with id ``chat_id``, created on first use when ``create``."""
    if not CHAT_ID.fullmatch(chat_id):
        raise BadRequest("the chat id must be 1-32 characters from A-Z a-z 0-9 _ -")
    try:
        return await chat.owned(chat_id, principal)
    except NotFound:
        if not create or await chat.store.get_conversation(chat_id) is not None:
            raise
    try:
        return await chat.store.create_conversation(owner_of(principal), conversation_id=chat_id)
    except StoreUnavailable:
        return await chat.owned(chat_id, principal)  # created by a concurrent first message


def prompt_text(parts: list[Any], settings: Settings) -> str:
    """The text of a message's parts (text parts joined), checked like a chat message."""
    texts = [
        str(part.get("text") or "")
        for part in parts[:MAX_PROMPT_PARTS]
        if isinstance(part, dict) and part.get("type") == "text"
    ]
    return check_content("".join(texts), settings)


async def find_answer(
    hub: Hub, settings: Settings, conversation: Conversation, message_id: int | None
) -> AnswerSpan | None:
    """Where answer ``message_id`` (the latest when None) is in its channel's history."""
    limit = max(1, settings.history_size)
    return await locate_answer(
        hub.broker, conversation_channel(conversation.id), message_id, limit=limit
    )


async def join_stream(
    request: Request,
    hub: Hub,
    settings: Settings,
    principal: Principal,
    conversation: Conversation,
    position: str,
) -> tuple[Connection, Closer]:
    """A stream of the conversation's answer events after ``position`` (history, then live)."""
    channel = conversation_channel(conversation.id)
    # Owning the conversation is the right to read its channel.
    reader = dataclasses.replace(principal, subscribe=(channel,), admin=False)
    response = await open_stream(
        request,
        hub=hub,
        settings=settings,
        principal=reader,
        names=[channel],
        types=ANSWER_EVENTS,
        last_event_id=position,
    )
    return response.conn, response.closer

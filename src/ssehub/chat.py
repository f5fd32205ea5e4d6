"""The chat service: a user message in, the model's answer streamed through the hub and stored.

Every event of a conversation is published on the hub channel ``conversation:{id}`` (the chat
names: ``user_message``, ``ai_response_start``, ``ai_response_chunk``, ``ai_response_complete``,
``conversation_error``), so streams resume mid-answer with Last-Event-ID like any channel. The
answer is written once when it ends; while it streams, the partial text is written at most every
``checkpoint_seconds`` so a crash leaves it recoverable. Each answer ends with exactly one of
``ai_response_complete`` (status ``complete`` or ``cancelled``) or ``conversation_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .auth import CHALLENGE, Principal
from .background import stop_task
from .connection import Connection
from .errors import Conflict, Forbidden, HubError, NotFound, Unauthorized
from .event import Event, make_event
from .gate import Gate
from .hub import Hub
from .llm import ChatMessage, Provider, ProviderError, provider_from_settings
from .llm.base import Usage
from .settings import Settings
from .store import CANCELLED, COMPLETE, ERROR, Conversation, Message, Store
from .store.models import now

log = logging.getLogger("ssehub.chat")

ANONYMOUS = "anonymous"
TURN_ENDED = "turn_complete"
USER_CANCELLED = "cancelled by the user"
SHUTDOWN = "interrupted: the server shut down"
ABANDONED = "interrupted: the answer stopped being written (the server stopped or crashed)"


def owner_of(principal: Principal) -> str:
    """The owner of the caller's conversations: the token's ``sub``, ``anonymous`` with open
    access (an admin without ``sub``). Without a token (or with a ticket issued without one)
    the answer is 401; a token without ``sub`` gets 403: chat needs a real identity."""
    if not principal.authenticated:
        raise Unauthorized(
            "a token is required to use conversations", headers={"WWW-Authenticate": CHALLENGE}
        )
    if principal.user_id is not None:
        return principal.user_id
    if principal.admin:
        return ANONYMOUS
    raise Forbidden("conversations need a token with a `sub` claim (a user identity)")


def answer_holder(conversation_id: str) -> str:
    """The slot holder of the answer streaming in a conversation (one at a time)."""
    return f"answer:{conversation_id}"


def conversation_channel(conversation_id: str) -> str:
    """The hub channel of a conversation's events."""
    return f"conversation:{conversation_id}"


@dataclass(slots=True)
class Turn:
    """One answer being generated: its ids, task and direct listeners (POST streams)."""

    conversation_id: str
    model: str
    user_message_id: int = 0
    message_id: int = 0
    task: asyncio.Task[None] | None = None
    listeners: set[Connection] = field(default_factory=set)
    stop_reason: str = USER_CANCELLED
    finishing: bool = False
    status: str = ""
    owner: str = ""  # set while the turn holds one of its owner's answer slots

    async def stop(self, reason: str = USER_CANCELLED) -> None:
        """Cancel the model call (unless the answer is already being saved) and wait for the end."""
        if self.task is None:
            return
        if not self.finishing:
            self.stop_reason = reason
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class ChatService:
    """Runs answers as background tasks, publishes their events and saves them."""

    def __init__(
        self,
        store: Store,
        provider: Provider,
        hub: Hub,
        *,
        default_model: str,
        checkpoint_seconds: float = 3.0,
        history_messages: int = 50,
        lease_seconds: float = 10.0,
        gate: Gate | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.hub = hub
        self.default_model = default_model
        self.checkpoint_seconds = checkpoint_seconds
        self.history_messages = history_messages
        self.lease_seconds = lease_seconds
        self.gate = gate  # caps the answers streaming at once per user, across processes
        self.turns: dict[str, Turn] = {}
        self._reaper: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, hub: Hub, gate: Gate | None = None) -> ChatService:
        """The service the settings describe."""
        provider = provider_from_settings(settings)
        store = Store(
            settings.database_url,
            schema=settings.database_schema,
            auto_migrate=settings.database_auto_migrate,
        )
        model = "demo" if provider.name == "demo" else settings.llm_model
        return cls(
            store,
            provider,
            hub,
            default_model=model,
            checkpoint_seconds=settings.chat_checkpoint_seconds,
            history_messages=settings.chat_history_messages,
            lease_seconds=settings.chat_answer_lease_seconds,
            gate=gate,
        )

    async def start(self) -> None:
        """Prepare the store (it connects on first use) and start the reaper."""
        await self.store.start()
        self._reaper = asyncio.create_task(self._reap_forever(), name="ssehub-chat-reaper")

    async def close(self) -> None:
        """Stop running answers (saved with status ``error``), then close provider and store."""
        await stop_task(self._reaper)
        await asyncio.gather(*(turn.stop(SHUTDOWN) for turn in list(self.turns.values())))
        closer = getattr(self.provider, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
        await self.store.close()

    # -- conversations -------------------------------------------------------------------------

    async def owned(self, conversation_id: str, principal: Principal) -> Conversation:
        """The caller's conversation; NotFound for unknown ids and other users' conversations."""
        owner = owner_of(principal)  # 401/403 before anything about the id is told
        conversation = None
        if len(conversation_id) <= 32:
            conversation = await self.store.get_conversation(conversation_id)
        if conversation is None or conversation.owner != owner:
            raise NotFound(f"no conversation {conversation_id[:64]!r}")
        return conversation

    async def delete(self, conversation: Conversation) -> None:
        """Stop its running answer, then delete the conversation and its messages."""
        turn = self.turns.get(conversation.id)
        if turn is not None:
            await turn.stop()
        await self.store.delete_conversation(conversation.id)

    # -- answers -------------------------------------------------------------------------------

    async def send(
        self, conversation: Conversation, content: str, *, listener: Connection | None = None
    ) -> Turn:
        """Save the user message, publish it and start the answer in the background."""
        if conversation.id in self.turns:
            raise Conflict("an answer is still streaming in this conversation: wait or cancel it")
        turn = Turn(conversation.id, conversation.model or self.default_model)
        self.turns[conversation.id] = turn  # reserved before any await: one answer at a time
        try:
            if self.gate is not None:
                await self.gate.hold_answer(conversation.owner, answer_holder(conversation.id))
                turn.owner = conversation.owner
            await self._end_abandoned(conversation.id)
            if await self.store.streaming_answer(conversation.id) is not None:
                raise Conflict("another process is still answering in this conversation")
            history = await self.store.messages(conversation.id, last=self.history_messages)
            user, answer = await self.store.begin_turn(conversation.id, content, model=turn.model)
            turn.user_message_id, turn.message_id = user.id, answer.id
            if listener is not None:
                turn.listeners.add(listener)
            await self._publish(turn, "user_message", {"message_id": user.id, "content": content})
        except BaseException:
            self.turns.pop(conversation.id, None)
            await self._release(turn)
            raise
        prompt = build_prompt(conversation, history, content)
        turn.task = asyncio.create_task(self._run(turn, prompt), name=f"chat-{conversation.id}")
        return turn

    async def reap(self, conversation_id: str) -> None:
        """End, as interrupted, an answer that no process has written for ``lease_seconds``."""
        if conversation_id not in self.turns:
            await self._end_abandoned(conversation_id)

    async def _end_abandoned(self, conversation_id: str | None = None) -> None:
        """End abandoned answers (of one conversation, or all) and announce each one's end."""
        idle_before = now() - timedelta(seconds=self.lease_seconds)
        ended = await self.store.end_abandoned(
            idle_before, ABANDONED, conversation_id=conversation_id
        )
        for message in ended:
            if message.conversation_id in self.turns:
                continue  # answered here after all (a stalled loop): its own end follows
            event = make_event(
                conversation_channel(message.conversation_id),
                "conversation_error",
                {
                    "message_id": message.id,
                    "error": ABANDONED,
                    "code": "interrupted",
                    "partial_content": message.content,
                },
            )
            await self.hub.publish(event)

    async def _reap_forever(self) -> None:
        """End the answers of processes that died mid-answer, a lease after their last write."""
        while True:
            await asyncio.sleep(self.lease_seconds / 2)
            try:
                await self._end_abandoned()
            except Exception as exc:  # the store or broker is away: next round
                log.warning("chat: reaping abandoned answers failed: %s", exc)

    async def _keep_lease(self, turn: Turn) -> None:
        """While the answer runs, mark it as written at least every third of the lease."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            with contextlib.suppress(HubError):
                await self.store.touch_answer(turn.message_id)

    async def cancel(self, conversation: Conversation) -> dict[str, Any]:
        """Stop the running answer; its partial text is saved with status ``cancelled``."""
        turn = self.turns.get(conversation.id)
        if turn is not None and turn.task is not None:
            await turn.stop()
            return {"cancelled": turn.status == CANCELLED, "message_id": turn.message_id}
        # Answered by another process: it sees the status at its next checkpoint and stops.
        message = await self.store.end_streaming(conversation.id, CANCELLED, USER_CANCELLED)
        return {"cancelled": message is not None, "message_id": message.id if message else None}

    async def _run(self, turn: Turn, prompt: list[ChatMessage]) -> None:
        started = time.monotonic()
        text = ""
        status, error, code = COMPLETE, None, None
        first_token_ms: int | None = None
        stream = self.provider.stream(prompt, model=turn.model)
        lease = asyncio.create_task(self._keep_lease(turn), name=f"chat-lease-{turn.message_id}")
        try:
            await self._publish(
                turn,
                "ai_response_start",
                {
                    "message_id": turn.message_id,
                    "user_message_id": turn.user_message_id,
                    "model": turn.model,
                    "provider": self.provider.name,
                },
            )
            saved_at = time.monotonic()
            async for chunk in stream:
                if first_token_ms is None:
                    first_token_ms = int((time.monotonic() - started) * 1000)
                text += chunk
                data = {
                    "message_id": turn.message_id,
                    "content": chunk,
                    "accumulated_content": text,
                }
                await self._publish(turn, "ai_response_chunk", data)
                if time.monotonic() - saved_at >= self.checkpoint_seconds:
                    saved_at = time.monotonic()
                    if not await self.store.save_answer(turn.message_id, text):
                        status, error = CANCELLED, USER_CANCELLED
                        break
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            status, error = (ERROR, SHUTDOWN) if turn.stop_reason == SHUTDOWN else (CANCELLED, None)
            code = "interrupted" if status == ERROR else None
        except ProviderError as exc:
            status, error, code = ERROR, exc.message, exc.code
        except Exception as exc:
            log.exception("answer %s failed", turn.message_id)
            status, error, code = ERROR, f"internal error: {exc}", "internal_error"
        finally:
            await stop_task(lease)
            with contextlib.suppress(Exception):
                await stream.aclose()
        await self._finish(turn, text, status, error, code, started, first_token_ms, stream.usage)

    async def _finish(
        self,
        turn: Turn,
        text: str,
        status: str,
        error: str | None,
        code: str | None,
        started: float,
        first_token_ms: int | None,
        usage: Usage | None,
    ) -> None:
        turn.finishing, turn.status = True, status
        latency_ms = int((time.monotonic() - started) * 1000)
        tokens = usage.completion_tokens if usage is not None else None
        try:
            try:
                await self.store.save_answer(
                    turn.message_id,
                    text,
                    only_streaming=False,
                    status=status,
                    error=error if status != CANCELLED else (error or USER_CANCELLED),
                    tokens=tokens,
                    latency_ms=latency_ms,
                    first_token_ms=first_token_ms,
                )
            except HubError as exc:
                log.error("answer %s could not be saved: %s", turn.message_id, exc.message)
                status, error, code = (
                    ERROR,
                    f"the answer could not be saved: {exc.message}",
                    exc.code,
                )
            if status == ERROR:
                payload: dict[str, Any] = {
                    "message_id": turn.message_id,
                    "error": error,
                    "code": code,
                    "partial_content": text,
                }
                await self._publish(turn, "conversation_error", payload)
            else:
                payload = {
                    "message_id": turn.message_id,
                    "final_content": text,
                    "status": status,
                    "tokens": tokens,
                    "latency_ms": latency_ms,
                }
                await self._publish(turn, "ai_response_complete", payload)
        except Exception:
            log.exception("could not save or announce the end of answer %s", turn.message_id)
        finally:
            for listener in turn.listeners:
                listener.close(TURN_ENDED)
            self.turns.pop(turn.conversation_id, None)
            await self._release(turn)

    async def _release(self, turn: Turn) -> None:
        """Give back the answer slot of ``turn`` (if it holds one)."""
        if self.gate is not None and turn.owner:
            await self.gate.release_answer(turn.owner, answer_holder(turn.conversation_id))
            turn.owner = ""

    async def _publish(self, turn: Turn, name: str, data: dict[str, Any]) -> Event:
        event = make_event(conversation_channel(turn.conversation_id), name, data)
        stored = await self.hub.publish(event)
        for listener in turn.listeners:
            listener.push(stored)
        return stored


def build_prompt(
    conversation: Conversation, history: list[Message], content: str
) -> list[ChatMessage]:
    """System prompt, earlier messages with text, then the new user message."""
    prompt: list[ChatMessage] = []
    if conversation.system_prompt:
        prompt.append({"role": "system", "content": conversation.system_prompt})
    for message in history:
        if message.content and message.role in ("user", "assistant"):
            prompt.append({"role": message.role, "content": message.content})  # type: ignore[typeddict-item]
    prompt.append({"role": "user", "content": content})
    return prompt

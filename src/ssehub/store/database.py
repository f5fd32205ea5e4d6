"""The Store: engine lifecycle, migrations and the queries of conversations and messages."""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

# Imported with the store, not on first use: loading Alembic took ~70 ms of the event loop of
# a serving hub, a few seconds after start (the chat reaper's first round migrates).
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, CursorResult, delete, event, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..errors import Unavailable
from .models import ERROR, STREAMING, Conversation, Message, now

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_MIGRATION_LOCK = 0x55E4B  # pg advisory lock key: one process migrates at a time


class StoreUnavailable(Unavailable):
    """The database cannot be reached or refused the query."""

    code = "store_unavailable"


def upgrade_to_head(connection: Connection) -> None:
    """Run the packaged Alembic migrations on a sync ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Store:
    """Conversations and messages in SQLite (aiosqlite) or PostgreSQL (asyncpg)."""

    def __init__(self, url: str, *, schema: str | None = None, auto_migrate: bool = True) -> None:
        if schema is not None and not _SCHEMA.fullmatch(schema):
            raise ValueError(f"invalid database schema name {schema!r}")
        self.url = url
        self.schema = schema
        self.auto_migrate = auto_migrate
        self.engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    async def start(self) -> None:
        """Create the engine; nothing connects until the first query."""
        connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            connect_args["timeout"] = 30
        elif self.schema:
            connect_args["server_settings"] = {"search_path": self.schema}
        self.engine = create_async_engine(self.url, connect_args=connect_args, pool_pre_ping=True)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def close(self) -> None:
        """Dispose of the engine's connections."""
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    async def migrate(self) -> None:
        """Apply every migration up to head; several processes may start at once."""
        if self.engine is None:
            await self.start()
        for attempt in range(3):
            try:
                async with _migration_lock():
                    await self._upgrade()
                break
            except (OperationalError, DBAPIError):
                # SQLite has no migration lock: another process created the tables first.
                if attempt == 2 or not self.is_sqlite:
                    raise
                await asyncio.sleep(0.2)
        self._ready = True

    async def _upgrade(self) -> None:
        assert self.engine is not None
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
                if self.schema:
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            await conn.run_sync(upgrade_to_head)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; database failures become StoreUnavailable (503)."""
        try:
            if not self._ready and self.auto_migrate:
                async with self._ready_lock:
                    if not self._ready:
                        await self.migrate()
            assert self._sessions is not None, "Store.start() was not called"
            async with self._sessions() as session, session.begin():
                yield session
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StoreUnavailable(f"the conversation store is unavailable: {exc}") from exc

    # -- conversations -------------------------------------------------------------------------

    async def create_conversation(
        self,
        owner: str,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        model: str | None = None,
        conversation_id: str | None = None,
    ) -> Conversation:
        """Insert a new conversation of ``owner`` (with the id a client chose, when given)."""
        conversation = Conversation(
            owner=owner, title=title, system_prompt=system_prompt, model=model
        )
        if conversation_id is not None:
            conversation.id = conversation_id
        async with self.session() as session:
            session.add(conversation)
        return conversation

    async def list_conversations(self, owner: str, *, limit: int = 50) -> list[Conversation]:
        """The newest conversations of ``owner``."""
        query = (
            select(Conversation)
            .where(Conversation.owner == owner)
            .order_by(Conversation.created_at.desc(), Conversation.id)
            .limit(limit)
        )
        async with self.session() as session:
            return list((await session.scalars(query)).all())

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """One conversation by id."""
        async with self.session() as session:
            return await session.get(Conversation, conversation_id)

    async def delete_conversation(self, conversation_id: str) -> None:
        """Delete a conversation and its messages."""
        async with self.session() as session:
            await session.execute(delete(Message).where(Message.conversation_id == conversation_id))
            await session.execute(delete(Conversation).where(Conversation.id == conversation_id))

    # -- messages ------------------------------------------------------------------------------

    async def messages(self, conversation_id: str, *, last: int | None = None) -> list[Message]:
        """Messages of a conversation in order (only the ``last`` ones when given)."""
        query = select(Message).where(Message.conversation_id == conversation_id)
        if last is None:
            query = query.order_by(Message.id)
        else:
            query = query.order_by(Message.id.desc()).limit(last)
        async with self.session() as session:
            rows = list((await session.scalars(query)).all())
        return rows if last is None else rows[::-1]

    async def get_message(self, message_id: int) -> Message | None:
        """One message by id."""
        async with self.session() as session:
            return await session.get(Message, message_id)

    async def begin_turn(
        self, conversation_id: str, content: str, *, model: str
    ) -> tuple[Message, Message]:
        """Save the user's message and an empty ``streaming`` answer after it."""
        user = Message(conversation_id=conversation_id, role="user", content=content)
        answer = Message(
            conversation_id=conversation_id,
            role="assistant",
            content="",
            status=STREAMING,
            model=model,
        )
        async with self.session() as session:
            session.add(user)
            await session.flush()
            session.add(answer)
            await session.flush()
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(updated_at=now())
            )
        return user, answer

    async def save_answer(
        self, message_id: int, content: str, *, only_streaming: bool = True, **fields: Any
    ) -> bool:
        """Write an answer's text and ``fields``; False when ``only_streaming`` and it has ended."""
        query = update(Message).where(Message.id == message_id)
        if only_streaming:
            query = query.where(Message.status == STREAMING)
        query = query.values(content=content, updated_at=now(), **fields)
        async with self.session() as session:
            result = cast(CursorResult[Any], await session.execute(query))
        return bool(result.rowcount)

    async def end_streaming(self, conversation_id: str, status: str, error: str) -> Message | None:
        """End the conversation's ``streaming`` answer with its saved text; returns it, or None
        when there was none."""
        query = update(Message).where(
            Message.conversation_id == conversation_id, Message.status == STREAMING
        )
        query = query.values(status=status, error=error, updated_at=now()).returning(Message.id)
        async with self.session() as session:
            ids = list((await session.scalars(query)).all())
        return await self.get_message(ids[-1]) if ids else None

    async def touch_answer(self, message_id: int) -> bool:
        """Mark a streaming answer as still being written; False when it has ended."""
        query = (
            update(Message)
            .where(Message.id == message_id, Message.status == STREAMING)
            .values(updated_at=now())
        )
        async with self.session() as session:
            result = cast(CursorResult[Any], await session.execute(query))
        return bool(result.rowcount)

    async def end_abandoned(
        self,
        idle_before: datetime,
        error: str,
        *,
        conversation_id: str | None = None,
        limit: int = 100,
    ) -> list[Message]:
        """End, as ``error``, up to ``limit`` streaming answers not written since ``idle_before``
        (of one conversation, or of all); returns them. Each is ended by one caller only."""
        stale = select(Message.id).where(
            Message.status == STREAMING, Message.updated_at < idle_before
        )
        if conversation_id is not None:
            stale = stale.where(Message.conversation_id == conversation_id)
        query = (
            update(Message)
            .where(Message.id.in_(stale.limit(limit).scalar_subquery()))
            .where(Message.status == STREAMING)
            .values(status=ERROR, error=error, updated_at=now())
            .returning(Message)
        )
        async with self.session() as session:
            return list((await session.scalars(query)).all())

    async def streaming_answer(self, conversation_id: str) -> Message | None:
        """The conversation's answer still marked ``streaming``, if any."""
        query = (
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.status == STREAMING)
            .order_by(Message.id.desc())
            .limit(1)
        )
        async with self.session() as session:
            return (await session.scalars(query)).first()


_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _migration_lock() -> asyncio.Lock:
    """One Alembic run at a time per event loop: its ``context`` proxy is process-global."""
    loop = asyncio.get_running_loop()
    lock = _LOCKS.get(loop)
    if lock is None:
        lock = _LOCKS[loop] = asyncio.Lock()
    return lock


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Enforce foreign keys (cascade) and let readers run beside the writer."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()

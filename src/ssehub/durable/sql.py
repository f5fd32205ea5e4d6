"""The DurableStore on SQLAlchemy: SQLite (embedded default) or PostgreSQL (shared by processes).

Writers serialize per stream on the stream's row: every append starts with a no-op UPDATE of it
(a row lock in PostgreSQL, the write lock in SQLite), then validates and writes in the same
transaction. Reads run in one transaction, so the tail they report matches the chunks returned.
"""

from __future__ import annotations

import time
from typing import Any, cast

import orjson
from sqlalchemy import CursorResult, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import BadRequest
from ..store import Store, StoreUnavailable
from . import content
from .errors import StreamConflict, StreamGone, StreamNotFound
from .offsets import format_offset
from .producers import Decision, Producer, ProducerState, Verdict, decide
from .store import AppendRequest, AppendResult, Chunk, CreateRequest, ReadResult, StreamMeta
from .tables import chunks, producers, streams

MAX_FORK_DEPTH = 32
ROWS_PER_QUERY = 256


def closed_by(producer: Producer) -> str:
    """How a stream remembers the producer request that closed it."""
    return f"{producer.epoch}:{producer.seq}:{producer.id}"


def frame(content_type: str, body: bytes, *, creating: bool) -> bytes:
    """The stored form of an append body: JSON flattened to fragments, other types as sent."""
    if body and content.is_json(content_type):
        return content.json_fragment(body, allow_empty=creating)[0]
    return body


def same_type(requested: str | None, stream_type: str) -> bool:
    """True when an append's Content-Type is the stream's (parameters and case aside)."""
    return requested is None or content.normalize(requested) == content.normalize(stream_type)


def seq_advances(requested: str | None, last: str | None) -> bool:
    """``Stream-Seq`` values must grow byte-wise (scoped per stream)."""
    return requested is None or last is None or requested > last


def to_meta(row: Any) -> StreamMeta:
    """A ``ds_streams`` row as StreamMeta."""
    return StreamMeta(
        id=row.id,
        path=row.path,
        content_type=row.content_type,
        tail_seq=row.tail_seq,
        closed=bool(row.closed),
        ttl_seconds=row.ttl_seconds,
        expires_at=row.expires_at,
        expires_at_ts=row.expires_at_ts,
        last_access=row.last_access,
        owner=row.owner,
        closed_by=row.closed_by,
        last_stream_seq=row.last_stream_seq,
        forked_from=row.forked_from,
        fork_seq=row.fork_seq,
        fork_sub_offset=row.fork_sub_offset,
        segments=[(sid, upto) for sid, upto in orjson.loads(row.segments)],
        ref_count=row.ref_count,
        soft_deleted=bool(row.soft_deleted),
    )


def fork_segments(source: StreamMeta, fork_seq: int) -> list[tuple[int, int | None]]:
    """The chain a fork at ``fork_seq`` inherits: the source's chain cut at the fork point."""
    out: list[tuple[int, int | None]] = []
    lower = 0
    for sid, upto in [*source.segments, (source.id, None)]:
        if lower >= fork_seq:
            break
        cap = fork_seq if upto is None else min(upto, fork_seq)
        out.append((sid, cap))
        lower = cap
    return out


def same_config(meta: StreamMeta, request: CreateRequest) -> bool:
    """True when a repeated PUT asks for exactly the stream that exists (200, else 409)."""
    wanted = content.normalize(request.content_type)
    if not wanted:
        wanted = content.normalize(meta.content_type) if request.forked_from else ""
    return (
        (wanted or content.DEFAULT_CONTENT_TYPE) == content.normalize(meta.content_type)
        and request.ttl_seconds == meta.ttl_seconds
        and request.expires_at == meta.expires_at
        and request.closed == meta.closed
        and request.forked_from == meta.forked_from
        and (request.fork_seq is None or request.fork_seq == meta.fork_seq)
        and request.fork_sub_offset == meta.fork_sub_offset
    )


class SqlDurableStore:
    """Streams, chunks and producers in the tables of migration 0002."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def start(self) -> None:
        """Create the engine; the first query applies the migrations."""
        await self.store.start()

    async def close(self) -> None:
        """Dispose of the engine's connections."""
        await self.store.close()

    # -- create --------------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> tuple[StreamMeta, bool]:
        """Create a stream or a fork; a concurrent PUT of the same path is answered as a repeat."""
        try:
            return await self._create(request)
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
        return await self._create(request)

    async def _create(self, request: CreateRequest) -> tuple[StreamMeta, bool]:
        now = time.time()
        async with self.store.session() as s:
            row = (await s.execute(select(streams).where(streams.c.path == request.path))).first()
            if row is not None:
                meta = to_meta(row)
                if meta.expired(now):
                    await self._expire(s, meta)
                    if meta.ref_count > 0:
                        raise StreamConflict("the stream expired but forks still use its data")
                elif meta.soft_deleted:
                    raise StreamConflict(
                        "the stream was deleted but forks still use its data: "
                        "its path is taken until they are deleted"
                    )
                elif same_config(meta, request):
                    return meta, False
                else:
                    raise StreamConflict("a stream exists at this path with another configuration")
            values: dict[str, Any] = {
                "path": request.path,
                "content_type": request.content_type or content.DEFAULT_CONTENT_TYPE,
                "ttl_seconds": request.ttl_seconds,
                "expires_at": request.expires_at,
                "expires_at_ts": request.expires_at_ts,
                "last_access": now,
                "created_at": now,
                "owner": request.owner,
                "tail_seq": 0,
                "closed": request.closed,
                "closed_by": None,
                "last_stream_seq": None,
                "forked_from": None,
                "fork_seq": None,
                "fork_sub_offset": 0,
                "segments": "[]",
                "ref_count": 0,
                "soft_deleted": False,
            }
            prefix = b""
            if request.forked_from is not None:
                prefix = await self._fork_values(s, request, values)
            query = insert(streams).values(**values).returning(streams.c.id)
            stream_id = (await s.execute(query)).scalar_one()
            tail = values["tail_seq"]
            body = frame(values["content_type"], request.body, creating=True)
            for data in (prefix, body):
                if data:
                    tail += 1
                    await s.execute(insert(chunks).values(stream_id=stream_id, seq=tail, data=data))
            if tail != values["tail_seq"]:
                await s.execute(
                    update(streams).where(streams.c.id == stream_id).values(tail_seq=tail)
                )
            values.update(id=stream_id, tail_seq=tail)
            return to_meta(_Row(values)), True

    async def _fork_values(
        self, s: AsyncSession, request: CreateRequest, values: dict[str, Any]
    ) -> bytes:
        """Point ``values`` at the source (taking a reference); returns the sub-offset prefix."""
        assert request.forked_from is not None
        source_row = (
            await s.execute(
                update(streams)
                .where(streams.c.path == request.forked_from)
                .values(ref_count=streams.c.ref_count + 1)
                .returning(*streams.c)
            )
        ).first()
        if source_row is None:
            raise StreamNotFound(f"no source stream at {request.forked_from!r}")
        source = to_meta(source_row)
        if source.expired():
            raise StreamNotFound(f"the source stream {request.forked_from!r} expired")
        if source.soft_deleted:
            raise StreamConflict("the source stream was deleted (its forks keep its data)")
        if request.content_type and content.normalize(request.content_type) != content.normalize(
            source.content_type
        ):
            raise StreamConflict("a fork keeps its source's content type")
        if len(source.segments) >= MAX_FORK_DEPTH:
            raise BadRequest(f"forks nest at most {MAX_FORK_DEPTH} deep")
        fork_seq = source.tail_seq if request.fork_seq is None else request.fork_seq
        if fork_seq > source.tail_seq:
            raise BadRequest("Stream-Fork-Offset is past the source stream's tail")
        prefix = b""
        if request.fork_sub_offset:
            prefix = await self._sub_offset_prefix(s, source, fork_seq, request.fork_sub_offset)
        ttl, expires_at, expires_at_ts = (
            request.ttl_seconds,
            request.expires_at,
            request.expires_at_ts,
        )
        if ttl is None and expires_at is None:
            ttl, expires_at, expires_at_ts = (
                source.ttl_seconds,
                source.expires_at,
                source.expires_at_ts,
            )
        values.update(
            content_type=request.content_type or source.content_type,
            ttl_seconds=ttl,
            expires_at=expires_at,
            expires_at_ts=expires_at_ts,
            forked_from=request.forked_from,
            fork_seq=fork_seq,
            fork_sub_offset=request.fork_sub_offset,
            segments=orjson.dumps(fork_segments(source, fork_seq)).decode(),
            tail_seq=fork_seq,
        )
        return prefix

    async def _sub_offset_prefix(
        self, s: AsyncSession, source: StreamMeta, fork_seq: int, sub_offset: int
    ) -> bytes:
        """The first ``sub_offset`` messages (JSON) or bytes of the source's next append."""
        found = await self._read_chain(s, source, fork_seq, source.tail_seq, max_bytes=1)
        if not found:
            raise BadRequest("Stream-Fork-Sub-Offset: the source has no data past the offset")
        data = found[0].data
        if content.is_json(source.content_type):
            if sub_offset > len(content.json_items(data)):
                raise BadRequest("Stream-Fork-Sub-Offset is past the source's next append")
            return content.json_prefix(data, sub_offset)
        if sub_offset > len(data):
            raise BadRequest("Stream-Fork-Sub-Offset is past the source's next append")
        return data[:sub_offset]

    # -- get, touch, delete ---------------------------------------------------------------------

    async def get(self, path: str) -> StreamMeta | None:
        """A live or soft-deleted stream; an expired one is removed (or soft-deleted) first."""
        async with self.store.session() as s:
            row = (await s.execute(select(streams).where(streams.c.path == path))).first()
            if row is None:
                return None
            meta = to_meta(row)
            if meta.expired() and not meta.soft_deleted:
                await self._expire(s, meta)
                return meta if meta.soft_deleted else None
            return meta

    async def touch(self, meta: StreamMeta) -> None:
        """Restart the TTL window (only streams with a TTL pay for the write)."""
        if meta.ttl_seconds is None:
            return
        async with self.store.session() as s:
            await s.execute(
                update(streams).where(streams.c.id == meta.id).values(last_access=time.time())
            )

    async def delete(self, path: str) -> None:
        """Delete a stream, or soft-delete it while forks read its data."""
        async with self.store.session() as s:
            row = (await s.execute(select(streams).where(streams.c.path == path))).first()
            if row is None:
                raise StreamNotFound(f"no stream at {path!r}")
            meta = to_meta(row)
            if meta.soft_deleted:
                raise StreamGone("the stream was deleted")
            if meta.expired():
                await self._expire(s, meta)
                raise StreamNotFound(f"no stream at {path!r}")
            if meta.ref_count > 0:
                await s.execute(
                    update(streams).where(streams.c.id == meta.id).values(soft_deleted=True)
                )
            else:
                await self._purge(s, meta)

    async def _expire(self, s: AsyncSession, meta: StreamMeta) -> None:
        """An expired stream: soft-deleted while forks need it, else removed."""
        if meta.ref_count > 0:
            meta.soft_deleted = True
            await s.execute(
                update(streams).where(streams.c.id == meta.id).values(soft_deleted=True)
            )
        else:
            await self._purge(s, meta)

    async def _purge(self, s: AsyncSession, meta: StreamMeta) -> None:
        """Remove a stream's data; release its source, removing that too if it waited on this."""
        for _ in range(MAX_FORK_DEPTH + 1):
            await s.execute(delete(chunks).where(chunks.c.stream_id == meta.id))
            await s.execute(delete(producers).where(producers.c.stream_id == meta.id))
            await s.execute(delete(streams).where(streams.c.id == meta.id))
            if meta.forked_from is None:
                return
            row = (
                await s.execute(
                    update(streams)
                    .where(streams.c.path == meta.forked_from)
                    .values(
                        ref_count=case((streams.c.ref_count > 0, streams.c.ref_count - 1), else_=0)
                    )
                    .returning(*streams.c)
                )
            ).first()
            if row is None:
                return
            meta = to_meta(row)
            if meta.ref_count > 0 or not meta.soft_deleted:
                return

    async def count_owned(self, owner: str) -> int:
        """Streams of ``owner`` not deleted."""
        query = select(func.count()).where(streams.c.owner == owner, ~streams.c.soft_deleted)
        async with self.store.session() as s:
            return int((await s.execute(query)).scalar_one())

    async def sweep(self, *, limit: int) -> int:
        """Remove up to ``limit`` expired streams (soft-delete those that forks still read)."""
        now = time.time()
        query = (
            select(streams)
            .where(
                ~streams.c.soft_deleted,
                or_(
                    streams.c.expires_at_ts <= now,
                    streams.c.last_access + streams.c.ttl_seconds <= now,
                ),
            )
            .limit(limit)
        )
        async with self.store.session() as s:
            rows = (await s.execute(query)).all()
            for row in rows:
                await self._expire(s, to_meta(row))
        return len(rows)

    # -- append ----------------------------------------------------------------------------------

    async def append(self, request: AppendRequest) -> AppendResult:
        """Validate and append in one transaction holding the stream's row."""
        now = time.time()
        async with self.store.session() as s:
            lock = update(streams).where(streams.c.path == request.path)
            await s.execute(lock.values(tail_seq=streams.c.tail_seq))
            row = (await s.execute(select(streams).where(streams.c.path == request.path))).first()
            if row is None:
                raise StreamNotFound(f"no stream at {request.path!r}")
            meta = to_meta(row)
            if meta.expired(now):
                raise StreamNotFound(f"no stream at {request.path!r} (it expired)")
            if meta.soft_deleted:
                raise StreamGone("the stream was deleted")
            if meta.closed:
                return self._closed_outcome(meta, request)
            if request.data and not same_type(request.content_type, meta.content_type):
                raise StreamConflict(
                    f"the stream's content type is {meta.content_type!r}, "
                    f"not {request.content_type!r}"
                )
            decision = None
            if request.producer is not None:
                decision = await self._decide(s, meta, request.producer)
                if decision.verdict is not Verdict.ACCEPT:
                    return AppendResult(meta.tail_seq, meta.closed, False, decision)
            if not seq_advances(request.stream_seq, meta.last_stream_seq):
                raise StreamConflict(
                    f"Stream-Seq {request.stream_seq!r} is not after {meta.last_stream_seq!r}"
                )
            data = frame(meta.content_type, request.data, creating=False) if request.data else b""
            tail = meta.tail_seq
            if data:
                tail += 1
                await s.execute(insert(chunks).values(stream_id=meta.id, seq=tail, data=data))
            changes: dict[str, Any] = {"tail_seq": tail, "last_access": now}
            if request.stream_seq is not None:
                changes["last_stream_seq"] = request.stream_seq
            if request.close:
                changes["closed"] = True
                if request.producer is not None:
                    changes["closed_by"] = closed_by(request.producer)
            await s.execute(update(streams).where(streams.c.id == meta.id).values(**changes))
            if decision is not None and request.producer is not None:
                await self._save_producer(s, meta.id, request.producer, now)
            return AppendResult(tail, meta.closed or request.close, True, decision)

    def _closed_outcome(self, meta: StreamMeta, request: AppendRequest) -> AppendResult:
        """To a closed stream: the closing request's retry, an idempotent close, or 409."""
        producer = request.producer
        if producer is not None and meta.closed_by == closed_by(producer):
            state = ProducerState(producer.epoch, producer.seq)
            return AppendResult(meta.tail_seq, True, False, Decision(Verdict.DUPLICATE, state))
        if not request.data and request.close and producer is None:
            return AppendResult(meta.tail_seq, True, False)
        raise StreamConflict(
            "the stream is closed",
            code="stream_closed",
            headers={"Stream-Closed": "true", "Stream-Next-Offset": format_offset(meta.tail_seq)},
        )

    async def _decide(self, s: AsyncSession, meta: StreamMeta, producer: Producer) -> Decision:
        query = select(producers.c.epoch, producers.c.last_seq).where(
            producers.c.stream_id == meta.id, producers.c.producer_id == producer.id
        )
        row = (await s.execute(query)).first()
        return decide(producer, ProducerState(row.epoch, row.last_seq) if row else None)

    async def _save_producer(
        self, s: AsyncSession, stream_id: int, producer: Producer, now: float
    ) -> None:
        values = {"epoch": producer.epoch, "last_seq": producer.seq, "updated_at": now}
        query = (
            update(producers)
            .where(producers.c.stream_id == stream_id, producers.c.producer_id == producer.id)
            .values(**values)
        )
        result = cast(CursorResult[Any], await s.execute(query))
        if not result.rowcount:
            await s.execute(
                insert(producers).values(stream_id=stream_id, producer_id=producer.id, **values)
            )

    # -- read ------------------------------------------------------------------------------------

    async def read(self, meta: StreamMeta, after_seq: int, *, max_bytes: int) -> ReadResult:
        """Chunks after ``after_seq`` up to the tail seen in the same transaction."""
        async with self.store.session() as s:
            row = (
                await s.execute(
                    select(streams.c.tail_seq, streams.c.closed).where(streams.c.id == meta.id)
                )
            ).first()
            if row is None:
                raise StreamNotFound(f"no stream at {meta.path!r}")
            found = await self._read_chain(s, meta, after_seq, row.tail_seq, max_bytes=max_bytes)
        return ReadResult(found, row.tail_seq, bool(row.closed))

    async def _read_chain(
        self, s: AsyncSession, meta: StreamMeta, after_seq: int, tail: int, *, max_bytes: int
    ) -> list[Chunk]:
        found: list[Chunk] = []
        size = 0
        lower = 0
        for stream_id, upto in [*meta.segments, (meta.id, None)]:
            high = tail if upto is None else min(upto, tail)
            low = max(after_seq, lower)
            lower = high
            while low < high and size < max_bytes:
                rows = (
                    await s.execute(
                        select(chunks.c.seq, chunks.c.data)
                        .where(
                            chunks.c.stream_id == stream_id,
                            chunks.c.seq > low,
                            chunks.c.seq <= high,
                        )
                        .order_by(chunks.c.seq)
                        .limit(ROWS_PER_QUERY)
                    )
                ).all()
                if not rows:
                    break
                for seq, data in rows:
                    found.append(Chunk(seq, bytes(data)))
                    size += len(data)
                    low = seq
                    if size >= max_bytes:
                        break
            if size >= max_bytes:
                break
        return found


class _Row:
    """Attribute access over a dict of column values (the row just inserted)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

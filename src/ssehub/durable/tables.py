"""Tables of the durable store (SQLAlchemy Core; created by migration 0002).

``ds_streams`` holds one row per stream path, ``ds_chunks`` every append as one row keyed by
``(stream_id, seq)``, ``ds_producers`` the idempotent producers' state per stream.
"""

from __future__ import annotations

import sqlalchemy as sa

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

streams = sa.Table(
    "ds_streams",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("path", sa.String(1024), nullable=False, unique=True),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("ttl_seconds", sa.BigInteger(), nullable=True),
    sa.Column("expires_at", sa.String(64), nullable=True),
    sa.Column("expires_at_ts", sa.Float(), nullable=True),
    sa.Column("last_access", sa.Float(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("tail_seq", sa.BigInteger(), nullable=False),
    sa.Column("closed", sa.Boolean(), nullable=False),
    sa.Column("closed_by", sa.String(300), nullable=True),
    sa.Column("last_stream_seq", sa.String(256), nullable=True),
    sa.Column("forked_from", sa.String(1024), nullable=True),
    sa.Column("fork_seq", sa.BigInteger(), nullable=True),
    sa.Column("fork_sub_offset", sa.BigInteger(), nullable=False),
    sa.Column("segments", sa.Text(), nullable=False),
    sa.Column("ref_count", sa.Integer(), nullable=False),
    sa.Column("soft_deleted", sa.Boolean(), nullable=False),
)

chunks = sa.Table(
    "ds_chunks",
    metadata,
    sa.Column("stream_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
)

producers = sa.Table(
    "ds_producers",
    metadata,
    sa.Column("stream_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("producer_id", sa.String(256), primary_key=True),
    sa.Column("epoch", sa.BigInteger(), nullable=False),
    sa.Column("last_seq", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
)

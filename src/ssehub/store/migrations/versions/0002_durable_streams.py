"""Durable Streams: streams, their appended chunks and idempotent producers.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from ssehub.durable.tables import chunks, producers, streams

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in (streams, chunks, producers):
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in (producers, chunks, streams):
        table.drop(bind)

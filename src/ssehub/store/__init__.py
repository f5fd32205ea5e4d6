"""The conversation store: SQLAlchemy models, migrations and queries."""

from __future__ import annotations

from .database import Store, StoreUnavailable
from .models import CANCELLED, COMPLETE, ERROR, STREAMING, Conversation, Message

__all__ = [
    "CANCELLED",
    "COMPLETE",
    "ERROR",
    "STREAMING",
    "Conversation",
    "Message",
    "Store",
    "StoreUnavailable",
]

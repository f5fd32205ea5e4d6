"""The project/stage messages and channel names, built in one place.

Every message is a JSON object whose ``type`` is also its SSE ``event:`` name (``token``,
``stage_update``, ``progress``, ``done``, ``error``), so existing stage front ends work unchanged.
Keys keep their documented order.
"""

from __future__ import annotations

import time
from typing import Any

DEFAULT_PREFIX = "ai_story"
STAGE_TYPES = frozenset({"token", "stage_update", "progress", "done", "error"})
TERMINAL_TYPES = frozenset({"done", "error"})


def stage_channel(project_id: str | int, stage_name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``{prefix}:project:{project_id}:stage:{stage_name}``."""
    return f"{prefix}:project:{project_id}:stage:{stage_name}"


def project_pattern(project_id: str | int, prefix: str = DEFAULT_PREFIX) -> str:
    """The pattern covering every stage channel of a project."""
    return f"{prefix}:project:{project_id}:stage:*"


def parse_stage_channel(channel: str) -> tuple[str, str, str] | None:
    """(prefix, project_id, stage_name) of a stage channel, None for any other channel."""
    head, sep, stage = channel.rpartition(":stage:")
    if not sep or not stage or ":" in stage:
        return None
    prefix, sep, project = head.rpartition(":project:")
    if not sep or not prefix or not project:
        return None
    return prefix, project, stage


def token(
    stage: str, project_id: str, content: str, full_text: str | None = None
) -> dict[str, Any]:
    """A token message; ``full_text`` is left out when not given (O(n) bytes per answer)."""
    msg: dict[str, Any] = {"type": "token", "content": content}
    if full_text is not None:
        msg["full_text"] = full_text
    msg.update(stage=stage, project_id=project_id, timestamp=time.time())
    return msg


def stage_update(
    stage: str, project_id: str, status: str, progress: float | int, message: str
) -> dict[str, Any]:
    """A stage status change."""
    return {
        "type": "stage_update",
        "stage": stage,
        "status": status,
        "progress": progress,
        "message": message,
        "project_id": project_id,
        "timestamp": time.time(),
    }


def progress(
    stage: str, project_id: str, current: int, total: int, item_name: str | None
) -> dict[str, Any]:
    """Per-item progress of a batch; ``progress`` is the integer percentage."""
    return {
        "type": "progress",
        "stage": stage,
        "current": current,
        "total": total,
        "progress": int(current * 100 / total) if total else 0,
        "item_name": item_name,
        "project_id": project_id,
        "timestamp": time.time(),
    }


def done(
    stage: str, project_id: str, full_text: str | None, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """The final message of a successful run."""
    return {
        "type": "done",
        "stage": stage,
        "project_id": project_id,
        "full_text": full_text,
        "metadata": metadata or {},
        "timestamp": time.time(),
    }


def error(stage: str, project_id: str, error: str, retry_count: int = 0) -> dict[str, Any]:
    """The final message of a failed run."""
    return {
        "type": "error",
        "stage": stage,
        "project_id": project_id,
        "error": error,
        "retry_count": retry_count,
        "timestamp": time.time(),
    }

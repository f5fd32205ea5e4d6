"""Running one stage with its publisher: the same code under every runner."""

from __future__ import annotations

from typing import Any

from ..sdk.publisher import Publisher
from .registry import StageSpec


def _metadata(result: Any) -> dict[str, Any] | None:
    return result if isinstance(result, dict) else None


async def run_async(spec: StageSpec, pub: Publisher, input_data: dict[str, Any]) -> Any:
    """Run an ``async def`` stage; ``done`` is published for it when it returns without one."""
    async with pub as apub:
        await apub.publish_stage_update("processing", 0, f"{spec.name} started")
        result = await spec.func(apub, input_data)
        if not apub.finished:
            await apub.publish_done(metadata=_metadata(result))
        return result


def run_sync(spec: StageSpec, pub: Publisher, input_data: dict[str, Any]) -> Any:
    """Run a plain ``def`` stage (in a worker thread or a Celery worker)."""
    with pub:
        pub.publish_stage_update("processing", 0, f"{spec.name} started")
        result = spec.func(pub, input_data)
        if not pub.finished:
            pub.publish_done(metadata=_metadata(result))
        return result

"""The stage registry: ``@stage("rewrite", queue="llm")`` makes a function runnable by name.

A stage receives a publisher (an :class:`~ssehub.sdk.publisher.AsyncPublisher` for ``async def``
stages, a sync :class:`~ssehub.sdk.publisher.Publisher` otherwise) and the request's ``input_data``;
the same function runs in-process and on Celery workers.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import NotFound

QUEUES = ("llm", "image", "video", "default")


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A registered stage."""

    name: str
    func: Callable[..., Any]
    queue: str = "default"
    max_retries: int = 0

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)


STAGES: dict[str, StageSpec] = {}


def stage(
    name: str, *, queue: str = "default", max_retries: int = 0
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func`` as the stage ``name``, run on Celery queue ``queue``."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        STAGES[name] = StageSpec(name=name, func=func, queue=queue, max_retries=max_retries)
        return func

    return register


def get_stage(name: str) -> StageSpec:
    """The stage called ``name`` (404 when none is registered)."""
    load_builtin()
    spec = STAGES.get(name)
    if spec is None:
        known = ", ".join(sorted(STAGES)) or "none"
        raise NotFound(f"unknown stage {name!r} (registered: {known})", code="unknown_stage")
    return spec


@functools.cache
def load_builtin() -> None:
    """Register the stages shipped with ssehub (once)."""
    from .builtin import rewrite

    stage("rewrite", queue="llm")(rewrite)


def load_modules(names: Iterable[str]) -> None:
    """Import modules that register more stages (``SSEHUB_STAGE_MODULES``).

    Modules are found on the path and then in the working directory, as ``python -m`` would
    (the ``ssehub`` command alone does not look there).
    """
    load_builtin()
    names = list(names)
    if names and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for name in names:
        importlib.import_module(name)

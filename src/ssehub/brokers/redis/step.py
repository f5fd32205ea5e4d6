"""A publish step in Lua: what a Redis-backed store does with a publish, inside the PUBLISH
script, so that the store's check, the append and the store's update are one atomic step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from ...event import Event
from ..base import PublishStep
from .scripts import StepScript

if TYPE_CHECKING:
    from .broker import RedisBroker


@dataclass(frozen=True, slots=True)
class LuaStep:
    """One publish's step: its script, keys and arguments; the error a refusal raises (with
    the script's answer), and what to do with the answer of a stored event or a replay."""

    script: StepScript
    keys: list[str]
    args: list[Any]
    refusal: Callable[[str], Exception]
    answered: Callable[[Event, str], None] | None = None


class ScriptedStep(Protocol):
    """A publish step that can run inside the PUBLISH script of a broker it shares Redis with."""

    def lua_step(self, event: Event, broker: RedisBroker) -> LuaStep | None:
        """The Lua of ``event``'s step on ``broker`` (None: run ``before``/``after`` instead)."""


def script_step(step: PublishStep | None, event: Event, broker: RedisBroker) -> LuaStep | None:
    """``step``'s Lua for ``event`` on ``broker`` when it has one."""
    if step is None or not hasattr(step, "lua_step"):
        return None
    return cast(ScriptedStep, step).lua_step(event, broker)

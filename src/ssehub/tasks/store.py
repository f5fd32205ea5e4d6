"""Where executed-stage records live: this process (memory broker) or Redis (every process).

A record is written when a task is submitted and when its state changes, so ``GET
/api/v1/tasks/{id}`` and ``POST .../cancel`` answer from any hub process of one Redis broker.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol, TypeVar

import orjson
from redis.exceptions import RedisError

from ..errors import BrokerUnavailable
from ..redis_client import pooled_client
from .info import TaskInfo

if TYPE_CHECKING:
    from ..settings import Settings

T = TypeVar("T")

MAX_TASKS = 10_000
TASK_TTL_SECONDS = 86_400


class TaskStore(Protocol):
    """Task records by id."""

    async def put(self, info: TaskInfo) -> None:
        """Store (or replace) a record."""

    async def get(self, task_id: str) -> TaskInfo | None:
        """A record, None when unknown or expired."""

    async def many(self, task_ids: list[str]) -> list[TaskInfo | None]:
        """Records of several ids at once, in order."""

    async def close(self) -> None:
        """Release connections."""


class MemoryTasks:
    """The latest ``MAX_TASKS`` records of this process."""

    def __init__(self) -> None:
        self._tasks: OrderedDict[str, TaskInfo] = OrderedDict()

    async def put(self, info: TaskInfo) -> None:
        self._tasks[info.task_id] = info
        self._tasks.move_to_end(info.task_id)
        while len(self._tasks) > MAX_TASKS:
            self._tasks.popitem(last=False)

    async def get(self, task_id: str) -> TaskInfo | None:
        return self._tasks.get(task_id)

    async def many(self, task_ids: list[str]) -> list[TaskInfo | None]:
        return [self._tasks.get(task_id) for task_id in task_ids]

    async def close(self) -> None:
        """Nothing to release."""


class RedisTasks:
    """Records as JSON strings ``{prefix}task:{id}``, expiring a day after their last change."""

    def __init__(self, url: str, *, prefix: str = "ssehub:") -> None:
        self.redis = pooled_client(url)
        self.prefix = prefix + "task:"

    async def put(self, info: TaskInfo) -> None:
        raw = orjson.dumps(dataclasses.asdict(info))
        await self._call(self.redis.set(self.prefix + info.task_id, raw, ex=TASK_TTL_SECONDS))

    async def get(self, task_id: str) -> TaskInfo | None:
        return (await self.many([task_id]))[0]

    async def many(self, task_ids: list[str]) -> list[TaskInfo | None]:
        if not task_ids:
            return []
        raws = await self._call(self.redis.mget([self.prefix + t for t in task_ids]))
        return [TaskInfo(**orjson.loads(raw)) if raw else None for raw in raws]

    async def _call(self, coro: Awaitable[T]) -> T:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"task records unavailable: {exc}") from exc

    async def close(self) -> None:
        await self.redis.aclose()


def create_task_store(settings: Settings) -> TaskStore:
    """Records in Redis under a Redis broker (shared by every process), else in this process."""
    if settings.backplane == "redis":
        return RedisTasks(settings.broker_url, prefix=settings.redis_prefix)
    return MemoryTasks()

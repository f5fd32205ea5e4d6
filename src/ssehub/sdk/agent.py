"""The generic layer beside project stages: ``hub.publish(channel, event, data)`` and the
agent pattern, which wraps a streaming coroutine and publishes ``task.created``,
``task.progress``, ``task.completed`` and ``task.failed`` by itself.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .publisher import describe, make_transport
from .transport import Transport

if TYPE_CHECKING:
    from ..hub import Hub


class HubClient:
    """Publishes any event to any channel, in-process (``hub=``) or over HTTP (``url=``)."""

    def __init__(
        self,
        *,
        hub: Hub | None = None,
        url: str | None = None,
        token: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.transport = transport or make_transport(hub, url, token)

    def publish(self, channel: str, event: str, data: Any) -> None:
        """Publish one event (blocking)."""
        self.transport.send(channel, event, data)

    async def apublish(self, channel: str, event: str, data: Any) -> None:
        """Publish one event from a coroutine."""
        await self.transport.asend(channel, event, data)

    def close(self) -> None:
        self.transport.close()

    async def aclose(self) -> None:
        await self.transport.aclose()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def task_event(task_id: str, name: str, **fields: Any) -> dict[str, Any]:
    """The payload of a ``task.*`` event."""
    return {"task_id": task_id, "task": name, **fields, "timestamp": time.time()}


class StreamingAgent:
    """The BaseAgent: override ``process_streaming`` (yields progress) and ``finalize``."""

    name = "agent"

    def __init__(self, client: HubClient) -> None:
        self.client = client

    async def process_streaming(self, request: Any) -> AsyncIterator[Any]:
        """Yield progress payloads while working."""
        yield {}

    async def finalize(self, request: Any) -> Any:
        """The result published with ``task.completed``."""
        return None

    async def run(self, request: Any, channel: str, task_id: str | None = None) -> Any:
        """Process ``request`` and publish its task.* events on ``channel``."""
        task_id = task_id or str(uuid.uuid4())
        publish = self.client.apublish
        await publish(channel, "task.created", task_event(task_id, self.name, status="created"))
        try:
            async for progress in self.process_streaming(request):
                data = task_event(task_id, self.name, status="running", progress=progress)
                await publish(channel, "task.progress", data)
            result = await self.finalize(request)
        except Exception as exc:
            data = task_event(task_id, self.name, status="failed", error=describe(exc))
            await publish(channel, "task.failed", data)
            raise
        done = task_event(task_id, self.name, status="completed", result=result)
        await publish(channel, "task.completed", done)
        return result


def streaming_task(
    client: HubClient, channel: str | Callable[..., str]
) -> Callable[[Callable[..., AsyncIterator[Any]]], Callable[..., Any]]:
    """Wrap an async generator: each item is ``task.progress``; the last one is the result.

    ``channel`` may be a function of the call's arguments (e.g. ``lambda user_id, **_: ...``).
    """

    def wrap(func: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
        name = func.__name__

        @functools.wraps(func)
        async def run(*args: Any, **kwargs: Any) -> Any:
            where = channel(*args, **kwargs) if callable(channel) else channel
            task_id = str(uuid.uuid4())
            await client.apublish(
                where, "task.created", task_event(task_id, name, status="created")
            )
            result: Any = None
            try:
                async for item in func(*args, **kwargs):
                    result = item
                    data = task_event(task_id, name, status="running", progress=item)
                    await client.apublish(where, "task.progress", data)
            except Exception as exc:
                data = task_event(task_id, name, status="failed", error=describe(exc))
                await client.apublish(where, "task.failed", data)
                raise
            data = task_event(task_id, name, status="completed", result=result)
            await client.apublish(where, "task.completed", data)
            return result

        return run

    return wrap

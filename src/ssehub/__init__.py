"""ssehub: a self-hosted real-time push hub for AI applications, built on Server-Sent Events.

``from ssehub import Publisher, AsyncPublisher, Subscriber, HubClient, SSEClient``: the SDK
(:mod:`ssehub.sdk`) is imported on first use, so ``import ssehub`` (and the CLI) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the SDK module that defines it.
_EXPORTS = {
    "AsyncPublisher": "publisher",
    "AsyncSubscriber": "subscriber",
    "HttpTransport": "transport",
    "HubClient": "agent",
    "PublishFailed": "transport",
    "Publisher": "publisher",
    "SSEClient": "client",
    "SSEDecoder": "parser",
    "ServerSentEvent": "parser",
    "StreamClosed": "client",
    "StreamingAgent": "agent",
    "Subscriber": "subscriber",
    "Transport": "transport",
    "streaming_task": "agent",
}

__all__ = [
    "AsyncPublisher",
    "AsyncSubscriber",
    "HttpTransport",
    "HubClient",
    "PublishFailed",
    "Publisher",
    "SSEClient",
    "SSEDecoder",
    "ServerSentEvent",
    "StreamClosed",
    "StreamingAgent",
    "Subscriber",
    "Transport",
    "__version__",
    "streaming_task",
]

if TYPE_CHECKING:
    from .sdk.agent import HubClient, StreamingAgent, streaming_task
    from .sdk.client import SSEClient, StreamClosed
    from .sdk.parser import ServerSentEvent, SSEDecoder
    from .sdk.publisher import AsyncPublisher, Publisher
    from .sdk.subscriber import AsyncSubscriber, Subscriber
    from .sdk.transport import HttpTransport, PublishFailed, Transport


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssehub' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".sdk.{module}", __name__), name)
    globals()[name] = value
    return value

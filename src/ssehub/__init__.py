"""ssehub: a self-hosted real-time push hub for AI applications, built on Server-Sent Events.

``from ssehub import Publisher, AsyncPublisher, Subscriber, HubClient, SSEClient``: the SDK
classes are imported on first use, so ``import ssehub`` (and the CLI) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it.
_EXPORTS = {
    "AsyncPublisher": "publisher",
    "AsyncSubscriber": "subscriber",
    "HubClient": "agent",
    "Publisher": "publisher",
    "SSEClient": "client",
    "StreamClosed": "client",
    "Subscriber": "subscriber",
}

__all__ = [
    "AsyncPublisher",
    "AsyncSubscriber",
    "HubClient",
    "Publisher",
    "SSEClient",
    "StreamClosed",
    "Subscriber",
    "__version__",
]

if TYPE_CHECKING:
    from .agent import HubClient
    from .client import SSEClient, StreamClosed
    from .publisher import AsyncPublisher, Publisher
    from .subscriber import AsyncSubscriber, Subscriber


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssehub' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value

"""The lines a hub logs when it starts: its broker (password hidden), and where to find it."""

from __future__ import annotations

import asyncio
import logging
import socket
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from .brokers import Broker
from .errors import BrokerUnavailable
from .settings import Settings

log = logging.getLogger("ssehub")
BROKER_CHECK_SECONDS = 3.0


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (user names and the rest kept)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def describe_broker(settings: Settings) -> str:
    """The broker as one log phrase: URL without password, and the Redis key prefix."""
    url = redact_url(settings.broker_url)
    if settings.broker_url.startswith("memory:"):
        return f"{url} (in-process: events and history live in this process only)"
    return f"{url} (key prefix {settings.redis_prefix!r})"


async def log_broker(settings: Settings, broker: Broker) -> bool:
    """Log the broker in use; WARNING when it cannot be reached now. True when reachable."""
    described = describe_broker(settings)
    try:
        await asyncio.wait_for(broker.head(), BROKER_CHECK_SECONDS)
    except (BrokerUnavailable, TimeoutError, OSError) as exc:
        log.warning(
            "broker %s is unreachable at start (%s): publishes and new streams answer 503 "
            "until it is back; the hub keeps trying",
            described,
            exc or type(exc).__name__,
        )
        return False
    log.info("broker: %s", described)
    return True


def log_ready(settings: Settings) -> None:
    """The last start-up line: the address served (and the demo page in demo mode)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
    base = f"http://{shown}:{settings.port}"
    if settings.demo:
        log.info("ready: demo page at %s/ (API reference at %s/docs)", base, base)
    else:
        log.info("ready on %s (API reference at %s/docs)", base, base)


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, whose last start-up line says where the hub (and its demo page) is."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            log_ready(Settings())

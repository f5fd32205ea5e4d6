"""Logging: text or JSON lines, each carrying the id of the request being served.

The request id comes from ``X-Request-ID`` (when it is short and plain) or is generated, and is
returned in the response. The access line holds method, path, status and duration: never the
query string (it may carry ``access_token``), headers or payloads.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
request_id: ContextVar[str | None] = ContextVar("ssehub_request_id", default=None)
access_log = logging.getLogger("ssehub.access")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Fields of access lines (passed as ``extra``) copied into the JSON object.
FIELDS = ("method", "path", "status", "duration_ms")
# Generated request ids: 32 hex digits, a random half per process and a counter (no syscall).
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """A request id unique across processes and restarts (random prefix, then a counter)."""
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def request_id_for(header: str) -> str:
    """The id of a request sending ``header`` as X-Request-ID: kept when short and plain."""
    return header if header and _VALID_ID.fullmatch(header) else new_request_id()


def log_access(method: str, path: str, status: int, duration_ms: float) -> None:
    """Hand one access line to the handlers of ``ssehub.access`` (when it logs INFO).

    The record is built directly: ``Logger.info`` would also walk the stack to find the
    caller, a third of the line's cost, for a file and line that say nothing here.
    """
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields = {"method": method, "path": path, "status": status, "duration_ms": duration_ms}
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        "(unknown file)",
        0,
        "%s %s %s",
        (method, path, status),
        None,
        "(unknown function)",
        fields,
    )
    access_log.handle(record)


class RequestIdFilter(logging.Filter):
    """Set ``record.request_id`` from the request being served (``-`` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, access fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid and rid != "-":
            out["request_id"] = rid
        for name in FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the hub and uvicorn (``text`` or ``json``)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "hub",
        "filters": ["request_id"],
    }
    loggers = {
        name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
        for name in ("ssehub", "uvicorn", "uvicorn.error", "uvicorn.access")
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"hub": formatter},
        "handlers": {"default": handler},
        "loggers": loggers,
    }


def configure_logging(log_format: str, level: str) -> None:
    """Apply :func:`log_config` to this process."""
    import logging.config

    logging.config.dictConfig(log_config(log_format, level))


class RequestIdMiddleware:
    """Tag each HTTP request with an id (kept or generated), echo it, log one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                rid = value.decode("latin-1")
                break
        rid = request_id_for(rid)
        token = request_id.set(rid)
        started = time.monotonic()
        status = 0
        id_header = (REQUEST_ID_HEADER_BYTES, rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            log_access(scope["method"], scope["path"], status, duration_ms)
            request_id.reset(token)

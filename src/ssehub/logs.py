"""Logging: text or JSON lines, each carrying the id of the request being served.

The request id comes from ``X-Request-ID`` (when it is short and plain) or is generated, and is
returned in the response. The access line holds method, path, status and duration: never the
query string (it may carry ``access_token``), headers or payloads.
"""

from __future__ import annotations

import functools
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

from .linebuffer import TurnBufferedHandler

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
request_id: ContextVar[str | None] = ContextVar("ssehub_request_id", default=None)
access_log = logging.getLogger("ssehub.access")

ACCESS_MESSAGE = "%s %s %s"  # method, path, status
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

    When the line can only reach this module's own handler and formatter (``log_config``), it
    is formatted and handed over directly: the same line as through a ``LogRecord``, at a
    fraction of the cost (the record, ``Logger.handle`` and ``Formatter.format`` were ~50
    Python calls per request). Otherwise the record is built directly: ``Logger.info`` would
    also walk the stack to find the caller, for a file and line that say nothing here.
    """
    if not access_log.isEnabledFor(logging.INFO):
        return
    handler = direct_handler()
    if handler is not None:
        formatter: AccessFormatter = handler.formatter  # type: ignore[assignment]
        created = time.time()
        line = formatter.access_line(created, request_id.get(), method, path, status, duration_ms)
        if line is not None:
            handler.write_line(line)
            return
    fields = {"method": method, "path": path, "status": status, "duration_ms": duration_ms}
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        "(unknown file)",
        0,
        ACCESS_MESSAGE,
        (method, path, status),
        None,
        "(unknown function)",
        fields,
    )
    access_log.handle(record)


def direct_handler() -> TurnBufferedHandler | None:
    """The one handler access lines reach, when handing them to it directly is what
    ``Logger.handle`` would do (no logger filter, only ``RequestIdFilter``, one of this
    module's formatters); else None."""
    if access_log.filters or access_log.disabled:
        return None
    found: logging.Handler | None = None
    logger: logging.Logger | None = access_log
    while logger is not None:
        for each in logger.handlers:
            if found is not None:
                return None
            found = each
        logger = logger.parent if logger.propagate else None
    if (
        type(found) is not TurnBufferedHandler
        or found.level > logging.INFO
        or type(found.formatter) not in (TextFormatter, JsonFormatter)
    ):
        return None
    for each_filter in found.filters:
        if type(each_filter) is not RequestIdFilter:
            return None
    return found


class RequestIdFilter(logging.Filter):
    """Set ``record.request_id`` from the request being served (``-`` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


@functools.lru_cache(maxsize=4)
def local_second(second: int) -> str:
    """``2026-01-31 23:59:59``: a second of local time as ``Formatter.formatTime`` writes it."""
    return time.strftime(logging.Formatter.default_time_format, time.localtime(second))


@functools.lru_cache(maxsize=4)
def utc_second(second: int) -> str:
    """``2026-01-31T23:59:59``: a second of UTC in ISO 8601."""
    return datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:19]


def local_asctime(created: float) -> str:
    """``created`` as ``Formatter.formatTime`` writes a record's ``asctime`` by default, with
    the record's own ``msecs`` arithmetic; the date formatted once a second."""
    return f"{local_second(int(created))},{int((created - int(created)) * 1000):03d}"


def iso_time(created: float) -> str:
    """``created`` as ``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``
    writes it (microseconds rounded half-even, then cut), the date formatted once a second."""
    second = int(created)
    micros = round((created - second) * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    return f"{utc_second(second)}.{micros // 1000:03d}+00:00"


class TextFormatter(logging.Formatter):
    """``logging.Formatter`` whose default ``asctime`` formats the date once a second."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None or self.converter is not time.localtime:
            return super().formatTime(record, datefmt)
        return local_asctime(record.created)

    def access_line(
        self,
        created: float,
        rid: str | None,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
    ) -> str | None:
        """The line ``format`` makes of the access record (None unless with ``TEXT_FORMAT``)."""
        if self._fmt != TEXT_FORMAT or self.datefmt is not None:
            return None
        if self.converter is not time.localtime or type(self._style) is not logging.PercentStyle:
            return None
        message = ACCESS_MESSAGE % (method, path, status)
        return f"{local_asctime(created)} INFO {access_log.name} [{rid or '-'}] {message}"


def json_line(
    created: float,
    level: str,
    logger: str,
    message: str,
    rid: str | None,
    fields: dict[str, Any],
    exception: str | None = None,
) -> str:
    """One JSON log line (see :class:`JsonFormatter`)."""
    out: dict[str, Any] = {
        "time": iso_time(created),
        "level": level,
        "logger": logger,
        "message": message,
    }
    if rid and rid != "-":
        out["request_id"] = rid
    out.update(fields)
    if exception is not None:
        out["exception"] = exception
    return orjson.dumps(out, default=str).decode()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, access fields."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None) or request_id.get()
        fields = {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return json_line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            rid,
            fields,
            exception,
        )

    def access_line(
        self,
        created: float,
        rid: str | None,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
    ) -> str:
        """The line ``format`` makes of the access record."""
        fields = {"method": method, "path": path, "status": status, "duration_ms": duration_ms}
        message = ACCESS_MESSAGE % (method, path, status)
        return json_line(created, "info", access_log.name, message, rid, fields)


AccessFormatter = TextFormatter | JsonFormatter


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the hub and uvicorn (``text`` or ``json``)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"()": TextFormatter, "fmt": TEXT_FORMAT}
    )
    # Lines go out once per event-loop turn: a write per access line was most of its cost.
    handler = {
        "()": TurnBufferedHandler,
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

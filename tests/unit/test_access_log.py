"""The access log: lines written straight to the hub's handler equal those of a LogRecord, and
the handler writes once per loop turn, bounded, and everything by exit."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ssehub import logs
from ssehub.linebuffer import TurnBufferedHandler
from ssehub.logs import (
    JsonFormatter,
    TextFormatter,
    direct_handler,
    iso_time,
    log_access,
    log_config,
    request_id,
)

# Times whose milliseconds round or cut differently (.9995, .0005, an exact second).
TIMES = [1767225599.9995, 1767225599.99951, 1767225600.0, 1767225600.0005, 1780000000.123456]


class CountingStream(io.StringIO):
    """A stream counting its ``write`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def hub_logging() -> Iterator[CountingStream]:
    """This module's log configuration at INFO, writing to a CountingStream."""
    stream = CountingStream()
    config = log_config("text", "info")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def configure(stream: io.StringIO, log_format: str) -> None:
    config = log_config(log_format, "info")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)


def access_record(created: float, rid: str | None) -> logging.LogRecord:
    """The record ``log_access`` builds when it cannot write directly, as the filter leaves it."""
    fields = {"method": "POST", "path": "/api/v1/publish/a:b", "status": 200, "duration_ms": 1.5}
    args = ("POST", fields["path"], 200)
    record = logs.access_log.makeRecord(
        "ssehub.access", logging.INFO, "(unknown file)", 0, "%s %s %s", args, None, "-", fields
    )
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0
    token = request_id.set(rid)
    try:
        logs.RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    return record


@pytest.mark.parametrize("created", TIMES)
@pytest.mark.parametrize("rid", ["req-1", None])
def test_direct_lines_equal_the_record_lines(created: float, rid: str | None) -> None:
    text, js = TextFormatter(logs.TEXT_FORMAT), JsonFormatter()
    args = (created, rid, "POST", "/api/v1/publish/a:b", 200, 1.5)
    assert text.access_line(*args) == text.format(access_record(created, rid))
    assert js.access_line(*args) == js.format(access_record(created, rid))


def test_iso_time_is_what_datetime_writes() -> None:
    rng = random.Random(7)
    for created in [*TIMES, *(rng.uniform(0, 4e9) for _ in range(20_000))]:
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert iso_time(created) == expected, created


def test_text_formatter_keeps_custom_formats() -> None:
    record = access_record(TIMES[0], "r")
    dated = TextFormatter(logs.TEXT_FORMAT, datefmt="%H:%M")
    assert dated.format(record) == logging.Formatter(logs.TEXT_FORMAT, "%H:%M").format(record)
    assert dated.access_line(TIMES[0], "r", "GET", "/", 200, 1.0) is None
    other = TextFormatter("%(message)s")
    assert other.access_line(TIMES[0], "r", "GET", "/", 200, 1.0) is None


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_access_writes_the_same_line_either_way(
    log_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: TIMES[0])
    lines = []
    for direct in (True, False):
        stream = io.StringIO()
        configure(stream, log_format)
        if not direct:
            logs.access_log.addFilter(lambda record: True)
        assert (direct_handler() is not None) is direct
        token = request_id.set("req-7")
        try:
            log_access("POST", "/api/v1/publish/a:b", 201, 2.5)
        finally:
            request_id.reset(token)
            logs.access_log.filters.clear()
        lines.append(stream.getvalue())
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert lines[0] == lines[1] and lines[0].count("\n") == 1


def test_another_handler_gets_records(hub_logging: CountingStream) -> None:
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[assignment]
    logs.access_log.addHandler(extra)
    try:
        assert direct_handler() is None
        log_access("GET", "/healthz", 200, 0.1)
    finally:
        logs.access_log.removeHandler(extra)
    assert [r.getMessage() for r in seen] == ["GET /healthz 200"]
    assert hub_logging.getvalue().endswith("GET /healthz 200\n")


def test_access_log_off_below_info(hub_logging: CountingStream) -> None:
    logging.getLogger("ssehub").setLevel(logging.WARNING)
    log_access("GET", "/healthz", 200, 0.1)
    assert hub_logging.getvalue() == ""


def test_lines_of_a_turn_go_out_in_one_write(hub_logging: CountingStream) -> None:
    async def turns() -> list[int]:
        seen = []
        for _ in range(3):
            for _ in range(10):
                log_access("POST", "/p", 200, 0.1)
            seen.append(hub_logging.writes)  # nothing written during the turn
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return seen

    assert asyncio.run(turns()) == [0, 1, 2]
    assert hub_logging.writes == 3 and hub_logging.getvalue().count("\n") == 30


def test_outside_a_loop_lines_go_out_at_once(hub_logging: CountingStream) -> None:
    logging.getLogger("ssehub.test").warning("no loop here")
    assert hub_logging.getvalue().endswith("no loop here\n")


def test_a_full_buffer_is_written_within_the_turn() -> None:
    stream = CountingStream()
    handler = TurnBufferedHandler(stream, capacity=4)

    async def burst() -> tuple[int, int]:
        for n in range(10):
            handler.write_line(f"line {n}")
        return stream.writes, len(handler._lines)

    assert asyncio.run(burst()) == (2, 2)  # 8 lines written, 2 waiting: never more than 4 kept
    handler.close()
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(10)]


def test_lines_left_by_a_closed_loop_go_out_with_the_next() -> None:
    stream = CountingStream()
    handler = TurnBufferedHandler(stream)

    async def one(line: str) -> None:
        handler.write_line(line)

    loop = asyncio.new_event_loop()
    loop.call_soon(loop.stop)
    loop.call_soon(handler.write_line, "first")
    loop.run_forever()
    loop.close()  # its scheduled write never ran
    assert stream.getvalue() == ""
    asyncio.run(one("second"))
    assert stream.getvalue() == "first\nsecond\n"


def test_logging_shutdown_writes_waiting_lines() -> None:
    stream = CountingStream()
    handler = TurnBufferedHandler(stream)

    async def one() -> None:
        handler.write_line("at exit")
        logging.shutdown([lambda: handler])  # what runs at interpreter exit  # type: ignore[list-item]

    asyncio.run(one())
    assert stream.getvalue() == "at exit\n"


def test_a_failing_stream_drops_lines_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler = TurnBufferedHandler(Broken())
    handler.write_line("lost")
    assert handler._lines == []
    assert "disk full" in capsys.readouterr().err

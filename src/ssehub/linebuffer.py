"""A log handler writing its lines once per event-loop turn instead of once per line.

A busy hub logs an access line per request; written one by one, each costs a ``write`` (and a
flush) on stderr. :class:`TurnBufferedHandler` keeps the formatted lines of one loop turn and
writes them together at the end of the turn, in one ``write``; it writes at once when called
outside a running loop (startup, threads), when ``capacity`` lines are waiting (a stalled
stderr blocks as with a plain StreamHandler, and memory stays bounded), and on ``flush``/
``close``, which ``logging.shutdown`` calls at exit. A crash loses at most one turn's lines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TextIO

CAPACITY = 512  # lines waiting at most (one turn of a busy hub, a few dozen KB)


class TurnBufferedHandler(logging.StreamHandler[TextIO]):
    """A ``StreamHandler`` whose lines go out once per event-loop turn (see module doc)."""

    def __init__(self, stream: TextIO | None = None, capacity: int = CAPACITY) -> None:
        super().__init__(stream)
        self.capacity = max(1, capacity)
        self._lines: list[str] = []
        # The loop whose next turn writes the waiting lines (None: nothing scheduled).
        self._scheduled: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        self._add(line)

    def write_line(self, line: str) -> None:
        """Write ``line``, already formatted, as ``emit`` writes a record's."""
        with self.lock:  # type: ignore[union-attr]
            self._add(line)

    def _add(self, line: str) -> None:
        self._lines.append(line + self.terminator)
        if len(self._lines) >= self.capacity:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._scheduled is not loop:
            # A loop that closed with a write pending left its lines here: this one takes them.
            loop.call_soon(self.flush)
            self._scheduled = loop

    def flush(self) -> None:
        """Write the waiting lines in one call, then flush the stream."""
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            self._scheduled = None
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                super().flush()
            except RecursionError:
                raise
            except Exception:
                self._write_failed(lines[-1])

    def close(self) -> None:
        """Write the waiting lines, then close as ``StreamHandler`` does."""
        self.flush()
        super().close()

    def _write_failed(self, line: str) -> None:
        """Report a failed write as ``StreamHandler`` does (the lines are dropped, not kept)."""
        record = logging.makeLogRecord({"msg": line.rstrip("\n"), "name": __name__})
        self.handleError(record)

"""Incremental Server-Sent Events decoder, exactly per WHATWG HTML 9.2.6.

Feed it bytes (or text) as they arrive; it returns the events dispatched so far. It handles CR,
LF and CRLF line ends (also when CRLF is split across chunks), a leading U+FEFF BOM, fields
without a colon, exactly one optional space after the colon, ``retry`` only when all ASCII
digits, ids containing NULL ignored, and it drops the data buffer's final LF on dispatch.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """A dispatched event as a browser's EventSource would see it."""

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Stateful decoder: ``feed()`` chunks in, dispatched events out."""

    def __init__(self, last_event_id: str = "") -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._pending_cr = False
        self._data: list[str] = []
        self._event_type = ""
        self._last_event_id = last_event_id
        self._retry: int | None = None
        self.reconnection_time: int | None = None

    @property
    def last_event_id(self) -> str:
        """The last event ID buffer, which a client sends back as Last-Event-ID."""
        return self._last_event_id

    def feed(self, chunk: bytes | str) -> list[ServerSentEvent]:
        """Decode a chunk and return every event it completes."""
        text = self._utf8.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._pending_cr and text:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        self._buffer += text
        events: list[ServerSentEvent] = []
        buffer = self._buffer
        start = 0
        length = len(buffer)
        while start < length:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, next_start = lf, lf + 1
            else:
                end = cr
                if cr + 1 < length:
                    next_start = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
                else:
                    next_start = cr + 1
                    self._pending_cr = True
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = next_start
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self._last_event_id = value
        elif name == "retry" and value and value.isascii() and value.isdigit():
            self._retry = self.reconnection_time = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        retry, self._retry = self._retry, None
        if not self._data:
            self._event_type = ""
            return None
        data = "\n".join(self._data)
        event = ServerSentEvent(
            event=self._event_type or "message",
            data=data,
            id=self._last_event_id,
            retry=retry,
        )
        self._data = []
        self._event_type = ""
        return event

"""WHATWG "event stream interpretation" conformance of the incremental decoder."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ssehub.parser import ServerSentEvent, SSEDecoder


def decode(*chunks: bytes | str) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    out: list[ServerSentEvent] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def test_lf_cr_and_crlf_line_ends() -> None:
    for sep in ("\n", "\r", "\r\n"):
        text = f"data: a{sep}data: b{sep}{sep}"
        assert decode(text) == [ServerSentEvent(data="a\nb")]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    assert decode("data: a\r", "\ndata: b\r", "\n\r", "\n") == [ServerSentEvent(data="a\nb")]


def test_leading_bom_is_skipped_once() -> None:
    assert decode(b"\xef\xbb\xbfdata: x\n\n") == [ServerSentEvent(data="x")]
    assert decode("\ufeffdata: x\n\n\ufeffdata: y\n\n")[1:] == []  # second BOM is a field name


def test_field_without_colon_uses_empty_value() -> None:
    assert decode("data\n\n") == [ServerSentEvent(data="")]
    assert decode("event\ndata: x\n\n") == [ServerSentEvent(data="x")]


def test_only_one_space_after_colon_is_removed() -> None:
    assert decode("data:  two\n\n") == [ServerSentEvent(data=" two")]
    assert decode("data:none\n\n") == [ServerSentEvent(data="none")]


def test_retry_only_when_all_digits() -> None:
    decoder = SSEDecoder()
    decoder.feed("retry: 12a\n\nretry: -5\n\nretry:\n\n")
    assert decoder.reconnection_time is None
    (event,) = decoder.feed("retry: 2500\ndata: x\n\n")
    assert decoder.reconnection_time == 2500
    assert event.retry == 2500


def test_id_with_null_is_ignored_and_id_persists() -> None:
    events = decode("id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", "1"]


def test_empty_id_resets_last_event_id() -> None:
    events = decode("id: 7\ndata: a\n\nid\ndata: b\n\n")
    assert [e.id for e in events] == ["7", ""]


def test_block_without_data_is_not_dispatched_and_resets_type() -> None:
    assert decode("event: x\n\ndata: y\n\n") == [ServerSentEvent(event="message", data="y")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    assert decode(": hello\nfoo: bar\ndata: z\n\n") == [ServerSentEvent(data="z")]


def test_incomplete_event_at_end_is_not_dispatched() -> None:
    assert decode("data: partial\n") == []


def test_multibyte_utf8_split_across_chunks() -> None:
    raw = "data: héllo ✓\n\n".encode()
    assert decode(raw[:8], raw[8:9], raw[9:]) == [ServerSentEvent(data="héllo ✓")]


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    stream = b"id: 1\r\nevent: a\r\ndata: x\r\ndata: y\r\n\r\n: c\rdata: z\r\r\ndata\n\n"
    whole = decode(stream)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert decode(*chunks) == whole
    assert [e.data for e in whole] == ["x\ny", "z", ""]

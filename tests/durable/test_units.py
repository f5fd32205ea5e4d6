"""Pure parts of Durable Streams: offsets, cursors, producer decisions, JSON framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssehub.durable import content
from ssehub.durable.errors import BadBody
from ssehub.durable.offsets import CURSOR_EPOCH, format_offset, next_cursor, parse_offset
from ssehub.durable.producers import Producer, ProducerState, Verdict, decide, producer_from_headers
from ssehub.errors import BadRequest


@given(st.integers(0, 10**19), st.integers(0, 10**19))
def test_offsets_sort_as_positions_and_round_trip(a: int, b: int) -> None:
    assert (format_offset(a) < format_offset(b)) == (a < b)
    assert parse_offset(format_offset(a)) == a


@pytest.mark.parametrize("token", ["-1", "now", "", "12", "0" * 19 + "x", "0" * 21, "1_2"])
def test_foreign_tokens_are_not_offsets(token: str) -> None:
    assert parse_offset(token) is None


def test_cursor_moves_past_an_echoed_cursor() -> None:
    now = CURSOR_EPOCH + 20 * 1000 + 5
    assert next_cursor(None, now=now) == "1000"
    assert int(next_cursor("1000", now=now)) > 1000
    assert int(next_cursor("5000", now=now)) > 5000
    assert next_cursor("999", now=now) == "1000"


@pytest.mark.parametrize(
    ("state", "epoch", "seq", "verdict"),
    [
        (None, 0, 0, Verdict.ACCEPT),
        (None, 0, 1, Verdict.GAP),
        (ProducerState(1, 4), 1, 5, Verdict.ACCEPT),
        (ProducerState(1, 4), 1, 4, Verdict.DUPLICATE),
        (ProducerState(1, 4), 1, 2, Verdict.DUPLICATE),
        (ProducerState(1, 4), 1, 7, Verdict.GAP),
        (ProducerState(1, 4), 0, 9, Verdict.STALE_EPOCH),
        (ProducerState(1, 4), 2, 0, Verdict.ACCEPT),
        (ProducerState(1, 4), 2, 3, Verdict.BAD_EPOCH_SEQ),
    ],
)
def test_producer_decisions(
    state: ProducerState | None, epoch: int, seq: int, verdict: Verdict
) -> None:
    assert decide(Producer("p", epoch, seq), state).verdict is verdict


def test_producer_headers_go_together_and_are_bounded() -> None:
    assert producer_from_headers(None, None, None) is None
    assert producer_from_headers("p", "1", "2") == Producer("p", 1, 2)
    for bad in [("p", "1", None), ("", "1", "2"), ("p", "-1", "0"), ("p", "1", str(2**53))]:
        with pytest.raises(BadRequest):
            producer_from_headers(*bad)


def test_json_appends_flatten_one_level() -> None:
    assert content.json_fragment(b'[{"a":1},[2,3]]', allow_empty=False) == (b'{"a":1},[2,3]', 2)
    assert content.json_fragment(b'"x"', allow_empty=False) == (b'"x"', 1)
    assert content.json_fragment(b"[]", allow_empty=True) == (b"", 0)
    assert content.json_body([b'{"a":1},2', b"", b"3"]) == b'[{"a":1},2,3]'
    assert content.json_texts(b'{"a":1},[2]') == ['{"a":1}', "[2]"]
    assert content.json_fragment(b"123456789012345678901234567890", allow_empty=False)[1] == 1
    for bad in [b"[]", b"{", b"NaN", b"\xff"]:
        with pytest.raises(BadBody):
            content.json_fragment(bad, allow_empty=False)


def test_sse_data_is_text_for_text_and_json_and_base64_otherwise() -> None:
    assert content.sse_data("text/plain; charset=utf-8", b"hi") == "hi"
    assert content.sse_data("application/json", b'{"a":1}') == '[{"a":1}]'
    assert content.sse_data("application/octet-stream", b"\x00\x01") == "AAE="
    assert content.encode_sse("data", "a\r\nb") == b"event: data\ndata:a\ndata:b\n\n"

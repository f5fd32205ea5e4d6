"""The encoder never emits a broken frame and round-trips through the decoder."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssehub.errors import InvalidEvent, PayloadTooLarge
from ssehub.event import encode_comment, encode_fields, make_event, require_data_size
from ssehub.parser import SSEDecoder


def test_single_line_event_has_every_field() -> None:
    frame = encode_fields(id="e-1", event="token", data='{"a":1}', retry=3000)
    assert frame == b'event: token\nretry: 3000\ndata: {"a":1}\nid: e-1\n\n'


@pytest.mark.parametrize("data", ["a\nb", "a\rb", "a\r\nb"])
def test_every_line_end_in_data_starts_a_new_data_line(data: str) -> None:
    assert encode_fields(data=data) == b"data: a\ndata: b\n\n"


def test_empty_data_still_dispatches() -> None:
    frame = encode_fields(event="ping", data="")
    assert frame == b"event: ping\ndata: \n\n"
    (event,) = SSEDecoder().feed(frame)
    assert (event.event, event.data) == ("ping", "")


BREAKS = ["a\nb", "a\rb", "a\r\nid: x", "x\x00", "a\x0bb", "a\x0cb", "a\x85b", "a\u2028b", "\u2029"]


@pytest.mark.parametrize("bad", BREAKS)
def test_id_and_event_with_line_ends_or_nul_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidEvent):
        encode_fields(id=bad, data="x")
    with pytest.raises(InvalidEvent):
        encode_fields(event=bad, data="x")
    with pytest.raises(InvalidEvent):
        make_event("c", bad, "x")


def test_comment_frame_is_ignored_by_decoder() -> None:
    assert encode_comment("ping") == b": ping\n\n"
    assert SSEDecoder().feed(encode_comment("a\nb")) == []


def test_lone_surrogates_are_rejected_not_crashing() -> None:
    for data in ["\ud800", {"k": "\udfff"}]:
        with pytest.raises(InvalidEvent):
            make_event("c", "t", data)
    with pytest.raises(InvalidEvent):
        make_event("c", "\ud800", "x")


def test_json_data_is_compact_and_strings_verbatim() -> None:
    assert make_event("c", "t", {"k": [1, 2]}).data == '{"k":[1,2]}'
    assert make_event("c", "t", "plain text").data == "plain text"


_field = st.text(
    st.characters(
        blacklist_characters="\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
        blacklist_categories=("Cs",),
    ),
    max_size=30,
)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(
    id=_field,
    event=_field.filter(bool),
    data=_text,
    retry=st.none() | st.integers(min_value=0, max_value=10**9),
    cut=st.integers(min_value=0, max_value=400),
)
def test_round_trip_through_decoder_in_any_chunking(
    id: str, event: str, data: str, retry: int | None, cut: int
) -> None:
    frame = encode_fields(id=id, event=event, data=data, retry=retry)
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    decoder = SSEDecoder()
    cut = min(cut, len(frame))
    events = decoder.feed(frame[:cut]) + decoder.feed(frame[cut:])
    assert len(events) == 1
    assert events[0].data == expected
    assert events[0].event == event
    assert events[0].id == id
    assert events[0].retry == retry


@given(_text, _text)
def test_data_can_never_inject_fields(before: str, injected: str) -> None:
    data = f"{before}\nevent: evil\nid: 666\n\n{injected}"
    events = SSEDecoder().feed(encode_fields(id="1", event="good", data=data))
    assert [(e.event, e.id) for e in events] == [("good", "1")]


def test_id_is_the_last_field_of_a_frame() -> None:
    frame = encode_fields(id="e-9", event="token", data="a\nb", retry=5)
    assert frame.split(b"\n")[-3:] == [b"id: e-9", b"", b""]


@given(
    st.recursive(
        _text | st.integers(-(2**53), 2**53), lambda kids: st.lists(kids, max_size=3), max_leaves=5
    )
)
def test_json_data_has_no_line_break_for_splitlines(value: object) -> None:
    data = make_event("c", "t", {"v": value}).data
    assert data.splitlines() == [data]
    assert orjson.loads(data) == {"v": value}


@pytest.mark.parametrize(
    ("data", "limit", "fits"),
    [
        ("a" * 8, 8, True),
        ("a" * 9, 8, False),
        ("é" * 2, 8, True),  # 4 bytes, decided by its length alone
        ("é" * 4, 8, True),  # 8 bytes: counted
        ("é" * 5, 8, False),  # 10 bytes
        ("😀" * 2, 8, True),  # 8 bytes
        ("😀" * 2 + "a", 8, False),
        ("中" * 9, 8, False),  # more characters than bytes allowed
    ],
)
def test_data_size_is_counted_in_utf8(data: str, limit: int, fits: bool) -> None:
    event = make_event("c", None, data)
    if fits:
        require_data_size(event, limit)
    else:
        with pytest.raises(PayloadTooLarge):
            require_data_size(event, limit)

"""No event name, id, channel or data can inject SSE fields or split a frame.

Per WHATWG, only CR, LF and CRLF end a line in an event stream; U+2028, U+2029 and U+0085 are
ordinary characters there and string data carries them unchanged. Clients that split lines with
``str.splitlines()`` break at them too, so event names refuse them and JSON data (and the
client's own id echoed in a ``reset``) carries them escaped. Each case is checked on the raw
bytes (one frame, no extra field line) and through the decoder (the same event, whole).
"""

from __future__ import annotations

import urllib.parse

import httpx
import orjson
import pytest

from harness import RunningHub, open_stream

BREAKERS = {
    "cr": "\r",
    "lf": "\n",
    "crlf": "\r\n",
    "nul": "\x00",
    "u2028": "\u2028",
    "u2029": "\u2029",
    "nel": "\x85",
}
LINE_ENDS = ("\r", "\n", "\r\n")
EVIL = "event: evil{}id: 666{}retry: 1{}data: injected"


def frames(raw: bytes) -> list[bytes]:
    """The frames after the opening `connected` one (split on blank lines, as a client does)."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return [f for f in text.split(b"\n\n") if f and b"event: connected" not in f]


def assert_no_injected_field(frame: bytes) -> None:
    fields = [line.split(b":", 1)[0] for line in frame.split(b"\n") if line]
    assert fields.count(b"id") <= 1 and fields.count(b"event") <= 1, frame
    assert b"retry" not in fields, frame


@pytest.mark.parametrize("name", sorted(BREAKERS))
async def test_data_never_splits_a_frame(hub: RunningHub, client: httpx.AsyncClient, name: str):
    sep = BREAKERS[name]
    payload = "head" + sep + EVIL.format(sep, sep, sep) + sep + sep + "tail"
    async with open_stream(client, f"{hub.url}/api/v1/sse/stream/inj") as reader:
        response = await client.post(
            f"{hub.url}/api/v1/publish/inj", json={"event": "t", "data": payload}
        )
        assert response.status_code == 200
        marker = await client.post(f"{hub.url}/api/v1/publish/inj", json={"event": "end"})
        assert marker.status_code == 200
        await reader.wait_count(1, event="end")
    got = [e for e in reader.events if e.event not in ("connected", "end")]
    assert len(got) == 1
    assert got[0].event == "t" and got[0].id == response.json()["id"]
    expected = payload
    if sep in LINE_ENDS:  # line ends become LF, the one data line separator
        expected = payload.replace(sep, "\n")
    assert got[0].data == expected
    sent = frames(bytes(reader.raw))
    assert len(sent) == 2  # the event and the `end` marker
    assert_no_injected_field(sent[0])


@pytest.mark.parametrize("name", sorted(BREAKERS))
async def test_event_names_with_any_line_break_are_refused(
    hub: RunningHub, client: httpx.AsyncClient, name: str
) -> None:
    sep = BREAKERS[name]
    event = "ok" + sep + "event: evil"
    async with open_stream(client, f"{hub.url}/api/v1/sse/stream/names") as reader:
        single = await client.post(f"{hub.url}/api/v1/publish/names", json={"event": event})
        batch = await client.post(
            f"{hub.url}/api/v1/publish", json=[{"channel": "names", "event": event, "data": 1}]
        )
        for response in (single, batch):
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "invalid_event"
        await client.post(f"{hub.url}/api/v1/publish/names", json={"event": "end"})
        await reader.wait_count(1, event="end")
    assert [e.event for e in reader.events if e.event not in ("connected", "end")] == []
    assert all(e.event != "evil" for e in reader.events)
    for frame in frames(bytes(reader.raw)):
        assert_no_injected_field(frame)


@pytest.mark.parametrize("name", sorted(BREAKERS))
async def test_channels_with_breakers_are_refused_everywhere(
    hub: RunningHub, client: httpx.AsyncClient, name: str
) -> None:
    channel = urllib.parse.quote("a" + BREAKERS[name] + "b", safe="")
    for response in (
        await client.post(f"{hub.url}/api/v1/publish/{channel}", json={"data": 1}),
        await client.get(f"{hub.url}/api/v1/sse/stream/{channel}"),
        await client.get(f"{hub.url}/api/v1/sse/stream?channel={channel}"),
        await client.get(f"{hub.url}/api/v1/channels/{channel}/events"),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] in ("invalid_channel", "bad_request")


@pytest.mark.parametrize("name", sorted(BREAKERS))
async def test_last_event_id_cannot_inject_into_the_opening_frame(
    hub: RunningHub, client: httpx.AsyncClient, name: str
) -> None:
    sep = BREAKERS[name]
    evil = urllib.parse.quote("1-1" + sep + "event: evil" + sep + "data: x", safe="")
    url = f"{hub.url}/api/v1/sse/stream/ids?lastEventId={evil}"
    request = client.build_request("GET", url)
    response = await client.send(request, stream=True)
    try:
        if response.status_code != 200:
            assert response.status_code == 400
            return
        chunk = b""
        async for part in response.aiter_raw():
            chunk += part
            if b"\n\n" in chunk:
                break
    finally:
        await response.aclose()
    opening = chunk.split(b"\n\n")[0]
    fields = [line.split(b":", 1)[0] for line in opening.split(b"\n")]
    assert fields == [b"event", b"retry", b"data", b"id"], opening
    assert b"evil" not in opening


SPLITLINES_BREAKS = ("\x85", "\u2028", "\u2029")


@pytest.mark.parametrize("sep", SPLITLINES_BREAKS)
async def test_json_data_and_echoed_ids_carry_line_separators_escaped(
    hub: RunningHub, client: httpx.AsyncClient, sep: str
) -> None:
    value = {"text": f"a{sep}event: evil{sep}b"}
    async with open_stream(client, f"{hub.url}/api/v1/sse/stream/json") as reader:
        sent = await client.post(f"{hub.url}/api/v1/publish/json", json={"data": value})
        assert sent.status_code == 200
        await reader.wait_count(1)
    assert orjson.loads(reader.data[0]) == value  # the same value, escaped on the wire
    assert sep.encode() not in reader.raw
    # A client's id that is not ours is echoed in `reset`: as escaped JSON text, never raw.
    evil = urllib.parse.quote(f"x{sep}event: evil-1", safe="")
    url = f"{hub.url}/api/v1/sse/stream/json?lastEventId={evil}"
    async with open_stream(client, url) as resumed:
        await resumed.wait_for(lambda r: r.of_type("reset"))
    assert orjson.loads(resumed.of_type("reset")[0].data)["last_event_id"].startswith("x" + sep)
    assert sep.encode() not in resumed.raw
    for line in resumed.raw.decode().splitlines():
        assert not line.startswith("event: evil"), line

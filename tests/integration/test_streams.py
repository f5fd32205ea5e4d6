"""Streams against a real hub on loopback: fan-out, selectors, resume, slow consumers."""

from __future__ import annotations

import asyncio
import contextlib
import os

import httpx
import pytest

from harness import open_stream, publish, running_hub
from ssehub.settings import Settings


async def test_fifty_clients_receive_a_hundred_events_in_order(hub, client) -> None:
    url = f"{hub.url}/api/v1/sse/stream/fanout"
    async with contextlib.AsyncExitStack() as stack:
        readers = [await stack.enter_async_context(open_stream(client, url)) for _ in range(50)]
        sent = [str(i) for i in range(100)]
        for value in sent:
            await publish(client, hub.url, "fanout", value, event="n")
        for reader in readers:
            await reader.wait_count(100)
        assert all(reader.data == sent for reader in readers)
        assert len({e.id for e in readers[0].events}) == 101


async def test_stream_frames_and_headers(hub, client) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/stream/demo") as reader:
        headers = reader.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        connected = reader.events[0]
        assert connected.event == "connected"
        assert connected.retry == 3000
        assert headers["x-client-id"] in connected.data
        await publish(client, hub.url, "demo", {"task_id": "1", "progress": 50}, "task.progress")
        await reader.wait_count(1)
        event_id = reader.events[-1].id
        # id: is the last field, so a client that records it on reading has the whole event.
        frame = f'event: task.progress\ndata: {{"task_id":"1","progress":50}}\nid: {event_id}\n\n'
        assert frame.encode() in reader.raw


async def test_pattern_and_multi_channel_subscriptions(hub, client) -> None:
    pattern = f"{hub.url}/api/v1/sse/stream/project:1:stage:*"
    multi = f"{hub.url}/api/v1/sse/stream?channel=a&channel=b"
    async with open_stream(client, pattern) as stages, open_stream(client, multi) as ab:
        for channel in ["project:1:stage:rewrite", "project:2:stage:x", "a", "c", "b"]:
            await publish(client, hub.url, channel, channel)
        await publish(client, hub.url, "project:1:stage:image", "last")
        await stages.wait_count(2)
        await ab.wait_count(2)
        assert stages.data == ["project:1:stage:rewrite", "last"]
        assert ab.data == ["a", "b"]


async def test_overlapping_selectors_deliver_once(hub, client) -> None:
    url = f"{hub.url}/api/v1/sse/stream/p:*?channel=p:x"
    async with open_stream(client, url) as reader:
        await publish(client, hub.url, "p:x", "one")
        await publish(client, hub.url, "p:y", "two")
        await reader.wait_count(2)
        assert reader.data == ["one", "two"]


async def test_type_filter(hub, client) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/stream/t?types=done,error") as reader:
        for event in ["token", "done", "token", "error"]:
            await publish(client, hub.url, "t", event, event)
        await reader.wait_count(2)
        assert [e.event for e in reader.events[1:]] == ["done", "error"]


async def test_resume_while_publishing_sees_exactly_the_sequence(hub, client) -> None:
    url = f"{hub.url}/api/v1/sse/stream/resume"
    total = 300
    stop = asyncio.Event()

    async def publisher() -> None:
        for i in range(total):
            await publish(client, hub.url, "resume", str(i))
        stop.set()

    seen: list[str] = []
    async with open_stream(client, url) as first:
        last_id = first.events[0].id  # the connected event's position, before any publish
    task = asyncio.create_task(publisher())
    drops = 0
    while len(seen) < total:
        async with open_stream(client, url, headers={"Last-Event-ID": last_id}) as reader:
            target = min(total, len(seen) + 40)
            await reader.wait_for(
                lambda r, t=target, s=seen: len(s) + len(r.data) >= t or stop.is_set(), 20
            )
            if stop.is_set():
                await reader.wait_for(lambda r, s=seen: len(s) + len(r.data) >= total, 20)
            got = [e for e in reader.events if e.event != "connected"]
            seen += [e.data for e in got]
            if got:
                last_id = got[-1].id
            drops += 1
    await task
    assert seen == [str(i) for i in range(total)]
    assert drops >= 2


async def test_connected_id_resumes_a_client_that_saw_nothing(hub, client) -> None:
    url = f"{hub.url}/api/v1/sse/stream/quiet"
    async with open_stream(client, url) as reader:
        position = reader.events[0].id
    await publish(client, hub.url, "quiet", "missed-while-away")
    async with open_stream(client, url, headers={"Last-Event-ID": position}) as reader:
        await reader.wait_count(1)
        assert reader.data == ["missed-while-away"]
        assert '"resumed":true' in reader.events[0].data


async def test_query_last_event_id_and_header_precedence(hub, client) -> None:
    ids = [(await publish(client, hub.url, "q", str(i)))["id"] for i in range(3)]
    url = f"{hub.url}/api/v1/sse/stream/q?lastEventId={ids[0]}"
    async with open_stream(client, url) as reader:
        await reader.wait_count(2)
        assert reader.data == ["1", "2"]
    async with open_stream(client, url, headers={"Last-Event-ID": ids[1]}) as reader:
        await reader.wait_count(1)
        assert reader.data == ["2"]


async def test_multi_channel_resume_from_one_id(hub, client) -> None:
    url = f"{hub.url}/api/v1/sse/stream/m:*?channel=other"
    first = await publish(client, hub.url, "m:a", "0")
    for channel, value in [("m:b", "1"), ("other", "2"), ("m:a", "3"), ("skip", "x")]:
        await publish(client, hub.url, channel, value)
    async with open_stream(client, url, headers={"Last-Event-ID": first["id"]}) as reader:
        await reader.wait_count(3)
        assert reader.data == ["1", "2", "3"]


async def test_resume_older_than_history_gets_reset(client) -> None:
    settings = Settings(_env_file=None, history_size=5)  # type: ignore[call-arg]
    async with running_hub(settings) as hub:
        first = await publish(client, hub.url, "short", "0")
        for i in range(1, 20):
            await publish(client, hub.url, "short", str(i))
        url = f"{hub.url}/api/v1/sse/stream/short"
        async with open_stream(client, url, headers={"Last-Event-ID": first["id"]}) as reader:
            await reader.wait_count(1, event="reset")
            await publish(client, hub.url, "short", "live")
            await reader.wait_for(lambda r: "live" in r.data)
            assert reader.data[-1] == "live"
            assert [e.event for e in reader.events[:2]] == ["connected", "reset"]
        for stale in ["zzz-1", "garbage"]:
            async with open_stream(client, url, headers={"Last-Event-ID": stale}) as reader:
                await reader.wait_count(1, event="reset")


async def test_slow_client_is_dropped_while_fast_clients_get_everything(client) -> None:
    settings = Settings(_env_file=None, subscriber_buffer=20)  # type: ignore[call-arg]
    payload = "x" * 16_000
    async with running_hub(settings) as hub:
        url = f"{hub.url}/api/v1/sse/stream/firehose"
        slow = await client.send(client.build_request("GET", url), stream=True)  # never read
        try:
            fast = [open_stream(client, url) for _ in range(20)]
            readers = [await cm.__aenter__() for cm in fast]
            await _wait_connections(hub, 21)
            total = 300
            for i in range(total):
                await publish(client, hub.url, "firehose", f"{i}:{payload}")
                if i % 50 == 0:
                    for reader in readers:
                        await reader.wait_count(i + 1)
            for reader in readers:
                await reader.wait_count(total)
                assert [d.split(":")[0] for d in reader.data] == [str(i) for i in range(total)]
            await _wait_connections(hub, 20)
            assert hub.hub.stats.closed.get("slow_consumer") == 1
            slow_conn_buffers = [len(c.queued) for c in hub.hub.connections.values()]
            assert max(slow_conn_buffers) <= settings.subscriber_buffer
            for cm in fast:
                await cm.__aexit__(None, None, None)
        finally:
            await slow.aclose()


async def _wait_connections(hub, n: int) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(10):
        while len(hub.hub.connections) != n:
            await asyncio.sleep(0.02)


async def test_idempotency_key_stores_once(hub, client) -> None:
    headers = {"Idempotency-Key": "req-42"}
    first = await publish(client, hub.url, "idem", "v", headers=headers)
    again = await publish(client, hub.url, "idem", "v", headers=headers)
    other = await publish(client, hub.url, "idem", "v", headers={"Idempotency-Key": "req-43"})
    assert first == again and other["id"] != first["id"]
    page = (await client.get(f"{hub.url}/api/v1/channels/idem/events")).json()
    assert [e["id"] for e in page["events"]] == [first["id"], other["id"]]


async def test_heartbeat_comments_at_configured_interval(client) -> None:
    settings = Settings(_env_file=None, heartbeat_seconds=0.2)  # type: ignore[call-arg]
    async with (
        running_hub(settings) as hub,
        open_stream(client, f"{hub.url}/api/v1/sse/stream/hb") as r,
    ):
        loop = asyncio.get_running_loop()
        start = loop.time()
        await r.wait_for(lambda rd: rd.raw.count(b": ping\n\n") >= 5, 5)
        elapsed = loop.time() - start
        assert 0.75 <= elapsed <= 1.7  # five beats of 0.2 s, not one every other tick


async def test_heartbeats_go_to_quiet_streams_only(client) -> None:
    settings = Settings(_env_file=None, heartbeat_seconds=0.5)  # type: ignore[call-arg]
    async with (
        running_hub(settings) as hub,
        open_stream(client, f"{hub.url}/api/v1/sse/stream/busy") as busy,
        open_stream(client, f"{hub.url}/api/v1/sse/stream/quiet") as quiet,
    ):
        for n in range(30):  # 1.5 s of events every 50 ms: three beats long
            await publish(client, hub.url, "busy", n)
            await busy.wait_count(n + 1)
            await asyncio.sleep(0.05)
        assert b": ping" not in busy.raw
        assert quiet.raw.count(b": ping") >= 2
        await busy.wait_for(lambda r: b": ping" in r.raw, 2)  # quiet now: the beat resumes


async def test_batch_publish_and_history_api(hub, client) -> None:
    batch = [{"channel": "b1", "event": "e", "data": 1}, {"channel": "b2", "data": {"x": 2}}]
    response = await client.post(f"{hub.url}/api/v1/publish", json=batch)
    assert response.status_code == 200
    ids = [item["id"] for item in response.json()["events"]]
    assert [item["channel"] for item in response.json()["events"]] == ["b1", "b2"]
    page = (await client.get(f"{hub.url}/api/v1/channels/b2/events")).json()
    assert page["events"][0]["data"] == {"x": 2} and page["last_id"] == ids[1]
    page = (
        await client.get(f"{hub.url}/api/v1/channels/b1/events", params={"after": ids[0]})
    ).json()
    assert page == {"channel": "b1", "events": [], "last_id": ids[0], "reset": False}


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/v1/publish/demo", {"event": "a\nid: 1", "data": 1}, 400, "invalid_event"),
        ("/api/v1/publish/demo", {"event": "a\r", "data": 1}, 400, "invalid_event"),
        ("/api/v1/publish/bad%20name", {"data": 1}, 400, "invalid_channel"),
        ("/api/v1/publish/demo", {"data": "x" * 70_000}, 413, "payload_too_large"),
        ("/api/v1/publish/demo", {"retry": -1}, 400, "bad_request"),
        ("/api/v1/publish", [], 400, "bad_request"),
    ],
)
async def test_bad_publishes_get_json_errors(hub, client, path, body, status, code) -> None:
    response = await client.post(f"{hub.url}{path}", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_bad_stream_requests_get_json_errors(hub, client) -> None:
    for url in [
        "/api/v1/sse/stream/bad%0Aname",
        "/api/v1/sse/stream",
        "/api/v1/sse/stream/x?channel=a%20b",
    ]:
        response = await client.get(f"{hub.url}{url}")
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] in {"invalid_channel", "bad_request"}
    response = await client.post(f"{hub.url}/api/v1/publish/x", content=b"{not json")
    assert response.status_code == 400
    assert (await client.get(f"{hub.url}/nope")).json()["error"]["code"] == "not_found"
    # Around the stream shortcut: what is not one of its routes gets FastAPI's answers.
    nested = await client.get(f"{hub.url}/api/v1/sse/stream/a/b")
    assert (nested.status_code, nested.json()["error"]["code"]) == (404, "not_found")
    posted = await client.post(f"{hub.url}/api/v1/sse/stream/a")
    assert (posted.status_code, posted.json()["error"]["code"]) == (405, "method_not_allowed")


async def test_connect_stream_gets_broadcast_channel(hub, client) -> None:
    async with open_stream(client, f"{hub.url}/api/v1/sse/connect") as reader:
        client_id = reader.response.headers["x-client-id"]
        assert client_id in hub.hub.connections
        conn = hub.hub.connections[client_id]
        assert conn.selector.channels == {"$broadcast", f"$client:{client_id}"}


@pytest.mark.skipif(os.environ.get("CI_SKIP_SLOW") == "1", reason="slow test disabled")
async def test_python_client_resumes_after_server_side_close(hub) -> None:
    from ssehub.client import Backoff, SSEClient

    url = f"{hub.url}/api/v1/sse/stream/pc"
    got: list[str] = []
    async with httpx.AsyncClient() as http:
        sse = SSEClient(url, backoff=Backoff(initial=0.05, maximum=0.2))

        async def consume() -> None:
            async for event in sse:
                if event.event == "connected":
                    continue
                got.append(event.data)
                if len(got) == 10:
                    return

        task = asyncio.create_task(consume())
        async with asyncio.timeout(10):
            while not hub.hub.connections:
                await asyncio.sleep(0.01)
        for i in range(5):
            await publish(http, hub.url, "pc", str(i))
        async with asyncio.timeout(10):
            while len(got) < 5:
                await asyncio.sleep(0.01)
        hub.hub.close_all("test_drop")
        hub.hub.closing = False
        for i in range(5, 10):
            await publish(http, hub.url, "pc", str(i))
        await asyncio.wait_for(task, 10)
        await sse.aclose()
    assert got == [str(i) for i in range(10)]
    assert sse.connections == 2

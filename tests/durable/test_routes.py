"""Durable Streams in the hub: rights on stream paths, limits, metrics and the EventSource view."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ds_support import MOUNT

from harness import RunningHub, open_stream, running_hub, wait_until
from ssehub.settings import Settings
from tokens import SECRET, bearer, hs256

TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}


def ds_settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/ds.db",
        ds_long_poll_seconds=2,
        **values,
    )


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(ds_settings(tmp_path, jwt_secret=SECRET)) as hub:
        yield hub


async def test_publish_and_subscribe_patterns_apply_to_stream_paths(
    secured: RunningHub, client: httpx.AsyncClient
) -> None:
    writer = bearer(hs256(publish=["ds:chat:*"], subscribe=["ds:chat:*"]))
    reader = bearer(hs256("bob", subscribe=["ds:chat:*"]))
    url = f"{secured.url}{MOUNT}/chat/{uuid.uuid4().hex}"
    assert (await client.put(url, headers=TEXT)).status_code == 401
    assert (await client.put(url, headers={**TEXT, **writer})).status_code == 201
    other = f"{secured.url}{MOUNT}/other/{uuid.uuid4().hex}"
    denied = await client.put(other, headers={**TEXT, **writer})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    assert denied.headers["x-content-type-options"] == "nosniff"
    assert (await client.post(url, headers={**TEXT, **reader}, content=b"x")).status_code == 403
    assert (await client.post(url, headers={**TEXT, **writer}, content=b"hi")).status_code == 204
    read = await client.get(url, params={"offset": "-1"}, headers=reader)
    assert read.status_code == 200 and read.content == b"hi"
    assert read.headers["cache-control"].startswith("private")  # credentials: not shared caches
    assert (await client.delete(url, headers=reader)).status_code == 403
    assert (await client.get(url)).status_code == 401


async def test_streams_per_user_are_limited(tmp_path: Path, client: httpx.AsyncClient) -> None:
    settings = ds_settings(tmp_path, jwt_secret=SECRET, ds_max_streams_per_user=2)
    token = bearer(hs256(publish=["ds:*"]))
    async with running_hub(settings) as hub:
        for n in range(2):
            created = await client.put(f"{hub.url}{MOUNT}/mine/{n}", headers={**TEXT, **token})
            assert created.status_code == 201
        refused = await client.put(f"{hub.url}{MOUNT}/mine/2", headers={**TEXT, **token})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_streams"
        assert (await client.delete(f"{hub.url}{MOUNT}/mine/0", headers=token)).status_code == 204
        again = await client.put(f"{hub.url}{MOUNT}/mine/2", headers={**TEXT, **token})
        assert again.status_code == 201


async def test_appends_and_reads_are_counted_in_metrics(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async with running_hub(ds_settings(tmp_path, open_access=True)) as hub:
        url = f"{hub.url}{MOUNT}/m"
        await client.put(url, headers=TEXT)
        for _ in range(3):
            await client.post(url, headers=TEXT, content=b"abcd")
        await client.get(url, params={"offset": "-1"})
        text = (await client.get(f"{hub.url}/metrics")).text
    assert "ssehub_ds_appends_total 3.0" in text
    assert "ssehub_ds_append_bytes_total 12.0" in text
    assert 'ssehub_ds_reads_total{mode="catch-up"} 1.0' in text


async def test_eventsource_view_resumes_from_last_event_id(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async with running_hub(ds_settings(tmp_path, open_access=True)) as hub:
        url = f"{hub.url}{MOUNT}/chat/1"
        view = f"{hub.url}/api/v1/sse/ds/chat/1"
        await client.put(url, headers=JSON, content=b'[{"n":1},{"n":2}]')
        async with open_stream(client, view, connected=False) as reader:
            await reader.wait_count(2, event="message")
            await client.post(url, headers=JSON, content=b'{"n":3}')
            await reader.wait_count(3, event="message")
        messages = reader.of_type("message")
        assert [m.data for m in messages] == ['{"n":1}', '{"n":2}', '{"n":3}']
        ids = [m.id for m in messages]
        assert ids == sorted(ids) and len(set(ids)) == 3
        # Resume after the first message: the rest of its append, then the next one.
        await client.post(url, headers={**JSON, "Stream-Closed": "true"}, content=b'{"n":4}')
        async with open_stream(
            client, view, headers={"Last-Event-ID": ids[0]}, connected=False
        ) as resumed:
            await resumed.wait_count(1, event="closed")
        assert [m.data for m in resumed.of_type("message")] == ['{"n":2}', '{"n":3}', '{"n":4}']
        end = resumed.of_type("closed")[0].id
        finished = await client.get(view, headers={"Last-Event-ID": end})
        assert finished.status_code == 204  # an EventSource stops reconnecting
        bad = await client.get(view, headers={"Last-Event-ID": "nonsense"})
        assert bad.status_code == 400


async def test_live_readers_woken_by_one_append_share_one_store_read(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    settings = ds_settings(tmp_path, open_access=True, stream_rate_per_ip=0)
    async with running_hub(settings) as hub:
        ds = hub.app.state.durable
        url = f"{hub.url}{MOUNT}/fan"
        await client.put(url, headers=TEXT)
        reads: list[int] = []
        store_read = ds.store.read

        async def counted(meta: Any, after: int, **kw: Any) -> Any:
            reads.append(after)
            return await store_read(meta, after, **kw)

        ds.store.read = counted
        readers = []
        for _ in range(30):
            request = client.build_request("GET", url, params={"offset": "now", "live": "sse"})
            readers.append(await client.send(request, stream=True))
        try:
            lines = [r.aiter_lines() for r in readers]
            for it in lines:  # each reader got its first control event: all are waiting
                while "control" not in await anext(it):
                    pass
            reads.clear()
            await client.post(url, headers=TEXT, content=b"hello")
            for it in lines:
                while "data:hello" not in await anext(it):
                    pass
            # One query for thirty readers (a second one may follow the broker's echo of the
            # wake-up, when readers already wait at the new tail); each on its own: thirty.
            assert reads[:1] == [0] and len(reads) <= 2, reads
        finally:
            for response in readers:
                await response.aclose()


async def test_live_reads_count_against_the_connection_limits(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """SSE reads and the EventSource view are streams: before, one user held any number of them
    (none took a connection slot, so neither ``max_connections_per_user`` nor the hub's total
    applied)."""
    settings = ds_settings(tmp_path, jwt_secret=SECRET, max_connections_per_user=2)
    ann = bearer(hs256("ann", publish=["ds:chat:*"], subscribe=["ds:chat:*"]))
    async with running_hub(settings) as hub:
        url = f"{hub.url}{MOUNT}/chat/1"
        view = f"{hub.url}/api/v1/sse/ds/chat/1"
        assert (await client.put(url, headers={**TEXT, **ann})).status_code == 201
        sse = {"offset": "-1", "live": "sse"}
        async with (
            client.stream("GET", url, params=sse, headers=ann) as first,
            client.stream("GET", view, headers=ann) as second,
        ):
            assert (first.status_code, second.status_code) == (200, 200)
            for third_url, params in ((url, sse), (view, {})):
                async with client.stream("GET", third_url, params=params, headers=ann) as third:
                    await third.aread()
                assert third.status_code == 429, third.text
                assert third.json()["error"]["code"] == "too_many_connections"

        # Both slots come back once the reads end.
        async def both_free() -> bool:
            async with (
                client.stream("GET", url, params=sse, headers=ann) as a,
                client.stream("GET", view, headers=ann) as b,
            ):
                return a.status_code == b.status_code == 200

        await wait_until(both_free, interval=0.1)


async def test_appends_count_against_the_byte_rate(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """Appended bytes are charged like published event data: before, a user appended at the
    publish rate with bodies up to the request limit (100 MB/s into the store at defaults)."""
    limits = {"publish_bytes_rate_per_user": 1.0, "publish_bytes_burst_per_user": 1000}
    settings = ds_settings(tmp_path, jwt_secret=SECRET, **limits)
    ann = bearer(hs256("ann", publish=["ds:chat:*"]))
    async with running_hub(settings) as hub:
        url = f"{hub.url}{MOUNT}/chat/1"
        assert (await client.put(url, headers={**TEXT, **ann})).status_code == 201
        first = await client.post(url, headers={**TEXT, **ann}, content=b"x" * 600)
        assert first.status_code == 204
        second = await client.post(url, headers={**TEXT, **ann}, content=b"x" * 600)
        assert second.status_code == 429, second.text
        assert int(second.headers["retry-after"]) >= 1

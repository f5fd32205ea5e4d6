"""Many `ssehub serve` processes on one Redis: fan-out, resume, patterns, limits, faults."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from harness import (
    HubProcess,
    StreamReader,
    open_stream,
    publish,
    running_hub,
    start_hub_process,
)
from redis_support import RedisServer, delete_prefix, shared_redis_url, unique_prefix
from ssehub.settings import Settings

# One worker runs the module: its tests share the hub processes of the `cluster` fixture.
pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("redis_cluster")]

SECRET = "cluster-test-secret-of-at-least-32-bytes"
STREAM = "/api/v1/sse/stream"


def token(sub: str, *, admin: bool = False) -> str:
    claims: dict[str, Any] = {
        "sub": sub,
        "subscribe": ["*"],
        "publish": ["*"],
        "exp": int(time.time()) + 3600,
    }
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, SECRET, algorithm="HS256")


def auth(sub: str, *, admin: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, admin=admin)}"}


ADMIN = auth("root", admin=True)
_users = itertools.count()


def user() -> dict[str, str]:
    """Headers of a fresh user (each user may hold only a few streams)."""
    return auth(f"u{next(_users)}")


def hub_env(url: str, prefix: str) -> dict[str, str]:
    return {
        "SSEHUB_BROKER_URL": url,
        "SSEHUB_REDIS_PREFIX": prefix,
        "SSEHUB_JWT_SECRET": SECRET,
        "SSEHUB_MAX_CONNECTIONS_PER_USER": "2",
        "SSEHUB_STREAM_RATE_PER_USER": "0",
        "SSEHUB_PUBLISH_RATE_PER_USER": "0",
        "SSEHUB_HEARTBEAT_SECONDS": "1",
        "SSEHUB_LOG_LEVEL": "warning",
    }


@contextlib.asynccontextmanager
async def open_streams(
    client: httpx.AsyncClient, urls: list[str], headers: list[dict[str, str]]
) -> AsyncIterator[list[StreamReader]]:
    """Open one stream per URL with its headers; yields the readers."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(open_stream(client, url, headers=h))
            for url, h in zip(urls, headers, strict=True)
        ]


def start_hubs(tmp_path: Path, env: dict[str, str], count: int) -> list[HubProcess]:
    """Start ``count`` hub processes at once (their start-up is mostly imports)."""
    with ThreadPoolExecutor(count or 1) as pool:
        return list(pool.map(lambda _: start_hub_process(tmp_path, env), range(count)))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[HubProcess]]:
    """Two hub processes on the shared test Redis, under a key prefix of their own."""
    url, prefix = shared_redis_url(), unique_prefix()
    tmp = tmp_path_factory.mktemp("cluster")
    hubs = start_hubs(tmp, hub_env(url, prefix), 2)
    hubs[0].env = hub_env(url, prefix)  # type: ignore[attr-defined]
    yield hubs
    for hub in hubs:
        if hub.process.poll() is None:
            hub.terminate()
    delete_prefix(url, prefix)


@pytest.mark.parametrize("processes", [2, 3])
async def test_processes_deliver_everything_in_order_exactly_once(
    processes: int, cluster: list[HubProcess], client: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = cluster[0].env  # type: ignore[attr-defined]
    extra = start_hubs(tmp_path, env, processes - 2)
    hubs = [*cluster, *extra]
    channel = f"fan:{processes}"
    try:
        urls = [f"{hubs[i % processes].url}{STREAM}/{channel}" for i in range(20)]
        async with open_streams(client, urls, [user() for _ in urls]) as readers:
            for i in range(200):
                await publish(client, hubs[i % processes].url, channel, i, "tick", headers=ADMIN)
            for reader in readers:
                await reader.wait_count(200, timeout=30)
            for reader in readers:
                assert reader.data == [str(i) for i in range(200)]
                ids = [e.id for e in reader.events if e.event == "tick"]
                assert len(set(ids)) == 200
    finally:
        for hub in extra:
            hub.terminate()


async def test_resume_on_another_process_gets_exactly_what_was_missed(
    cluster: list[HubProcess], client: httpx.AsyncClient
) -> None:
    a, b = cluster
    headers = user()
    async with open_stream(client, f"{a.url}{STREAM}/resume:x", headers=headers) as reader:
        for i in range(10):
            await publish(client, a.url, "resume:x", i, headers=ADMIN)
        await reader.wait_count(10)
        last_id = reader.events[-1].id
    for i in range(10, 60):
        await publish(client, a.url if i % 2 else b.url, "resume:x", i, headers=ADMIN)
    resumed_headers = {**headers, "Last-Event-ID": last_id}
    async with open_stream(client, f"{b.url}{STREAM}/resume:x", headers=resumed_headers) as reader:
        await reader.wait_count(50)
        await publish(client, a.url, "resume:x", "live", headers=ADMIN)
        await reader.wait_count(51)
        assert reader.data == [str(i) for i in range(10, 60)] + ["live"]
        assert not reader.of_type("reset")


async def test_pattern_subscription_across_processes(
    cluster: list[HubProcess], client: httpx.AsyncClient
) -> None:
    a, b = cluster
    url = f"{a.url}{STREAM}/project:1:stage:*"
    async with open_stream(client, url, headers=user()) as reader:
        await publish(client, b.url, "project:1:stage:rewrite", "r", "token", headers=ADMIN)
        await publish(client, b.url, "project:2:stage:rewrite", "no", "token", headers=ADMIN)
        await publish(client, a.url, "project:1:stage:review", "v", "token", headers=ADMIN)
        await reader.wait_count(2)
        assert reader.data == ["r", "v"]  # one process delivers in seq order: no leak between


async def test_per_user_limit_holds_across_processes(
    cluster: list[HubProcess], client: httpx.AsyncClient
) -> None:
    a, b = cluster
    headers = user()
    async with (
        open_stream(client, f"{a.url}{STREAM}/lim:1", headers=headers),
        open_stream(client, f"{b.url}{STREAM}/lim:1", headers=headers),
    ):
        refused = await client.get(f"{a.url}{STREAM}/lim:1", headers=headers)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_connections"
        other = await client.get(f"{b.url}{STREAM}/lim:1", headers=headers)
        assert other.status_code == 429
        async with open_stream(client, f"{b.url}{STREAM}/lim:1", headers=user()):
            pass
    # Closing frees the slots on every process, as soon as each hub has seen its client leave.
    async with asyncio.timeout(10):
        while (await client.get(f"{b.url}/api/v1/sse/stats", headers=ADMIN)).json()["statistics"][
            "active_connections"
        ]:
            await asyncio.sleep(0.05)
    async with open_stream(client, f"{b.url}{STREAM}/lim:1", headers=headers):
        pass


async def test_send_and_disconnect_reach_a_client_on_the_other_process(
    cluster: list[HubProcess], client: httpx.AsyncClient
) -> None:
    a, b = cluster
    async with (
        open_stream(client, f"{a.url}/api/v1/sse/connect", headers=user()) as target,
        open_stream(client, f"{a.url}/api/v1/sse/connect", headers=user()) as bystander,
    ):
        client_id = target.response.headers["x-client-id"]
        sent = await client.post(
            f"{b.url}/api/v1/sse/send/{client_id}",
            json={"event": "note", "data": {"hi": 1}},
            headers=ADMIN,
        )
        assert sent.status_code == 200, sent.text
        await target.wait_count(1, event="note")
        answer = await client.get(f"{b.url}/api/v1/sse/stats", headers=ADMIN)
        stats = answer.json()["statistics"]
        assert stats["active_connections"] >= 2 and stats["local_connections"] == 0
        listed = (await client.get(f"{b.url}/api/v1/sse/clients", headers=ADMIN)).json()
        assert client_id in {c["id"] for c in listed["clients"]}
        one = await client.get(f"{b.url}/api/v1/sse/clients/{client_id}", headers=ADMIN)
        assert one.status_code == 200, one.text
        gone = await client.post(f"{b.url}/api/v1/sse/disconnect/{client_id}", headers=ADMIN)
        assert gone.status_code == 200, gone.text
        await asyncio.wait_for(target.closed.wait(), 10)
        assert not bystander.closed.is_set()
        assert not bystander.of_type("note")
        missing = await client.post(f"{b.url}/api/v1/sse/disconnect/nobody", headers=ADMIN)
        assert missing.status_code == 404


async def test_kill_9_clients_reconnect_elsewhere_and_miss_nothing(
    cluster: list[HubProcess], client: httpx.AsyncClient, tmp_path: Path
) -> None:
    a, b = cluster
    doomed = start_hub_process(tmp_path, a.env)  # type: ignore[attr-defined]
    try:
        full = user()  # holds the limit of 2 streams, both on the doomed process
        headers = [full, full, user(), user()]
        last_ids = []
        async with open_streams(client, [f"{doomed.url}{STREAM}/kill:x"] * 4, headers) as readers:
            for i in range(20):
                await publish(client, a.url, "kill:x", i, headers=ADMIN)
            for reader in readers:
                await reader.wait_count(20)
            doomed.kill()
            for reader in readers:
                await asyncio.wait_for(reader.closed.wait(), 10)
                last_ids.append(reader.events[-1].id)
        for i in range(20, 40):
            await publish(client, b.url, "kill:x", i, headers=ADMIN)
        async with contextlib.AsyncExitStack() as stack:
            for hdrs, last_id in zip(headers, last_ids, strict=True):
                resumed = {**hdrs, "Last-Event-ID": last_id}
                r = await open_retrying_429(stack, client, f"{a.url}{STREAM}/kill:x", resumed)
                await r.wait_count(20)
                assert r.data == [str(i) for i in range(20, 40)]
    finally:
        if doomed.process.poll() is None:
            doomed.kill()


async def open_retrying_429(
    stack: contextlib.AsyncExitStack, client: httpx.AsyncClient, url: str, headers: Any
) -> StreamReader:
    """Open a stream on ``stack``, retrying while it is refused with 429 (a dead process's
    slots, freed once its liveness key expires)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return await stack.enter_async_context(open_stream(client, url, headers=headers))
        except AssertionError as exc:
            if "429" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


async def test_redis_outage_503_then_resumes_without_loss(client: httpx.AsyncClient) -> None:
    """Two hubs (in this process: the outage is the broker's business) on a private Redis."""
    server = RedisServer()
    server.start()
    env = hub_env(server.url, unique_prefix())
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **{k.removeprefix("SSEHUB_").lower(): v for k, v in env.items()},
    )
    try:
        async with running_hub(settings) as a, running_hub(settings) as b:
            await outage(client, server, a.url, b.url)
    finally:
        server.stop(save=False)


async def outage(client: httpx.AsyncClient, server: RedisServer, a: str, b: str) -> None:
    """Stop Redis under hubs ``a`` and ``b`` (URLs) with a stream open, then start it again."""
    async with open_stream(client, f"{a}{STREAM}/out:x", headers=user()) as reader:
        for i in range(5):
            await publish(client, b, "out:x", i, headers=ADMIN)
        await reader.wait_count(5)
        server.stop(save=True)
        failed = await client.post(
            f"{b}/api/v1/publish/out:x", json={"data": "lost"}, headers=ADMIN
        )
        assert failed.status_code == 503, failed.text
        assert failed.json()["error"]["code"] == "broker_unavailable"
        ready = await client.get(f"{a}/readyz")
        assert ready.status_code == 503
        refused = await client.get(f"{a}{STREAM}/out:x", headers=user())
        assert refused.status_code == 503, refused.text
        await reader.wait_for(lambda r: b": ping" in r.raw[-200:], timeout=5)
        server.start()
        accepted = []
        deadline = time.monotonic() + 15
        i = 5
        while len(accepted) < 10 and time.monotonic() < deadline:
            answer = await client.post(
                f"{b}/api/v1/publish/out:x", json={"data": str(i)}, headers=ADMIN
            )
            if answer.status_code == 200:
                accepted.append(str(i))
                i += 1
            else:
                assert answer.status_code == 503
                await asyncio.sleep(0.05)
        assert len(accepted) == 10
        await reader.wait_count(15, timeout=15)
        assert reader.data == [str(i) for i in range(5)] + accepted
        assert not reader.closed.is_set()
        deadline = time.monotonic() + 10
        while (await client.get(f"{a}/readyz")).status_code != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


def worker_pids(pid: int) -> list[int]:
    """The ``--workers`` processes of the hub ``pid`` (its children but multiprocessing's
    resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


async def test_a_worker_that_misses_health_checks_for_a_while_is_not_killed(
    cluster: list[HubProcess], tmp_path: Path
) -> None:
    """uvicorn killed a worker that left its 5 s health check unanswered: a worker stalled by
    load for a few seconds lost every stream it held. It now has 15 s (a setting)."""
    env = cluster[0].env  # type: ignore[attr-defined]
    served = start_hub_process(tmp_path, env, args=["--workers", "2"])
    try:
        deadline = time.monotonic() + 20
        while len(workers := worker_pids(served.process.pid)) < 2:
            assert time.monotonic() < deadline, "two worker processes did not start"
            await asyncio.sleep(0.1)
        stalled = workers[0]
        os.kill(stalled, signal.SIGSTOP)
        try:
            # The stall itself: past uvicorn's default window and the supervisor's next round.
            await asyncio.sleep(7)
        finally:
            os.kill(stalled, signal.SIGCONT)
        assert stalled in worker_pids(served.process.pid), served.log()[-2000:]
        assert "died" not in served.log()
    finally:
        served.terminate()


async def test_serve_workers_2_share_one_port_through_redis(
    cluster: list[HubProcess], client: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = cluster[0].env  # type: ignore[attr-defined]
    served = start_hub_process(tmp_path, env, args=["--workers", "2"])
    try:
        deadline = time.monotonic() + 20
        while len(worker_pids(served.process.pid)) < 2:
            assert time.monotonic() < deadline, "two worker processes did not start"
            await asyncio.sleep(0.1)
        urls = [f"{served.url}{STREAM}/workers:x"] * 8
        async with open_streams(client, urls, [user() for _ in urls]) as readers:
            for i in range(20):
                await publish(client, served.url, "workers:x", i, headers=ADMIN)
            for reader in readers:
                await reader.wait_count(20)
                assert reader.data == [str(i) for i in range(20)]
    finally:
        served.terminate()

"""``GET /metrics``: connection, event, latency, refusal and AI-run figures from real traffic."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import StreamReader, open_stream, publish, running_hub, start_hub_process
from redis_support import RedisKeys
from ssehub.settings import Settings


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by (name, labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient, base: str) -> str:
    response = await client.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_stream_events_and_run_figures(settings: Settings, client: httpx.AsyncClient) -> None:
    async with running_hub(settings) as hub:
        url = f"{hub.url}/api/v1/sse/stream/proj:1:stage:a"
        async with open_stream(client, url) as reader:
            text = await scrape(client, hub.url)
            assert value(text, "ssehub_connections_active", family="proj") == 1
            assert value(text, "ssehub_connections_opened_total", family="proj") == 1
            channel = "proj:1:stage:a"
            await publish(client, hub.url, channel, {"status": "processing"}, "stage_update")
            await asyncio.sleep(0.02)  # a measurable time to first token
            for word in ("a", "b", "c"):
                await publish(client, hub.url, channel, {"content": word}, "token")
                await asyncio.sleep(0.01)
            await publish(client, hub.url, channel, {"full_text": "abc"}, "done")
            await reader.wait_count(5)
            text = await scrape(client, hub.url)
        assert value(text, "ssehub_events_published_total", family="proj") == 5
        assert value(text, "ssehub_events_delivered_total") >= 5
        assert value(text, "ssehub_bytes_sent_total") > 0
        assert value(text, "ssehub_publish_to_write_seconds_count") >= 1
        assert value(text, "ssehub_runs_total", family="proj", outcome="done") == 1
        assert value(text, "ssehub_run_time_to_first_token_seconds_count", family="proj") == 1
        assert value(text, "ssehub_run_time_to_first_token_seconds_sum", family="proj") >= 0.02
        assert value(text, "ssehub_run_tokens_per_second_count", family="proj") == 1
        assert value(text, "ssehub_run_duration_seconds_count", family="proj") == 1
        async with asyncio.timeout(5):
            while hub.hub.connections:
                await asyncio.sleep(0.01)
        text = await scrape(client, hub.url)
        assert value(text, "ssehub_connections_active", family="proj") == 0
        assert value(text, "ssehub_connections_closed_total", reason="client_gone") == 1
        assert value(text, "ssehub_connection_duration_seconds_count") == 1


async def test_error_cancel_and_abandon_outcomes(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    async with running_hub(settings) as hub:
        for n, reason in enumerate(("boom", "cancelled", "publisher_timeout")):
            channel = f"job:{n}"
            await publish(client, hub.url, channel, {"content": "x"}, "token")
            await publish(client, hub.url, channel, {"error": reason}, "error")
        text = await scrape(client, hub.url)
    for outcome in ("error", "cancelled", "abandoned"):
        assert value(text, "ssehub_runs_total", family="job", outcome=outcome) == 1


async def test_resume_and_reset_are_counted(settings: Settings, client: httpx.AsyncClient) -> None:
    async with running_hub(settings) as hub:
        first = await publish(client, hub.url, "r", "one")
        url = f"{hub.url}/api/v1/sse/stream/r"
        async with open_stream(client, url, headers={"Last-Event-ID": first["id"]}):
            pass
        async with open_stream(client, url, headers={"Last-Event-ID": "zz-999999"}) as reader:
            await reader.wait_count(1, event="reset")
        text = await scrape(client, hub.url)
    assert value(text, "ssehub_reconnects_resumed_total") == 1
    assert value(text, "ssehub_resets_total") == 1


async def test_auth_failures_and_rate_limits_are_counted(client: httpx.AsyncClient) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        jwt_secret="s" * 32,
        anonymous_publish=["open:*"],
        publish_rate_per_ip=0.001,
        publish_burst_per_ip=1,
    )
    async with running_hub(settings) as hub:
        assert (await client.get(f"{hub.url}/api/v1/sse/stream/private")).status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await client.get(f"{hub.url}/api/v1/sse/stream/x", headers=bad)).status_code == 401
        await publish(client, hub.url, "open:1", "first")
        limited = await client.post(f"{hub.url}/api/v1/publish/open:1", json={"data": "again"})
        assert limited.status_code == 429
        text = await scrape(client, hub.url)
    assert value(text, "ssehub_auth_failures_total", reason="unauthorized") == 2
    assert value(text, "ssehub_rate_limit_rejections_total", code="rate_limited") == 1


async def test_family_labels_are_bounded(settings: Settings, client: httpx.AsyncClient) -> None:
    async with running_hub(settings) as hub:
        hub.hub.metrics.max_families = 3
        for n in range(10):
            await publish(client, hub.url, f"fam{n}:x", n)
        text = await scrape(client, hub.url)
    families = {
        dict(labels)["family"]
        for (name, labels) in samples(text)
        if name == "ssehub_events_published_total"
    }
    assert len(families) <= 4 and "other" in families


def test_multiprocess_mode_aggregates_from_the_shared_directory(tmp_path) -> None:
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    hub = start_hub_process(tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    try:

        async def scenario() -> str:
            url = f"{hub.url}/api/v1/sse/stream/mp:1"
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
                open_stream(client, url) as reader,
            ):
                await publish(client, hub.url, "mp:1", "hello")
                await reader.wait_count(1)
                return await scrape(client, hub.url)

        text = asyncio.run(scenario())
        assert value(text, "ssehub_connections_active", family="mp") == 1
        assert value(text, "ssehub_events_published_total", family="mp") == 1
        assert any(multiproc.glob("*.db"))
    finally:
        hub.terminate()


@pytest.mark.redis
@pytest.mark.slow
def test_workers_2_metrics_add_up_across_processes(tmp_path, redis_keys: RedisKeys) -> None:
    url, prefix = redis_keys.url, redis_keys.prefix
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = {
        "SSEHUB_BROKER_URL": url,
        "SSEHUB_REDIS_PREFIX": prefix,
        "SSEHUB_OPEN_ACCESS": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    hub = start_hub_process(tmp_path, env, args=["--workers", "2"])
    try:

        async def scenario() -> tuple[int, list[str]]:
            limits = httpx.Limits(max_keepalive_connections=0)  # every request a new connection
            timeout = httpx.Timeout(10, read=None)
            async with (
                httpx.AsyncClient(timeout=timeout, limits=limits) as client,
                contextlib.AsyncExitStack() as stack,
            ):
                readers: list[StreamReader] = []
                nodes: set[str] = set()
                while len(nodes) < 2:  # open streams at once until both workers hold some
                    assert len(readers) < 80, "the kernel never gave the second worker a stream"
                    base = len(readers)
                    urls = [f"{hub.url}/api/v1/sse/stream/work:{base + n}" for n in range(8)]
                    opened = await asyncio.gather(
                        *(stack.enter_async_context(open_stream(client, u)) for u in urls)
                    )
                    readers += opened
                    listed = (await client.get(f"{hub.url}/api/v1/sse/clients")).json()
                    nodes = {c["node"] for c in listed["clients"]}
                for n in range(len(readers)):
                    await publish(client, hub.url, f"work:{n}", n)
                for reader in readers:
                    await reader.wait_count(1)
                return len(readers), [await scrape(client, hub.url) for _ in range(6)]

        streams, texts = asyncio.run(scenario())
        for text in texts:  # whichever worker answers, the figures are the cluster's
            assert value(text, "ssehub_connections_active", family="work") == streams
            assert value(text, "ssehub_events_published_total", family="work") == streams
            assert value(text, "ssehub_events_delivered_total") >= streams
        assert len(list(multiproc.glob("gauge_livesum_*.db"))) == 2
    finally:
        hub.terminate()

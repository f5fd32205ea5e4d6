"""CORS for browser pages on other origins: preflights, and headers on every response path."""

from __future__ import annotations

from harness import open_stream, publish, running_hub
from ssehub.settings import Settings

APP = "https://app.example"


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, open_access=True, cors_origins=[APP], **kw)  # type: ignore[call-arg]


async def test_an_allowed_origin_may_stream_publish_and_read_the_client_id(client) -> None:
    for fast in (True, False):  # the direct stream path and the ASGI one
        async with running_hub(settings(fast_streams=fast)) as hub:
            preflight = await client.options(
                f"{hub.url}/api/v1/publish/room",
                headers={
                    "Origin": APP,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == APP
            assert "POST" in preflight.headers["access-control-allow-methods"]
            url = f"{hub.url}/api/v1/sse/stream/room"
            async with open_stream(client, url, headers={"Origin": APP}) as reader:
                headers = reader.response.headers
                assert headers["access-control-allow-origin"] == APP
                assert headers["access-control-allow-credentials"] == "true"
                assert "x-client-id" in headers["access-control-expose-headers"].lower()
                await publish(client, hub.url, "room", 1, headers={"Origin": APP})
                await reader.wait_count(1)


async def test_other_origins_get_no_cors_headers(client) -> None:
    async with running_hub(settings()) as hub:
        url = f"{hub.url}/api/v1/sse/stream/room"
        async with open_stream(client, url, headers={"Origin": "https://evil.example"}) as reader:
            assert "access-control-allow-origin" not in reader.response.headers
        preflight = await client.options(
            url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
    plain = Settings(_env_file=None, open_access=True)  # type: ignore[call-arg]
    async with (
        running_hub(plain) as hub,
        open_stream(client, f"{hub.url}/api/v1/sse/stream/room", headers={"Origin": APP}) as r,
    ):
        assert "access-control-allow-origin" not in r.response.headers  # CORS off by default

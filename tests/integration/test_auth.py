"""JWT authentication, channel rights, anonymous patterns and stream tickets on a real server."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import pytest

from harness import open_stream, publish, running_hub, start_hub_process
from ssehub.settings import Settings
from tokens import SECRET, KeyPair, bearer, claims, expect_error, forge, hs256


def jwt_settings(**kw: object) -> Settings:
    return Settings(_env_file=None, jwt_secret=SECRET, **kw)  # type: ignore[call-arg]


@pytest.fixture
async def hub():  # type: ignore[no-untyped-def]
    async with running_hub(jwt_settings()) as running:
        yield running


def stream_url(hub, channel: str) -> str:  # type: ignore[no-untyped-def]
    return f"{hub.url}/api/v1/sse/stream/{channel}"


async def test_no_token_is_401_with_challenge(hub, client) -> None:
    response = await client.get(stream_url(hub, "news"))
    expect_error(response, 401, "unauthorized", "a token is required")
    assert response.headers["www-authenticate"] == 'Bearer realm="ssehub"'
    response = await client.post(f"{hub.url}/api/v1/publish/news", json={"data": 1})
    expect_error(response, 401, "unauthorized", "no right to publish")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (
            hs256(subscribe=["*"], secret="another-secret-of-the-same-good-length!!"),
            "bad signature",
        ),
        (hs256(subscribe=["*"], ttl=-60), "expired"),
        (hs256(subscribe=["*"], nbf=int(__import__("time").time()) + 600), "not valid yet"),
        (forge({"alg": "none", "typ": "JWT"}, claims(subscribe=["*"]), None), "algorithm"),
        (
            forge({"alg": "HS512", "typ": "JWT"}, claims(subscribe=["*"]), SECRET.encode()),
            "algorithm",
        ),
        ("not.a.token", "invalid token"),
        (hs256(subscribe=["*"], exp=None), "exp"),
    ],
    ids=["bad-signature", "expired", "nbf", "alg-none", "other-alg", "garbage", "no-exp"],
)
async def test_invalid_tokens_are_401(hub, client, token: str, reason: str) -> None:
    response = await client.get(stream_url(hub, "news"), headers=bearer(token))
    expect_error(response, 401, "unauthorized", reason)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_wrong_scheme_is_401(hub, client) -> None:
    response = await client.get(stream_url(hub, "news"), headers={"Authorization": "Basic eDp5"})
    expect_error(response, 401, "unauthorized", "Bearer")


async def test_channel_outside_patterns_is_403(hub, client) -> None:
    token = hs256(subscribe=["project:42:*"], publish=["project:42:*"])
    response = await client.get(stream_url(hub, "project:43:chat"), headers=bearer(token))
    expect_error(response, 403, "forbidden", "no right to subscribe to 'project:43:chat'")
    # a requested pattern wider than the grant is refused
    response = await client.get(stream_url(hub, "project:*"), headers=bearer(token))
    expect_error(response, 403, "forbidden", "project:*")
    response = await client.post(
        f"{hub.url}/api/v1/publish/project:43:x", json={"data": 1}, headers=bearer(token)
    )
    expect_error(response, 403, "forbidden", "no right to publish")
    response = await client.get(
        f"{hub.url}/api/v1/channels/project:43:x/events", headers=bearer(token)
    )
    expect_error(response, 403, "forbidden", "subscribe")
    # reserved channels cannot be requested directly
    response = await client.get(
        f"{hub.url}/api/v1/sse/stream", params={"channel": "$broadcast"}, headers=bearer(token)
    )
    expect_error(response, 400, "invalid_channel")


async def test_narrower_pattern_inside_the_grant_streams(hub, client) -> None:
    token = hs256(subscribe=["project:42:*"], publish=["project:42:*"])
    async with open_stream(
        client, stream_url(hub, "project:42:stage:*"), headers=bearer(token)
    ) as r:
        await publish(client, hub.url, "project:42:stage:draft", "ok", headers=bearer(token))
        await r.wait_count(1)
        assert r.data == ["ok"]


async def test_sub_expansion_isolates_users(hub, client) -> None:
    alice = hs256("alice", subscribe=["user:{sub}:*"], publish=["user:{sub}:*"])
    bob = hs256("bob", subscribe=["user:{sub}:*"], publish=["user:{sub}:*"])
    response = await client.get(stream_url(hub, "user:bob:inbox"), headers=bearer(alice))
    expect_error(response, 403, "forbidden", "user:bob:inbox")
    async with (
        open_stream(client, stream_url(hub, "user:alice:inbox"), headers=bearer(alice)) as ra,
        open_stream(client, stream_url(hub, "user:bob:inbox"), headers=bearer(bob)) as rb,
    ):
        await publish(client, hub.url, "user:alice:inbox", "for-alice", headers=bearer(alice))
        await publish(client, hub.url, "user:bob:inbox", "for-bob", headers=bearer(bob))
        await ra.wait_count(1)
        await rb.wait_count(1)
        assert ra.data == ["for-alice"]
        assert rb.data == ["for-bob"]


@pytest.mark.parametrize("sub", ["a:b", "a*", "", "x" * 200, "a b"])
async def test_subjects_that_could_widen_patterns_are_401(hub, client, sub: str) -> None:
    token = hs256(sub, subscribe=["user:{sub}:*"])
    response = await client.get(stream_url(hub, "user:a:b:inbox"), headers=bearer(token))
    expect_error(response, 401, "unauthorized", "sub must be")


async def test_token_from_query_and_cookie(hub, client) -> None:
    token = hs256(subscribe=["news"])
    async with open_stream(client, stream_url(hub, f"news?access_token={token}")) as reader:
        assert reader.events[0].event == "connected"
    client.cookies.set("ssehub_token", token)
    try:
        async with open_stream(client, stream_url(hub, "news")) as reader:
            assert reader.events[0].event == "connected"
    finally:
        client.cookies.clear()


async def test_admin_claim_and_role_claim(client) -> None:
    async with running_hub(jwt_settings(admin_claim="roles", admin_role="ops")) as hub:
        ops = hs256("ops1", roles=["viewer", "ops"])
        viewer = hs256("v1", roles=["viewer"])
        response = await client.get(f"{hub.url}/api/v1/sse/stats", headers=bearer(ops))
        assert response.status_code == 200, response.text
        response = await client.get(f"{hub.url}/api/v1/sse/stats", headers=bearer(viewer))
        expect_error(response, 403, "forbidden", "admin")


async def test_audience_and_issuer(client) -> None:
    async with running_hub(jwt_settings(jwt_audience="hub", jwt_issuer="https://idp")) as hub:
        good = hs256(subscribe=["*"], aud="hub", iss="https://idp")
        async with open_stream(client, stream_url(hub, "news"), headers=bearer(good)):
            pass
        for bad, why in (
            (hs256(subscribe=["*"], aud="other", iss="https://idp"), "audience"),
            (hs256(subscribe=["*"], aud="hub", iss="https://evil"), "issuer"),
            (hs256(subscribe=["*"], iss="https://idp"), "aud"),
        ):
            response = await client.get(stream_url(hub, "news"), headers=bearer(bad))
            expect_error(response, 401, "unauthorized", why)


async def test_rs256_hub_accepts_rs256_and_refuses_hs256_confusion(tmp_path, client) -> None:
    keys = KeyPair(tmp_path, "rsa")
    settings = Settings(_env_file=None, jwt_public_key_file=str(keys.public_path))  # type: ignore[call-arg]
    async with running_hub(settings) as hub:
        good = keys.token(subscribe=["news"])
        async with open_stream(client, stream_url(hub, "news"), headers=bearer(good)):
            pass
        # the classic confusion: HS256 "signed" with the hub's public key as the HMAC secret
        confused = forge({"alg": "HS256", "typ": "JWT"}, claims(subscribe=["*"]), keys.public_pem)
        response = await client.get(stream_url(hub, "news"), headers=bearer(confused))
        expect_error(response, 401, "unauthorized", "algorithm not allowed")
        response = await client.get(stream_url(hub, "news"), headers=bearer(hs256(subscribe=["*"])))
        expect_error(response, 401, "unauthorized", "algorithm not allowed")


async def test_es256_through_a_jwks_file(tmp_path, client) -> None:
    keys = KeyPair(tmp_path, "ec")
    jwks = keys.jwks(tmp_path / "jwks.json", kid="k1")
    settings = Settings(_env_file=None, jwt_jwks_file=str(jwks))  # type: ignore[call-arg]
    async with running_hub(settings) as hub:
        async with open_stream(
            client,
            stream_url(hub, "news"),
            headers=bearer(keys.token(subscribe=["news"], kid="k1")),
        ):
            pass
        response = await client.get(
            stream_url(hub, "news"), headers=bearer(keys.token(subscribe=["news"], kid="k2"))
        )
        expect_error(response, 401, "unauthorized", "unknown key id")


async def test_anonymous_patterns(client) -> None:
    settings = jwt_settings(anonymous_subscribe=["public:*"])
    async with running_hub(settings) as hub:
        async with open_stream(client, stream_url(hub, "public:stage")) as reader:
            admin = hs256("svc", admin=True)
            await publish(client, hub.url, "public:stage", "hello", headers=bearer(admin))
            await reader.wait_count(1)
        response = await client.get(stream_url(hub, "private:stage"))
        expect_error(response, 401, "unauthorized", "token is required")
        response = await client.post(f"{hub.url}/api/v1/publish/public:stage", json={"data": 1})
        expect_error(response, 401, "unauthorized", "publish")


async def test_demo_mode_opens_everything_and_says_so(client, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ssehub.auth")
    async with running_hub(jwt_settings(demo=True)) as hub:
        async with open_stream(client, stream_url(hub, "anything:at:all")):
            pass
        response = await client.post(f"{hub.url}/api/v1/publish/x", json={"data": 1})
        assert response.status_code == 200
    assert any("AUTH IS OFF" in r.message and "demo" in r.message for r in caplog.records)
    assert any("['*']" in r.message for r in caplog.records)


# -- tickets ---------------------------------------------------------------------------------------


async def create_ticket(client, hub, token: str, channels: list[str]):  # type: ignore[no-untyped-def]
    return await client.post(
        f"{hub.url}/api/v1/sse/tickets", json={"channels": channels}, headers=bearer(token)
    )


async def test_ticket_works_once(hub, client) -> None:
    token = hs256("alice", subscribe=["user:{sub}:*"], publish=["user:{sub}:*"])
    response = await create_ticket(client, hub, token, ["user:alice:inbox"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["expires_in"] == 30
    assert body["channels"] == ["user:alice:inbox"]
    url = stream_url(hub, f"user:alice:inbox?ticket={body['ticket']}")
    async with open_stream(client, url) as reader:
        await publish(client, hub.url, "user:alice:inbox", "via-ticket", headers=bearer(token))
        await reader.wait_count(1)
        clients = hub.app.state.hub.connections.values()
        assert [c.user_id for c in clients] == ["alice"]
    response = await client.get(url)
    expect_error(response, 401, "unauthorized", "unknown, used or expired ticket")


async def test_ticket_is_bound_to_its_channels(hub, client) -> None:
    token = hs256("alice", subscribe=["user:{sub}:*"])
    ticket = (await create_ticket(client, hub, token, ["user:alice:inbox"])).json()["ticket"]
    response = await client.get(stream_url(hub, f"user:alice:other?ticket={ticket}"))
    expect_error(response, 403, "forbidden", "user:alice:other")
    response = await create_ticket(client, hub, token, ["user:bob:inbox"])
    expect_error(response, 403, "forbidden", "user:bob:inbox")
    response = await client.post(f"{hub.url}/api/v1/sse/tickets", json={"channels": ["x"]})
    expect_error(response, 401, "unauthorized")


async def test_ticket_expires(client) -> None:
    async with running_hub(jwt_settings(ticket_ttl_seconds=0.2)) as hub:
        token = hs256("alice", subscribe=["news"])
        ticket = (await create_ticket(client, hub, token, ["news"])).json()["ticket"]
        await asyncio.sleep(0.3)  # past the ticket's lifetime
        response = await client.get(stream_url(hub, f"news?ticket={ticket}"))
        expect_error(response, 401, "unauthorized", "expired")


async def test_serve_demo_logs_that_auth_is_off(tmp_path) -> None:
    process = start_hub_process(tmp_path, {"SSEHUB_JWT_SECRET": ""}, args=["--demo"])  # "" = unset
    try:
        log = process.log()
        assert "AUTH IS OFF (demo mode)" in log
        assert "['*']" in log
    finally:
        assert process.terminate() == 0


async def test_token_command_mints_a_working_token(hub, client) -> None:
    env = {**os.environ, "SSEHUB_JWT_SECRET": SECRET}
    args = ["--sub", "alice", "--subscribe", "user:{sub}:*", "--publish", "user:{sub}:*"]
    minted = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "ssehub.cli", "token", *args, "--ttl", "10m"],
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await minted.communicate()
    assert minted.returncode == 0
    token = out.decode().strip()
    async with open_stream(client, stream_url(hub, "user:alice:x"), headers=bearer(token)):
        pass
    response = await client.get(stream_url(hub, "user:bob:x"), headers=bearer(token))
    expect_error(response, 403, "forbidden")

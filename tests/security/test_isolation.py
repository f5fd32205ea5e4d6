"""Isolation: a user cannot reach another user's private channels by any route or trick.

Alice and Bob hold JWTs for ``user:{sub}:*``. Every attempt by Alice on Bob's channels is
refused (400/403/404), and Bob's live stream proves nothing leaked: after the attempts, only
Bob's own marker event is on it, and Alice's allowed streams never carried Bob's events.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import httpx
import jwt
import pytest

from harness import RunningHub, open_stream, running_hub
from ssehub.settings import Settings

SECRET = "isolation-secret-0123456789abcdef"


def token(sub: str, **claims: object) -> str:
    payload = {
        "sub": sub,
        "exp": int(time.time()) + 600,
        "subscribe": ["user:{sub}:*", "public:*"],
        "publish": ["user:{sub}:*"],
        **claims,
    }
    return jwt.encode(payload, SECRET, algorithm="HS256")


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def attempt(client: httpx.AsyncClient, method: str, url: str, **kw: object) -> httpx.Response:
    """One request whose headers are read; a stream that was (wrongly) opened is closed."""
    response = await client.send(client.build_request(method, url, **kw), stream=True)  # type: ignore[arg-type]
    if response.status_code != 200:
        await response.aread()
    await response.aclose()
    return response


@pytest.fixture
async def secured() -> RunningHub:  # type: ignore[misc]
    settings = Settings(_env_file=None, jwt_secret=SECRET)  # type: ignore[call-arg]
    async with running_hub(settings) as hub:
        yield hub


ALICE_ON_BOB_STREAMS = [
    ("user:bob:inbox", 403),
    ("user:bob:*", 403),
    ("user:*", 403),
    ("*", 403),
    ("user:*:inbox", 403),
    ("*:bob:*", 403),
    ("user%3Abob%3Ainbox", 403),  # percent-encoded colons decode to Bob's channel
    ("user:bob:%2A", 403),  # %2A decodes to a pattern Alice does not hold
    ("user:alice:%252A", 400),  # double encoding stays a literal "%2A": not a channel
    ("user:b\u043eb:inbox", 400),  # Cyrillic small o: names are ASCII only
    ("user:alice:\uff0a", 400),  # fullwidth asterisk is not a wildcard
    ("user:alice:\u2217", 400),  # asterisk operator either
    ("$broadcast", 400),  # reserved names only as /connect adds them
    ("$client:whatever", 400),
    ("user:alice:x%2F..%2F..%2Fuser:bob:inbox", 404),  # a slash is no channel character
]


@pytest.mark.parametrize(("channel", "status"), ALICE_ON_BOB_STREAMS)
async def test_stream_tricks_are_refused(
    secured: RunningHub, client: httpx.AsyncClient, channel: str, status: int
) -> None:
    alice = bearer(token("alice"))
    base = f"{secured.url}/api/v1/sse"
    decoded = urllib.parse.unquote(channel)
    attempts = [
        await attempt(client, "GET", f"{base}/stream/{channel}", headers=alice),
        await attempt(client, "GET", f"{base}/stream?channel={channel}", headers=alice),
        await attempt(
            client, "GET", f"{base}/stream/user:alice:ok?channel={channel}", headers=alice
        ),
        await attempt(
            client, "GET", f"{secured.url}/api/v1/channels/{channel}/events", headers=alice
        ),
        await attempt(
            client, "POST", f"{base}/tickets", json={"channels": [decoded]}, headers=alice
        ),
    ]
    if decoded != "$broadcast":  # /connect streams carry the broadcast channel anyway
        attempts.append(
            await attempt(client, "GET", f"{base}/connect?channel={channel}", headers=alice)
        )
    for response in attempts:
        assert response.status_code in (status, 400, 403, 404), (response.url, response.text)
        assert response.status_code != 200
        assert response.headers["content-type"].startswith("application/json")
    assert attempts[0].status_code == status


async def test_nothing_leaks_to_allowed_streams_and_admin_api_is_closed(
    secured: RunningHub, client: httpx.AsyncClient
) -> None:
    alice, bob = bearer(token("alice")), bearer(token("bob"))
    base = secured.url
    bob_url = f"{base}/api/v1/sse/connect?channel=user:bob:inbox"
    alice_urls = [
        f"{base}/api/v1/sse/stream/user:alice:*",
        f"{base}/api/v1/sse/stream/user:alice:..:..:user:bob:inbox",  # literal dots, own space
        f"{base}/api/v1/sse/stream/public:*",
    ]
    async with (
        open_stream(client, bob_url, headers=bob) as bob_stream,
        open_stream(client, alice_urls[0], headers=alice) as a1,
        open_stream(client, alice_urls[1], headers=alice) as a2,
        open_stream(client, alice_urls[2], headers=alice) as a3,
    ):
        bob_client = json.loads(bob_stream.events[0].data)["client_id"]
        secret = await client.post(
            f"{base}/api/v1/publish/user:bob:inbox", json={"data": "bob-secret"}, headers=bob
        )
        assert secret.status_code == 200
        refusals = [
            await client.post(f"{base}/api/v1/publish/user:bob:inbox", json={}, headers=alice),
            await client.post(
                f"{base}/api/v1/publish",
                json=[
                    {"channel": "user:alice:a", "data": "mine"},
                    {"channel": "user:bob:inbox", "data": "forged"},
                ],
                headers=alice,
            ),
            await client.post(f"{base}/api/v1/sse/broadcast", json={"data": "x"}, headers=alice),
            await client.post(
                f"{base}/api/v1/sse/send/{bob_client}", json={"data": "x"}, headers=alice
            ),
            await client.post(f"{base}/api/v1/sse/disconnect/{bob_client}", headers=alice),
            await client.get(f"{base}/api/v1/sse/clients/{bob_client}", headers=alice),
            await client.get(f"{base}/api/v1/sse/stats", headers=alice),
            await client.get(f"{base}/api/v1/sse/clients", headers=alice),
        ]
        for response in refusals:
            assert response.status_code in (403, 404), (response.url, response.text)
        forged = token("bob", admin=True)  # signed with another secret
        wrong_key = jwt.encode(jwt.decode(forged, SECRET, algorithms=["HS256"]), "x" * 32)
        unsigned = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, None, algorithm="none")
        sneaky_sub = token("*", subscribe=["user:{sub}"])
        for bad in (wrong_key, unsigned, sneaky_sub):
            r = await client.get(f"{base}/api/v1/sse/stream/user:bob:inbox", headers=bearer(bad))
            assert r.status_code == 401, r.text
        mine = await client.post(
            f"{base}/api/v1/publish/user:bob:inbox", json={"data": "bob-marker"}, headers=bob
        )
        assert mine.status_code == 200
        await bob_stream.wait_for(lambda r: "bob-marker" in r.data)
        for stream in (a1, a2, a3):
            assert not any("bob" in d or "forged" in d for d in stream.data), stream.data
    assert bob_stream.data == ["bob-secret", "bob-marker"]  # Bob was neither sent to nor kicked

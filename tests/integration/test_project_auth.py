"""Project endpoints under JWT auth: anonymous stage streams when configured, rights otherwise."""

from __future__ import annotations

import json

import httpx

from harness import open_stream, running_hub
from ssehub.publisher import Publisher
from ssehub.settings import Settings
from tokens import SECRET, bearer, hs256


def jwt_settings(**kw: object) -> Settings:
    return Settings(_env_file=None, jwt_secret=SECRET, **kw)  # type: ignore[call-arg]


async def test_anonymous_and_authenticated_stage_streams(client: httpx.AsyncClient) -> None:
    worker = hs256("worker", publish=["ai_story:project:42:*"])
    reader_token = hs256("bob", subscribe=["ai_story:project:42:*"])
    async with running_hub(jwt_settings()) as hub:
        base = f"{hub.url}/api/v1/sse/projects/42"
        denied = await client.get(f"{base}/stages/rewrite/stream/")
        assert denied.status_code == 401
        other = hs256("eve", subscribe=["ai_story:project:7:*"])
        refused = await client.get(f"{base}/stream/", headers=bearer(other))
        assert refused.status_code == 403
        async with (
            open_stream(client, f"{base}/stages/rewrite/") as anonymous,
            open_stream(client, f"{base}/stream/", headers=bearer(reader_token)) as authed,
            Publisher(42, "rewrite", url=hub.url, token=worker, coalesce_tokens=1) as pub,
        ):
            await pub.publish_token("hi")
            await pub.publish_done()
            await anonymous.wait_count(1, event="done")
            await authed.wait_count(1, event="done")
        assert json.loads(authed.of_type("done")[0].data)["full_text"] == "hi"


async def test_execute_stage_needs_publish_rights(client: httpx.AsyncClient) -> None:
    async with running_hub(jwt_settings(anonymous_project_streams=False)) as hub:
        body = {"stage_name": "rewrite", "input_data": {"pace": 0}}
        url = f"{hub.url}/api/v1/projects/42/execute_stage/"
        assert (await client.post(url, json=body)).status_code == 401
        reader = hs256("bob", subscribe=["ai_story:project:42:*"])
        assert (await client.post(url, json=body, headers=bearer(reader))).status_code == 403
        anonymous = await client.get(f"{hub.url}/api/v1/sse/projects/42/")
        assert anonymous.status_code == 401
        owner = hs256("ann", publish=["ai_story:project:42:*"], subscribe=["ai_story:project:42:*"])
        started = await client.post(url, json=body, headers=bearer(owner))
        assert started.status_code == 200, started.text
        task = started.json()["task_id"]
        status = await client.get(f"{hub.url}/api/v1/tasks/{task}", headers=bearer(reader))
        assert status.status_code == 403
        status = await client.get(f"{hub.url}/api/v1/tasks/{task}", headers=bearer(owner))
        assert status.status_code == 200

"""The `ssehub` command as a user runs it: serve, publish, listen, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from harness import open_stream, start_hub_process


def test_sigterm_closes_streams_and_exits_zero(tmp_path) -> None:
    hub = start_hub_process(tmp_path)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
            url = f"{hub.url}/api/v1/sse/stream/bye"
            async with open_stream(client, url) as first, open_stream(client, url) as second:
                loop = asyncio.get_running_loop()
                start = loop.time()
                hub.process.send_signal(15)
                async with asyncio.timeout(8):
                    await first.closed.wait()
                    await second.closed.wait()
                assert loop.time() - start < 5
                assert first.raw.endswith(b"\n\n")

    try:
        asyncio.run(scenario())
        assert hub.process.wait(15) == 0, hub.log()
    finally:
        if hub.process.poll() is None:
            hub.kill()


@pytest.mark.slow
def test_cli_publish_and_listen(tmp_path) -> None:
    hub = start_hub_process(tmp_path)
    try:
        listen = subprocess.Popen(
            [sys.executable, "-m", "ssehub.cli", "listen", "demo", "--url", hub.url],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listen.stdout is not None
        connected = json.loads(listen.stdout.readline())
        assert connected["event"] == "connected"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "ssehub.cli",
                "publish",
                "demo",
                "--url",
                hub.url,
                "--event",
                "task.progress",
                "--data",
                '{"task_id":"1","progress":50}',
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        published = json.loads(result.stdout)
        line = json.loads(listen.stdout.readline())
        assert line == {
            "id": published["id"],
            "event": "task.progress",
            "data": {"task_id": "1", "progress": 50},  # the decoded value, not a JSON string
        }
        listen.terminate()
        listen.wait(10)
        bad = subprocess.run(
            [sys.executable, "-m", "ssehub.cli", "publish", "bad name", "--url", hub.url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        # One line on stderr: status, URL, the hub's code and message; no traceback.
        assert bad.returncode == 1 and bad.stdout == ""
        assert bad.stderr.count("\n") == 1 and "HTTP 400" in bad.stderr
        assert "invalid_channel" in bad.stderr and hub.url in bad.stderr
    finally:
        hub.terminate()

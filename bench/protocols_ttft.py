"""Time to first token of one chat answer through each protocol, against one hub, interleaved.

Starts ``ssehub serve`` (demo provider, SQLite store, memory broker) in a child process and, per
round, sends one message through each of: ssehub's ``POST .../messages/stream``, ssehub's
conversation stream (``GET .../stream`` open, then ``POST .../messages``), the AI SDK endpoint
and the AG-UI chat agent; each on a fresh conversation created before the clock starts. The
time runs from sending the request to reading the first text (first ``ai_response_chunk``,
``text-delta`` or ``TEXT_MESSAGE_CONTENT``). Prints a JSON line per protocol (median, p90, max
in ms).

    python bench/protocols_ttft.py --rounds 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import start_hub_process


async def first_line(lines: httpx.Response | AsyncIterator[str], marker: str) -> None:
    """Read until a line containing ``marker`` (the first text of the answer)."""
    source = lines.aiter_lines() if isinstance(lines, httpx.Response) else lines
    async for line in source:
        if marker in line:
            return
    raise RuntimeError(f"the stream ended without {marker!r}")


async def new_conversation(client: httpx.AsyncClient, base: str) -> str:
    response = await client.post(f"{base}/api/v1/conversations", json={})
    return str(response.json()["id"])


async def ssehub_post_stream(client: httpx.AsyncClient, base: str) -> float:
    cid = await new_conversation(client, base)
    started = time.perf_counter()
    url = f"{base}/api/v1/conversations/{cid}/messages/stream"
    async with client.stream("POST", url, json={"content": "hello"}) as response:
        await first_line(response, "event: ai_response_chunk")
        return time.perf_counter() - started


async def ssehub_channel_stream(client: httpx.AsyncClient, base: str) -> float:
    cid = await new_conversation(client, base)
    async with client.stream("GET", f"{base}/api/v1/conversations/{cid}/stream") as stream:
        lines = stream.aiter_lines()
        await first_line(lines, "event: connected")
        started = time.perf_counter()
        await client.post(f"{base}/api/v1/conversations/{cid}/messages", json={"content": "hi"})
        await first_line(lines, "event: ai_response_chunk")
        return time.perf_counter() - started


async def ai_sdk(client: httpx.AsyncClient, base: str) -> float:
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hello"}]}
    cid = await new_conversation(client, base)  # as the others: the conversation exists
    body = {"id": cid, "messages": [message], "trigger": "submit-message"}
    started = time.perf_counter()
    async with client.stream("POST", f"{base}/api/v1/ai-sdk/chat", json=body) as response:
        await first_line(response, '"text-delta"')
        return time.perf_counter() - started


async def ag_ui(client: httpx.AsyncClient, base: str) -> float:
    message = {"id": "u1", "role": "user", "content": "hello"}
    cid = await new_conversation(client, base)
    body = {"threadId": cid, "runId": "r1", "messages": [message]}
    started = time.perf_counter()
    async with client.stream("POST", f"{base}/api/v1/ag-ui/chat", json=body) as response:
        await first_line(response, "TEXT_MESSAGE_CONTENT")
        return time.perf_counter() - started


PROTOCOLS = {
    "ssehub POST messages/stream": ssehub_post_stream,
    "ssehub conversation stream": ssehub_channel_stream,
    "AI SDK UI message stream": ai_sdk,
    "AG-UI chat agent": ag_ui,
}


async def measure(base: str, rounds: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
    async with httpx.AsyncClient(timeout=30) as client:
        for warm_up in PROTOCOLS.values():  # every path once before the clock
            await warm_up(client, base)
        for _ in range(rounds):
            for name, run in PROTOCOLS.items():
                timings[name].append(await run(client, base))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "SSEHUB_DEMO": "true",
            "SSEHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/ttft.db",
            "SSEHUB_DEMO_PACE_SECONDS": "0",
            "SSEHUB_STREAM_RATE_PER_USER": "0",
            "SSEHUB_PUBLISH_RATE_PER_USER": "0",
            "SSEHUB_LOG_LEVEL": "warning",
        }
        hub = start_hub_process(Path(tmp), {**os.environ, **env})
        try:
            timings = asyncio.run(measure(hub.url, args.rounds))
        finally:
            try:
                hub.terminate()
            except (AssertionError, subprocess.TimeoutExpired):
                hub.kill()
    for name, values in timings.items():
        ms = sorted(v * 1000 for v in values)
        print(
            json.dumps(
                {
                    "protocol": name,
                    "rounds": len(ms),
                    "median_ms": round(statistics.median(ms), 2),
                    "p90_ms": round(ms[int(len(ms) * 0.9) - 1], 2),
                    "max_ms": round(ms[-1], 2),
                }
            )
        )


if __name__ == "__main__":
    main()

"""Soak: thousands of streams, steady publishing and reconnecting clients for minutes.

``make soak`` (defaults: 2,000 streams, 10 minutes, 10% of the clients reconnecting with
Last-Event-ID every minute). The hub runs as ``ssehub serve`` in a child process; its RSS and
open file descriptors are sampled every few seconds. Verdict: RSS flat within 10% after the
warm-up, no file-descriptor growth, and zero loss: every client holds exactly the accepted
events of its channel after its first connection, in order, each once. Writes the samples
(JSON) and a plot (PNG); exits 1 when a check fails.

python bench/soak.py --connections 2000 --minutes 10 -o docs/soak.png
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ssehub.brokers.base import parse_id
from ssehub.parser import SSEDecoder

CHANNELS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Client:
    """One raw-socket SSE client on one channel; resumes from its last id."""

    channel: str
    start_seq: int = -1
    last_id: str = ""
    ids: list[str] = field(default_factory=list)
    resets: int = 0
    connects: int = 0
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None

    async def run(self, host: str, port: int) -> None:
        while True:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await self._once(host, port)
            await asyncio.sleep(0.1 + random.random() * 0.2)

    async def _once(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        self.writer = writer
        resume = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id else ""
        writer.write(
            f"GET /api/v1/sse/stream/{self.channel} HTTP/1.1\r\nHost: soak\r\n"
            f"Accept: text/event-stream\r\n{resume}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            writer.close()
            return
        self.connects += 1
        decoder = SSEDecoder()
        dechunker = Dechunker() if b"transfer-encoding: chunked" in head.lower() else None
        while chunk := await reader.read(65536):
            for event in decoder.feed(dechunker.feed(chunk) if dechunker else chunk):
                if event.event == "connected":
                    if self.start_seq < 0:
                        self.start_seq = parse_id(event.id)[1] if parse_id(event.id) else 0
                    self.last_id = self.last_id or event.id
                elif event.event == "reset":
                    self.resets += 1
                elif event.id:
                    self.ids.append(event.id)
                    self.last_id = event.id
        writer.close()

    def drop(self) -> None:
        """Close the socket; the loop reconnects with Last-Event-ID."""
        if self.writer is not None:
            self.writer.close()


class Dechunker:
    """Incremental HTTP/1.1 chunked-transfer decoder (streams are chunked by uvicorn)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.remaining = 0
        self.trailer = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = []
        while True:
            if self.remaining:
                take = self.buffer[: self.remaining]
                out.append(take)
                self.buffer = self.buffer[len(take) :]
                self.remaining -= len(take)
                if self.remaining:
                    break
                self.trailer = True
            if self.trailer:
                if len(self.buffer) < 2:
                    break
                self.buffer, self.trailer = self.buffer[2:], False
            end = self.buffer.find(b"\r\n")
            if end < 0:
                break
            size = int(self.buffer[:end].split(b";")[0], 16)
            self.buffer = self.buffer[end + 2 :]
            if size == 0:
                break
            self.remaining = size
        return b"".join(out)


async def soak(args: argparse.Namespace) -> dict[str, object]:
    port = free_port()
    env = {
        **os.environ,
        "SSEHUB_OPEN_ACCESS": "true",
        "SSEHUB_MAX_CONNECTIONS": "100000",
        "SSEHUB_STREAM_RATE_PER_IP": "0",
        "SSEHUB_LOG_LEVEL": "warning",
        # Enough to resume a reconnect (~0.3 s away), small enough to be full after the warm-up,
        # so that retained history does not pass for growth.
        "SSEHUB_HISTORY_SIZE": "50",
    }
    hub = subprocess.Popen(  # noqa: ASYNC220 - once, before any stream exists
        [sys.executable, "-m", "ssehub.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(400):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{base}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            clients = [Client(channel=f"soak:{n % CHANNELS}") for n in range(args.connections)]
            for i, client in enumerate(clients):
                client.task = asyncio.create_task(client.run("127.0.0.1", port))
                if i % 100 == 99:
                    await asyncio.sleep(0.05)
            accepted: dict[str, list[str]] = {f"soak:{n}": [] for n in range(CHANNELS)}
            samples: list[dict[str, float]] = []
            started = time.monotonic()
            end = started + args.minutes * 60
            stop = asyncio.Event()

            async def publisher() -> None:
                n = 0
                interval = 1 / args.rate
                while not stop.is_set():
                    channel = f"soak:{n % CHANNELS}"
                    answer = await http.post(
                        f"{base}/api/v1/publish/{channel}",
                        json={"data": {"n": n, "pad": "x" * 100}},
                        headers={"Idempotency-Key": f"soak-{n}"},
                    )
                    if answer.status_code == 200:
                        accepted[channel].append(answer.json()["id"])
                        n += 1
                    await asyncio.sleep(interval)

            async def churn() -> None:
                while True:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 60)
                        return
                    for client in random.sample(clients, len(clients) // 10):
                        client.drop()

            async def sampler() -> None:
                while not stop.is_set():
                    samples.append(
                        {
                            "t": round(time.monotonic() - started, 1),
                            "rss_mib": proc_rss_kib(hub.pid) / 1024,
                            "fds": proc_fds(hub.pid),
                            "events": sum(len(v) for v in accepted.values()),
                        }
                    )
                    print(json.dumps(samples[-1]), flush=True)
                    await asyncio.sleep(args.sample_seconds)

            tasks = [asyncio.create_task(f()) for f in (publisher, churn, sampler)]
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            stop.set()
            await asyncio.gather(*tasks[:2])
            await asyncio.sleep(5)  # drain
            tasks[2].cancel()
            for client in clients:
                assert client.task is not None
                client.task.cancel()
                client.drop()
    finally:
        hub.terminate()
        hub.wait(20)

    lost = duplicated = wrong_clients = 0
    for client in clients:
        expected = [
            i for i in accepted[client.channel] if (parse_id(i) or ("", 0))[1] > client.start_seq
        ]
        got = client.ids
        duplicated += len(got) - len(set(got))
        lost += len(set(expected) - set(got))
        wrong_clients += got != expected  # a loss, a duplicate or a wrong order
    warm = [s for s in samples if s["t"] >= args.warmup_seconds] or samples
    rss = [s["rss_mib"] for s in warm]
    fds = [s["fds"] for s in warm]
    per_minute = max(1, int(60 / args.sample_seconds))
    result = {
        "connections": args.connections,
        "minutes": args.minutes,
        "published": sum(len(v) for v in accepted.values()),
        "reconnects": sum(max(0, c.connects - 1) for c in clients),
        "resets": sum(c.resets for c in clients),
        "lost": lost,
        "duplicated": duplicated,
        "clients_not_exact": wrong_clients,
        "rss_spread": (max(rss) - min(rss)) / min(rss) if rss else 0.0,
        # Reconnects in flight make single samples noisy: compare the peaks of the first and
        # the last minute after the warm-up.
        "fd_growth": max(fds[-per_minute:]) - max(fds[:per_minute]) if fds else 0,
        "samples": samples,
    }
    return result


def plot(result: dict[str, object], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    assert isinstance(samples, list)
    t = [s["t"] / 60 for s in samples]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t, [s["rss_mib"] for s in samples], color="tab:blue", label="hub RSS (MiB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)", color="tab:blue")
    ax.set_ylim(bottom=0)
    right = ax.twinx()
    right.plot(t, [s["fds"] for s in samples], color="tab:orange", label="open fds")
    right.set_ylabel("open file descriptors", color="tab:orange")
    right.set_ylim(bottom=0)
    ax.set_title(
        f"soak: {result['connections']} streams, {result['published']} events, "
        f"{result['reconnects']} reconnects, lost {result['lost']}, "
        f"dup {result['duplicated']}"
    )
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="events/s over all channels")
    parser.add_argument("--warmup-seconds", type=float, default=120.0)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/soak.png"))
    parser.add_argument("--json", type=Path, default=Path("bench/results/soak.json"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the hub on the way out
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.connections)), hard))
    result = asyncio.run(soak(args))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    plot(result, args.output)
    verdict = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(verdict))
    ok = (
        result["clients_not_exact"] == 0
        and float(result["rss_spread"]) <= 0.10  # type: ignore[arg-type]
        and int(result["fd_growth"]) <= 10 + args.connections // 100  # type: ignore[call-overload]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Redis for tests: the shared test server, unique key prefixes, and private redis-servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import pytest
import redis

from harness import free_port

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def shared_redis_url() -> str:
    """``SSEHUB_TEST_REDIS_URL`` (or the machine's Redis); skips loudly when none answers."""
    url = os.environ.get("SSEHUB_TEST_REDIS_URL") or DEFAULT_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"NO REDIS: {url} does not answer ({exc}); run `make test` to start one")
    return url


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"ssehub-test:{uuid.uuid4().hex[:12]}:"


@dataclass(frozen=True)
class RedisKeys:
    """The shared test Redis and a key prefix of one test alone (the ``redis_keys`` fixture)."""

    url: str
    prefix: str


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key of one test."""
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000))
    if keys:
        client.delete(*keys)


@dataclass
class RedisServer:
    """A private redis-server on a free port, which a test may stop, kill and restart."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    workdir: str = field(default_factory=tempfile.mkdtemp)
    options: list[str] = field(default_factory=list)  # more redis-server flags

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("NO REDIS: redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, *self.options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise TimeoutError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self, *, save: bool = True) -> None:
        """Stop the server; with ``save`` its data is written to disk and back on ``start``."""
        if self.process is None:
            return
        if save:
            with contextlib.suppress(redis.RedisError):
                redis.Redis(port=self.port, socket_connect_timeout=1).shutdown(save=True)
        else:
            self.process.kill()
        self.process.wait(10)
        self.process = None

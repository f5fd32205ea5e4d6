"""Where a single-event publish spends hub CPU, part by part, measured in-process.

The app is called as ASGI directly (no socket, no HTTP parsing) with a plain publish, auth on
(HS256) and the access log on at the default level (to a file); then each part of the path is
timed alone with the same inputs. CPU time (``time.process_time``), so other load on the machine
matters little. Run it against another checkout with ``PYTHONPATH=<dir>/src``.

    python bench/publish_parts.py [--n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import orjson

from ssehub.app import create_app
from ssehub.event import make_event
from ssehub.logs import log_config
from ssehub.routes.publish import PublishBody, build_event
from ssehub.runs import publish_event
from ssehub.settings import Settings

SECRET = "publish-parts-bench-secret-0123456789abcdef"
CHANNEL = "bench:parts"
BODY = b'{"event":"token","data":"hello, world"}'


def per_call(n: int, fn: Callable[[], Any]) -> float:
    """CPU µs per call of ``fn``."""
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return 1e6 * (time.process_time() - start) / n


async def per_await(n: int, fn: Callable[[], Awaitable[Any]]) -> float:
    """CPU µs per awaited call of ``fn``."""
    await fn()
    start = time.process_time()
    for _ in range(n):
        await fn()
    return 1e6 * (time.process_time() - start) / n


def scope_of(token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/v1/publish/{CHANNEL}",
        "raw_path": f"/api/v1/publish/{CHANNEL}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def main(n: int) -> None:
    log_file = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)  # noqa: SIM115
    config = log_config("text", "info")
    config["handlers"]["default"]["stream"] = log_file
    logging.config.dictConfig(config)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        jwt_secret=SECRET,
        publish_rate_per_user=1e9,
        publish_burst_per_user=10**9,
        publish_bytes_rate_per_user=1e12,
        publish_bytes_burst_per_user=10**12,
    )
    app = create_app(settings)
    claims = {"sub": "bench", "publish": ["bench:*"], "exp": int(time.time()) + 86400}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    scope = scope_of(token)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def whole() -> None:
        await app(dict(scope), receive, send)

    rows: list[tuple[str, float]] = []
    async with app.router.lifespan_context(app):
        state = app.state
        rows.append(("the app as ASGI (middleware, auth, publish, response)", 0.0))
        rows[-1] = (rows[-1][0], await per_await(n, whole))
        assert set(statuses) == {200}, set(statuses)
        # The access line in context: the same requests with the hub's loggers at WARNING.
        hub_logger = logging.getLogger("ssehub")
        hub_logger.setLevel(logging.WARNING)
        rows.append(("the app as ASGI, access log off", await per_await(n, whole)))
        hub_logger.setLevel(logging.INFO)
        authenticator = state.authenticator.inner
        verify = getattr(authenticator, "_verify", authenticator.verify)
        rows.append(
            ("JWT verification (PyJWT decode + claims)", per_call(n // 4, lambda: verify(token)))
        )
        if hasattr(authenticator, "verified"):
            rows.append(("JWT, kept token", per_call(n, lambda: authenticator.verify(token))))
        principal = authenticator.verify(token)
        access = logging.getLogger("ssehub.access")
        extra = {"method": "POST", "path": scope["path"], "status": 200, "duration_ms": 0.1}
        rows.append(
            (
                "access line, Logger.info",
                per_call(n, lambda: access.info("%s %s %s", "POST", "/p", 200, extra=extra)),
            )
        )
        try:
            from ssehub.logs import log_access
        except ImportError:
            pass
        else:
            rows.append(
                ("access line, log_access", per_call(n, lambda: log_access("POST", "/p", 200, 0.1)))
            )
        body = PublishBody.model_validate(orjson.loads(BODY))
        rows.append(
            (
                "body: pydantic model_validate",
                per_call(n, lambda: PublishBody.model_validate_json(BODY)),
            )
        )
        try:
            from ssehub.routes.publish_shortcut import plain_body
        except ImportError:
            pass
        else:
            rows.append(("body: orjson + field checks", per_call(n, lambda: plain_body(BODY))))
        rows.append(
            (
                "build_event (rights, fields, size)",
                per_call(n, lambda: build_event(principal, settings, CHANNEL, body)),
            )
        )
        gate = state.gate

        async def rates() -> None:
            await gate.check_rate("publish", principal, "127.0.0.1")
            await gate.check_rate("publish_bytes", principal, "127.0.0.1", cost=12)

        rows.append(("rate limits (publish + bytes buckets)", await per_await(n, rates)))
        hub = state.hub

        async def publish() -> None:
            await publish_event(hub, make_event(CHANNEL, "token", "hello, world"), None)

        rows.append(("publish_event (run lifecycle, broker, metrics)", await per_await(n, publish)))

        async def broker_only() -> None:
            await hub.broker.publish(make_event(CHANNEL, "token", "hello, world"))

        rows.append(("  of which broker.publish (metered)", await per_await(n, broker_only)))
    print("| part | CPU µs |\n|---|---|")
    for name, micros in rows:
        print(f"| {name} | {micros:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().n))

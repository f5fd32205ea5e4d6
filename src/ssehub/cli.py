"""The ``ssehub`` command: serve, publish, listen."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import uuid
from types import FrameType
from typing import Annotated, Any

import httpx
import orjson
import typer

from . import __version__
from .auth import valid_subject
from .cliutil import fail, hub_post, open_access_refusal, stream_retry_notice
from .logs import log_config
from .settings import Settings, SettingsProblem, load_settings


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ssehub {__version__}")
        raise typer.Exit()


app = typer.Typer(
    help="ssehub: a real-time push hub over Server-Sent Events.", no_args_is_help=True
)


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    """ssehub: a real-time push hub over Server-Sent Events."""


DEFAULT_URL = "http://127.0.0.1:8000"
UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="SSEHUB_URL", metavar="URL", help="Hub base URL."),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="SSEHUB_TOKEN", metavar="TOKEN", help="Bearer token."),
]
_DEFAULTS = Settings.model_fields


def settings_or_exit() -> Settings:
    """The SSEHUB_* settings, or exit 2 with one line naming the malformed one."""
    try:
        return load_settings()
    except SettingsProblem as exc:
        fail(str(exc), code=2)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Bind address (SSEHUB_HOST).",
            show_default=str(_DEFAULTS["host"].default),
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT",
            help="Port (SSEHUB_PORT).",
            show_default=str(_DEFAULTS["port"].default),
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(metavar="COUNT", help="Processes sharing the port (needs Redis).")
    ] = 1,
    demo: Annotated[bool, typer.Option(help="Demo settings, as `make run` uses.")] = False,
) -> None:
    """Run the hub with uvicorn (uvloop, httptools); settings come from SSEHUB_* variables."""
    import os

    import uvicorn

    from .fastpath import http_protocol

    if demo:
        os.environ["SSEHUB_DEMO"] = "true"
    settings = settings_or_exit()
    host, port = host or settings.host, port or settings.port
    refusal = open_access_refusal(settings, host)
    if refusal:
        fail(refusal, code=2)
    if workers > 1 and settings.broker_url.startswith("memory:"):
        fail("--workers > 1 needs a shared broker: set SSEHUB_BROKER_URL=redis://...", code=2)
    # The app (and every worker process) reads the address it is served on, for its log lines.
    os.environ["SSEHUB_HOST"], os.environ["SSEHUB_PORT"] = host, str(port)
    # uvicorn re-raises SIGTERM after a graceful stop; exit 0 then, as service managers expect.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    config: dict[str, Any] = dict(
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=http_protocol(settings),
        log_level=settings.log_level,
        log_config=log_config(settings.log_format, settings.log_level),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) or 1,
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_worker_healthcheck=settings.worker_healthcheck_seconds,
        access_log=False,
    )
    if workers > 1:
        uvicorn.run("ssehub.app:app_from_env", **config)
        return
    from .startup import AnnouncingServer

    AnnouncingServer(uvicorn.Config("ssehub.app:app_from_env", **config)).run()


WORKER_QUEUES = "llm,image,video,default"


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(metavar="NAMES", help="Comma-separated queues.")
    ] = WORKER_QUEUES,
    pool: Annotated[
        str, typer.Option(metavar="POOL", help="Celery pool: solo, threads or prefork.")
    ] = "solo",
    concurrency: Annotated[int, typer.Option(metavar="COUNT", help="Tasks run at once.")] = 1,
) -> None:
    """Run a Celery worker executing stages (needs SSEHUB_CELERY_BROKER_URL)."""
    from .tasks import celery_app

    settings_or_exit()
    celery_app.main(argv=celery_app.worker_argv(queues, pool, concurrency))


@app.command()
def publish(
    channel: Annotated[str, typer.Argument(metavar="CHANNEL")],
    data: Annotated[
        str | None, typer.Option(metavar="JSON", help="Payload: any JSON value.")
    ] = None,
    text: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Payload sent as it is (instead of --data).")
    ] = None,
    event: Annotated[str | None, typer.Option(metavar="TYPE", help="Event type.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY", help="Idempotency-Key header (default: a fresh one, kept over retries)."
        ),
    ] = None,
    retries: Annotated[int, typer.Option(help="Retries after a 503 or a lost connection.")] = 5,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Publish one event to CHANNEL and print its id; retrying never publishes it twice."""
    if data is not None and text is not None:
        fail("give --data (JSON) or --text (sent as it is), not both", code=2)
    payload: Any = text
    if data is not None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            fail(f"--data is not valid JSON ({exc}); to send plain text use --text", code=2)
    # A 503 means "outcome unknown": retries carry the first attempt's key, so none doubles it.
    headers = {**_auth_headers(token), "Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    response = hub_post(
        f"{url.rstrip('/')}/api/v1/publish/{channel}",
        {"event": event, "data": payload},
        headers,
        retries=retries,
    )
    typer.echo(response.text)


@app.command()
def listen(
    channels: Annotated[
        list[str], typer.Argument(metavar="CHANNEL...", help="Channels or patterns to stream.")
    ],
    types: Annotated[
        str | None, typer.Option(metavar="TYPES", help="Only these event types (a,b).")
    ] = None,
    last_event_id: Annotated[
        str | None, typer.Option(metavar="ID", help="Resume after this id.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Print the events of CHANNELS as JSON lines, reconnecting and resuming on drops."""
    from .sdk.client import SSEClient, StreamClosed

    params = httpx.QueryParams({"channel": channels, **({"types": types} if types else {})})
    stream_url = f"{url.rstrip('/')}/api/v1/sse/stream?{params}"

    async def run() -> None:
        client = SSEClient(
            stream_url,
            headers=_auth_headers(token),
            last_event_id=last_event_id,
            on_retry=lambda reason, delay: typer.echo(
                stream_retry_notice(url, reason, delay), err=True
            ),
        )
        async for item in client:
            line = {"id": item.id, "event": item.event, "data": decoded(item.data)}
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(run())
        except StreamClosed as exc:
            fail(f"the hub refused the stream {stream_url}: {exc.message}")


def decoded(data: str) -> Any:
    """An event's data as its JSON value, or the text itself when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """Seconds of a duration with its unit: ``90s``, ``15m``, ``1h`` or ``7d``."""
    text = text.strip().lower()
    unit = _TTL_UNITS.get(text[-1:], 0)
    number = text[:-1]
    if not unit or not number.isdigit() or int(number) <= 0:
        raise typer.BadParameter(
            f"invalid duration {text!r}: use a number and a unit: 90s, 15m, 1h, 7d"
        )
    return int(number) * unit


def parse_subject(text: str) -> str:
    """A ``sub`` the hub accepts: 1-128 characters from A-Z a-z 0-9 _ - . @ =."""
    if not valid_subject(text):
        raise typer.BadParameter(
            f"invalid sub {text!r}: use 1-128 characters from A-Z a-z 0-9 _ - . @ ="
        )
    return text


@app.command()
def token(
    sub: Annotated[
        str, typer.Option(metavar="USER", callback=parse_subject, help="User id (`sub`).")
    ],
    subscribe: Annotated[
        list[str] | None,
        typer.Option(metavar="PATTERN", help="Readable channel pattern; `{sub}` allowed (repeat)."),
    ] = None,
    publish: Annotated[
        list[str] | None,
        typer.Option(metavar="PATTERN", help="Writable channel pattern; `{sub}` allowed (repeat)."),
    ] = None,
    ttl: Annotated[
        str, typer.Option(metavar="DURATION", help="Lifetime: 90s, 15m, 1h, 7d.")
    ] = "1h",
    admin: Annotated[bool, typer.Option(help="Grant the admin API.")] = False,
    private_key: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="PEM private key (RS256/ES256) instead of the secret."),
    ] = None,
) -> None:
    """Mint a development token signed with SSEHUB_JWT_SECRET (or a private key) and print it."""
    import time
    from pathlib import Path

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    settings = settings_or_exit()
    key: Any
    if private_key:
        key = load_pem_private_key(Path(private_key).read_bytes(), password=None)
        algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    elif settings.jwt_secret:
        key, algorithm = settings.jwt_secret, "HS256"
    else:
        typer.echo("set SSEHUB_JWT_SECRET (or pass --private-key) to mint tokens", err=True)
        raise typer.Exit(2)
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + parse_ttl(ttl)}
    claims["subscribe"] = list(subscribe or [])
    claims["publish"] = list(publish or [])
    if admin:
        claims[settings.admin_claim] = True
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    typer.echo(jwt.encode(claims, key, algorithm=algorithm))


@app.command("config-docs")
def config_docs(
    write: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Regenerate the reference inside this Markdown file."),
    ] = None,
) -> None:
    """Print the configuration reference (every SSEHUB_* setting), generated from Settings."""
    from . import configdocs

    if write is None:
        typer.echo(configdocs.reference(), nl=False)
    elif configdocs.write(write):
        typer.echo(f"updated {write}")


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


db_app = typer.Typer(help="The conversation store (SSEHUB_DATABASE_URL).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the store's migrations up to the newest (SQLite or PostgreSQL)."""
    from .store import Store

    settings = settings_or_exit()
    store = Store(settings.database_url, schema=settings.database_schema)

    async def run() -> None:
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(run())
    typer.echo(f"database at head: {settings.database_url}")


if __name__ == "__main__":  # pragma: no cover
    app()

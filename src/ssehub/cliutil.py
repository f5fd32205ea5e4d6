"""What the ``ssehub`` command tells a user in one line: unreachable hubs, refusals, bad setups."""

from __future__ import annotations

import ipaddress
import time
from typing import Any, NoReturn

import httpx
import typer

from .sdk.transport import retry_delay
from .settings import Settings

URL_HINT = "point the CLI at the hub with --url or SSEHUB_URL"


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def unreachable(url: str, exc: httpx.TransportError) -> str:
    """Why a hub could not be reached, with the URL and the hint to change it."""
    reason = "connection refused" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        reason = "no answer in time"
    return f"cannot reach the hub at {url} ({reason}): is it running? {URL_HINT}"


def hub_message(response: httpx.Response) -> str:
    """The hub's JSON error message, or the start of whatever else answered."""
    try:
        error: Any = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:120].strip() or response.reason_phrase


def refusal(url: str, response: httpx.Response) -> str:
    """One line for an HTTP error answer: status, URL, the hub's message and what to check."""
    line = f"HTTP {response.status_code} from {url}: {hub_message(response)}"
    if response.status_code == 401:
        line += " (pass a token with --token or SSEHUB_TOKEN)"
    elif response.status_code == 404:
        line += f" (is this an ssehub? {URL_HINT})"
    return line


def hub_post(url: str, body: Any, headers: dict[str, str], *, retries: int = 0) -> httpx.Response:
    """POST JSON to the hub, retrying 503s and lost connections ``retries`` times with the same
    headers; exit with one line when it is unreachable or refuses."""
    for attempt in range(retries + 1):
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=10)
        except httpx.TransportError as exc:
            if attempt == retries:
                fail(unreachable(url, exc))
            time.sleep(retry_delay(attempt, None))
            continue
        if response.status_code != 503 or attempt == retries:
            break
        time.sleep(retry_delay(attempt, response))
    if response.status_code >= 400:
        fail(refusal(url, response))
    return response


def stream_retry_notice(url: str, reason: BaseException | None, delay: float) -> str:
    """What ``listen`` prints before it tries again."""
    if isinstance(reason, httpx.TransportError):
        why = unreachable(url, reason)
    elif reason is not None:
        why = f"the hub at {url} answered {reason} (busy or restarting)"
    else:
        why = f"the stream from {url} ended"
    return f"{why}; retrying in {delay:.1f} s"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_access_refusal(settings: Settings, host: str) -> str | None:
    """Why a hub with auth off must not serve on ``host``, or None when it may."""
    keyed = any((settings.jwt_secret, settings.jwt_public_key_file, settings.jwt_jwks_file))
    if settings.open_access or is_loopback(host) or (keyed and not settings.demo):
        return None
    why = "demo mode turns auth off" if settings.demo else "no SSEHUB_JWT_* key is configured"
    return (
        f"refusing to serve on {host} with auth off ({why}): anyone who reaches it could read, "
        "publish and administer every channel; configure SSEHUB_JWT_SECRET (or a key), bind "
        "127.0.0.1, or set SSEHUB_OPEN_ACCESS=true to serve it open on purpose"
    )

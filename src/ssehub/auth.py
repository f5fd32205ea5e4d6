"""Who is asking and what they may do: the Principal, channel rights and the authenticators.

``JWTAuthenticator`` verifies tokens with PyJWT against an algorithm list fixed by settings (a
token's own ``alg`` header never widens it). ``OpenAccess`` lets everybody do everything: it
serves the demo and a hub with no key configured, and says so loudly in the log.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.requests import HTTPConnection, cookie_parser

from .channels import matches, validate_channel
from .errors import Forbidden, HubError, Unauthorized
from .settings import Settings
from .verified_tokens import VerifiedTokens

log = logging.getLogger("ssehub.auth")

CHALLENGE = 'Bearer realm="ssehub"'
# A subject is spliced into patterns by ``{sub}``: it must not be able to widen them.
_SUBJECT = re.compile(r"[A-Za-z0-9_\-.@=]{1,128}")


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller: user id, channel patterns it may read and write, admin flag.

    ``authenticated`` is False for a caller without credentials (anonymous access), so a
    refusal can ask for a token (401) instead of forbidding (403). ``ticket`` marks a caller
    that showed a stream ticket: it reads only the ticket's channels.
    """

    user_id: str | None = None
    subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    admin: bool = False
    authenticated: bool = True
    ticket: bool = False

    def can_subscribe(self, channel: str) -> bool:
        """True when a pattern in ``subscribe`` covers ``channel`` (or the requested pattern)."""
        return self.admin or rights_cover(self.subscribe, channel)

    def can_publish(self, channel: str) -> bool:
        """True when a pattern in ``publish`` covers ``channel``."""
        return self.admin or rights_cover(self.publish, channel)


# Rights answers are kept for callers with at most this many patterns of a kind: a publisher
# asks the same question with every request, and the kept keys stay small (patterns are at
# most 200 characters).
KEPT_RIGHTS_PATTERNS = 8


def rights_cover(patterns: tuple[str, ...], channel: str) -> bool:
    """True when a pattern of ``patterns`` covers ``channel``."""
    if len(patterns) > KEPT_RIGHTS_PATTERNS:
        return _any_covers(patterns, channel)
    return _kept_any_covers(patterns, channel)


def _any_covers(patterns: tuple[str, ...], channel: str) -> bool:
    return any(covers(p, channel) for p in patterns)


_kept_any_covers = lru_cache(maxsize=4096)(_any_covers)


def covers(granted: str, requested: str) -> bool:
    """True when every channel ``requested`` can name is also named by ``granted``.

    Each ``*`` of ``requested`` becomes a character no literal can match, so only a ``*`` of
    ``granted`` can absorb it: ``project:*`` covers ``project:1:*``, never the reverse.
    """
    return matches(granted, requested.replace("*", "\x00"))


def _denied(principal: Principal, message: str) -> HubError:
    if not principal.authenticated:
        return Unauthorized(
            f"a token is required: {message}", headers={"WWW-Authenticate": CHALLENGE}
        )
    return Forbidden(message)


def require_subscribe(principal: Principal, channel: str) -> None:
    """Raise 401 (anonymous) or 403 unless ``principal`` may read ``channel``."""
    if not principal.can_subscribe(channel):
        raise _denied(principal, f"no right to subscribe to {channel!r}")


def require_publish(principal: Principal, channel: str) -> None:
    """Raise 401 (anonymous) or 403 unless ``principal`` may publish to ``channel``."""
    if not principal.can_publish(channel):
        raise _denied(principal, f"no right to publish to {channel!r}")


def require_admin(principal: Principal) -> None:
    """Raise 401 (anonymous) or 403 unless ``principal`` holds the admin right."""
    if not principal.admin:
        raise _denied(principal, "the admin API needs an admin token")


class Authenticator(Protocol):
    """Turns a request into a Principal or raises Unauthorized."""

    async def authenticate(self, request: HTTPConnection) -> Principal:
        """The caller of ``request``."""


class OpenAccess:
    """No authentication: everybody may read and write everything (demo, tests)."""

    PRINCIPAL = Principal(user_id=None, subscribe=("*",), publish=("*",), admin=True)

    async def authenticate(self, request: HTTPConnection) -> Principal:
        return self.PRINCIPAL

    def principal_of(self, token: str | None) -> Principal:
        """Whatever the token: the caller who may do everything."""
        return self.PRINCIPAL


def invalid_token(reason: str) -> Unauthorized:
    """401 for a token that was sent but cannot be accepted."""
    challenge = f'{CHALLENGE}, error="invalid_token", error_description="{reason}"'
    return Unauthorized(f"invalid token: {reason}", headers={"WWW-Authenticate": challenge})


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer`` header, or Unauthorized for another scheme."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise invalid_token("use Authorization: Bearer <token>")
    return value.strip()


def request_token(request: HTTPConnection, cookie: str) -> str | None:
    """The token of a request: ``Authorization: Bearer``, ``?access_token=``, or the cookie."""
    header = request.headers.get("authorization")
    if header:
        return bearer_token(header)
    return request.query_params.get("access_token") or request.cookies.get(cookie) or None


def head_token(authorization: str | None, cookies: str | None, cookie: str) -> str | None:
    """The token of a request without a query string, from its first ``Authorization`` and
    ``Cookie`` headers: what ``request_token`` finds, without a Request."""
    if authorization:
        return bearer_token(authorization)
    return (cookie_parser(cookies).get(cookie) or None) if cookies else None


def valid_subject(sub: str) -> bool:
    """True when ``sub`` is a user id the hub accepts in a token."""
    return bool(_SUBJECT.fullmatch(sub))


def _patterns(claims: dict[str, Any], name: str, sub: str | None) -> tuple[str, ...]:
    value = claims.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise invalid_token(f"claim {name!r} must be a list of channel patterns")
    out = []
    for pattern in value:
        if "{sub}" in pattern:
            if sub is None:
                raise invalid_token(f"claim {name!r} uses {{sub}} but the token has no sub")
            pattern = pattern.replace("{sub}", sub)
        try:
            out.append(validate_channel(pattern, allow_pattern=True))
        except HubError as exc:
            raise invalid_token(f"claim {name!r}: {exc.message}") from exc
    return tuple(out)


def principal_from_claims(
    claims: dict[str, Any], *, admin_claim: str, admin_role: str
) -> Principal:
    """The Principal of verified claims: ``sub``, ``subscribe``/``publish`` with ``{sub}``."""
    sub = claims.get("sub")
    if sub is not None and (not isinstance(sub, str) or not _SUBJECT.fullmatch(sub)):
        raise invalid_token("sub must be 1-128 characters from A-Z a-z 0-9 _ - . @ =")
    granted = claims.get(admin_claim)
    admin = granted is True or granted == admin_role
    admin = admin or (isinstance(granted, list) and admin_role in granted)
    return Principal(
        user_id=sub,
        subscribe=_patterns(claims, "subscribe", sub),
        publish=_patterns(claims, "publish", sub),
        admin=admin,
    )


def check_lifetime(claims: dict[str, Any], max_lifetime: float, leeway: float) -> None:
    """Refuse a token living longer than ``max_lifetime`` seconds (0: no limit), counted from
    now and, when it has one, from its ``iat``: a leaked token must not work for ever."""
    if max_lifetime <= 0:
        return
    exp = claims["exp"]
    iat = claims.get("iat")
    lived = exp - iat if isinstance(iat, int | float) and not isinstance(iat, bool) else 0
    if exp - time.time() > max_lifetime + leeway or lived > max_lifetime + leeway:
        raise invalid_token(f"the token lives longer than the allowed {max_lifetime:g} s")


def _algorithm_of(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ES256"
    raise ValueError(f"unsupported public key type {type(key).__name__}: use RSA or EC P-256")


class JWTAuthenticator:
    """Verifies JWTs (HS256 secret, PEM public key, or JWKS file) into Principals."""

    def __init__(self, settings: Settings) -> None:
        sources = [settings.jwt_secret, settings.jwt_public_key_file, settings.jwt_jwks_file]
        if sum(bool(s) for s in sources) != 1:
            raise ValueError("configure exactly one of jwt_secret, jwt_public_key_file, jwks")
        self.settings = settings
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        derived: list[str]
        if settings.jwt_secret:
            self._key, derived = settings.jwt_secret, ["HS256"]
        elif settings.jwt_public_key_file:
            self._key = load_pem_public_key(Path(settings.jwt_public_key_file).read_bytes())
            derived = [_algorithm_of(self._key)]
        else:
            self._jwks = jwt.PyJWKSet.from_json(Path(settings.jwt_jwks_file or "").read_text())
            derived = sorted({k.algorithm_name for k in self._jwks.keys})
        self.algorithms = list(settings.jwt_algorithms) or derived
        if settings.jwt_secret and any(not a.startswith("HS") for a in self.algorithms):
            raise ValueError("a shared secret only verifies HS* algorithms")
        if not settings.jwt_secret and any(a.startswith("HS") for a in self.algorithms):
            raise ValueError("HS* algorithms need jwt_secret, not a public key (alg confusion)")
        self.anonymous = Principal(
            subscribe=tuple(settings.anonymous_subscribe),
            publish=tuple(settings.anonymous_publish),
            authenticated=False,
        )
        self.verified: VerifiedTokens[Principal] = VerifiedTokens()

    async def authenticate(self, request: HTTPConnection) -> Principal:
        return self.principal_of(request_token(request, self.settings.token_cookie))

    def principal_of(self, token: str | None) -> Principal:
        """The caller sending ``token`` (None: no token, the anonymous caller)."""
        return self.anonymous if token is None else self.verify(token)

    def verify(self, token: str) -> Principal:
        """The Principal of a token, or Unauthorized (verified once, then kept until ``exp``)."""
        principal = self.verified.get(token)
        if principal is None:
            principal, exp = self._verify(token)
            # PyJWT refuses a token once ``exp <= now - leeway``.
            self.verified.put(token, principal, exp + self.settings.jwt_leeway_seconds)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        """The Principal of a token and its ``exp``, or Unauthorized."""
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                self._verification_key(token),
                algorithms=self.algorithms,
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                leeway=s.jwt_leeway_seconds,
                options={"require": ["exp"], "verify_aud": s.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise invalid_token("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise invalid_token("the token is not valid yet (nbf)") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise invalid_token(f"algorithm not allowed (accepted: {self.algorithms})") from exc
        except jwt.InvalidSignatureError as exc:
            raise invalid_token("bad signature") from exc
        except jwt.PyJWTError as exc:
            raise invalid_token(str(exc).replace('"', "'")) from exc
        except (OverflowError, ValueError) as exc:  # e.g. ``exp: 1e400`` decodes to infinity
            raise invalid_token("exp, iat and nbf must be finite numbers") from exc
        check_lifetime(claims, s.jwt_max_lifetime_seconds, s.jwt_leeway_seconds)
        principal = principal_from_claims(
            claims, admin_claim=s.admin_claim, admin_role=s.admin_role
        )
        return principal, float(claims["exp"])

    def _verification_key(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise invalid_token("malformed token") from exc
        keys = self._jwks.keys
        for jwk in keys:
            if jwk.key_id == kid or (kid is None and len(keys) == 1):
                return jwk.key
        raise invalid_token(f"unknown key id {kid!r}")


def authenticator_from_settings(settings: Settings) -> Authenticator:
    """JWT when a secret or key is configured, else open access (logged as a WARNING)."""
    if settings.demo:
        settings = settings.model_copy(
            update={"anonymous_subscribe": ["*"], "anonymous_publish": ["*"]}
        )
    configured = any((settings.jwt_secret, settings.jwt_public_key_file, settings.jwt_jwks_file))
    if configured and not settings.open_access:
        authenticator = JWTAuthenticator(settings)
        anon = sorted({*settings.anonymous_subscribe, *settings.anonymous_publish})
        if anon:
            log.warning(
                "AUTH IS OFF for channel patterns %s: anyone may read %s and publish %s%s",
                anon,
                settings.anonymous_subscribe,
                settings.anonymous_publish,
                " (demo mode)" if settings.demo else "",
            )
        if settings.anonymous_project_streams:
            log.warning(
                "AUTH IS OFF for project streams: anyone may read /api/v1/sse/projects/{id}/... "
                "without a token (limited per address); set "
                "SSEHUB_ANONYMOUS_PROJECT_STREAMS=false to require one"
            )
        return authenticator
    reason = (
        "demo mode"
        if settings.demo
        else (
            "SSEHUB_OPEN_ACCESS is set"
            if settings.open_access
            else "no SSEHUB_JWT_* key configured"
        )
    )
    log.warning(
        "AUTH IS OFF (%s): anyone may read and publish every channel ['*'] and use the admin API",
        reason,
    )
    return OpenAccess()

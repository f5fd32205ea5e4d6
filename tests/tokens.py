"""Test credentials: JWTs signed with a test secret or freshly generated key pairs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "test-secret-that-is-long-enough-for-hs256!"


def claims(sub: str | None = "alice", *, ttl: float = 3600, **extra: Any) -> dict[str, Any]:
    """Claims with ``exp`` ``ttl`` seconds ahead; ``extra`` adds or overrides claims."""
    now = int(time.time())
    out: dict[str, Any] = {"iat": now, "exp": now + ttl}
    if sub is not None:
        out["sub"] = sub
    out.update(extra)
    return out


def hs256(sub: str | None = "alice", *, secret: str = SECRET, **kw: Any) -> str:
    """An HS256 token for ``sub`` (``subscribe=[...]``, ``publish=[...]``, ``admin=True``...)."""
    return jwt.encode(claims(sub, **kw), secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand: ``alg: none`` (key None) or HMAC with any bytes as the key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


class KeyPair:
    """A private key and its public PEM written to ``directory``."""

    def __init__(self, directory: Path, kind: str = "rsa") -> None:
        if kind == "rsa":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.algorithm = "RS256"
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.algorithm = "ES256"
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_path = directory / f"{kind}-public.pem"
        self.public_path.write_bytes(self.public_pem)

    def token(self, sub: str | None = "alice", *, kid: str | None = None, **kw: Any) -> str:
        headers = {"kid": kid} if kid else None
        return jwt.encode(
            claims(sub, **kw), self.private, algorithm=self.algorithm, headers=headers
        )

    def jwks(self, path: Path, kid: str) -> Path:
        """Write a JWKS file holding this public key under ``kid``."""
        algo = (
            jwt.algorithms.RSAAlgorithm if self.algorithm == "RS256" else jwt.algorithms.ECAlgorithm
        )
        jwk = json.loads(algo.to_jwk(self.private.public_key()))
        jwk.update({"kid": kid, "alg": self.algorithm, "use": "sig"})
        path.write_text(json.dumps({"keys": [jwk]}))
        return path


def expect_error(response: Any, status: int, code: str, contains: str = "") -> dict[str, Any]:
    """Assert the JSON error shape, status, code and a fragment of the message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert contains.lower() in body["error"]["message"].lower(), body
    return body  # type: ignore[no-any-return]

"""Verified JWTs are kept until they expire: one signature check per token, never past ``exp``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest

from ssehub import auth
from ssehub.auth import JWTAuthenticator
from ssehub.errors import Unauthorized
from ssehub.settings import Settings
from ssehub.verified_tokens import VerifiedTokens
from tokens import SECRET, hs256


def authenticator(**settings: Any) -> JWTAuthenticator:
    return JWTAuthenticator(Settings(_env_file=None, jwt_secret=SECRET, **settings))  # type: ignore[call-arg]


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    decode = jwt.decode

    def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(auth.jwt, "decode", counted)
    return calls


def test_a_token_is_verified_once_and_answers_the_same_principal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_decodes(monkeypatch)
    check = authenticator()
    token = hs256("alice", publish=["chat:{sub}"])
    first, second = check.verify(token), check.verify(token)
    assert first == second and first.publish == ("chat:alice",)
    assert len(calls) == 1


def test_refused_tokens_are_checked_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_decodes(monkeypatch)
    check = authenticator()
    forged = hs256("alice", secret="another-secret-that-is-long-enough!!")
    for _ in range(2):
        with pytest.raises(Unauthorized, match="bad signature"):
            check.verify(forged)
    assert len(calls) == 2


async def test_a_kept_token_is_refused_once_it_expires() -> None:
    check = authenticator(jwt_leeway_seconds=0)
    exp = int(time.time()) + 1
    token = jwt.encode({"sub": "alice", "exp": exp}, SECRET, algorithm="HS256")
    assert check.verify(token).user_id == "alice"
    async with asyncio.timeout(5):
        while time.time() < exp + 0.05:  # the clock passing exp, not a hoped-for delay
            await asyncio.sleep(0.05)
    with pytest.raises(Unauthorized, match="expired"):
        check.verify(token)


def test_the_leeway_keeps_a_token_as_long_as_the_check_would() -> None:
    check = authenticator(jwt_leeway_seconds=30)
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")
    assert check.verify(token).user_id == "alice"  # expired 10 s ago, within the leeway
    assert check.verify(token).user_id == "alice"  # and so from the kept entry


def test_kept_tokens_are_bounded_oldest_first() -> None:
    kept: VerifiedTokens[str] = VerifiedTokens(size=2)
    later = time.time() + 60
    for name in ("a", "b", "c"):
        kept.put(name, name.upper(), later)
    assert len(kept) == 2
    assert kept.get("a") is None and kept.get("b") == "B" and kept.get("c") == "C"


def test_an_entry_past_its_deadline_is_dropped() -> None:
    kept: VerifiedTokens[str] = VerifiedTokens()
    kept.put("old", "OLD", time.time() - 1)
    assert kept.get("old") is None and len(kept) == 0

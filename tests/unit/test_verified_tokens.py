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


def big_token(n: int, **claims: Any) -> str:
    return jwt.encode(
        {"sub": f"user{n}", "exp": int(time.time()) + 3600, **claims}, SECRET, algorithm="HS256"
    )


def test_kept_tokens_do_not_keep_their_claims() -> None:
    """A cached caller once held its token's whole claims: 400 tokens of 16 KiB kept ~5 MB."""
    import tracemalloc

    check = authenticator()
    tokens = [big_token(n, note="x" * 12_000) for n in range(400)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for token in tokens:
            check.verify(token)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(check.verified) == 400
    assert kept < 1_000_000


def test_kept_tokens_are_bounded_in_characters() -> None:
    """Rights patterns grow with the token: the cache counts the characters it stands for."""
    check = authenticator()
    patterns = [f"room{i:05d}:*" for i in range(2_000)]  # ~26 KiB of claims
    for n in range(400):
        check.verify(big_token(n, publish=patterns))
    assert 0 < check.verified.chars <= check.verified.max_chars
    assert len(check.verified) < 400


def test_the_character_bound_evicts_oldest_first() -> None:
    kept: VerifiedTokens[int] = VerifiedTokens(size=10, max_chars=10)
    far = time.time() + 60
    kept.put("aaaa", 1, far)
    kept.put("bbbb", 2, far)
    kept.put("cccc", 3, far)  # 12 characters: the oldest goes
    assert (kept.get("aaaa"), kept.get("bbbb"), kept.get("cccc")) == (None, 2, 3)
    assert kept.chars == 8
    kept.put("bbbb", 4, far)  # replacing counts once
    assert kept.chars == 8 and kept.get("bbbb") == 4
    kept.put("x" * 11, 5, far)  # larger than the bound: not kept, nothing evicted
    assert kept.chars == 8 and len(kept) == 2

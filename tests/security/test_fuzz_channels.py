"""Hypothesis on channel names: the validator, pattern matching, rights coverage, and the API.

Names are drawn from an alphabet of the allowed characters plus the usual tricks: ``%``, ``/``,
``..``, CR/LF/NUL, unicode line separators and look-alikes of ``*`` and ``:``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import HubProcess, start_hub_process
from ssehub.auth import covers
from ssehub.channels import matches, validate_channel
from ssehub.errors import InvalidChannel

ALLOWED = "abcXYZ019_-.:@="
TRICKS = "*%/\\ \r\n\x00\u2028\u2029\x85\uff0a\u2217\uff1a\u0430\u043e$?#&+\u200b"
NAME_RE = re.compile(r"[A-Za-z0-9_\-.:@=]{1,200}")
PATTERN_RE = re.compile(r"[A-Za-z0-9_\-.:@=*]{1,200}")

names = st.text(alphabet=ALLOWED + TRICKS, min_size=0, max_size=40)
valid_names = st.text(alphabet=ALLOWED, min_size=1, max_size=30)
valid_patterns = st.text(alphabet=ALLOWED + "*", min_size=1, max_size=20)


def reference_match(pattern: str, channel: str) -> bool:
    parts = (re.escape(p) for p in pattern.split("*"))
    return re.fullmatch(".*".join(parts), channel, re.DOTALL) is not None


@given(names)
def test_validator_accepts_exactly_the_documented_charset(name: str) -> None:
    for allow_pattern, expected in ((False, NAME_RE), (True, PATTERN_RE)):
        try:
            assert validate_channel(name, allow_pattern=allow_pattern) == name
            accepted = True
        except InvalidChannel:
            accepted = False
        assert accepted == bool(expected.fullmatch(name)), (name, allow_pattern)


@given(valid_patterns, valid_names)
def test_matching_agrees_with_a_reference(pattern: str, channel: str) -> None:
    assert matches(pattern, channel) == reference_match(pattern, channel)


@given(valid_patterns, valid_patterns, st.lists(valid_names, min_size=1, max_size=5))
def test_covers_is_sound(granted: str, requested: str, fills: list[str]) -> None:
    """When ``granted`` covers ``requested``, every channel ``requested`` names is granted."""
    if not covers(granted, requested):
        return
    pieces = requested.split("*")
    channel = pieces[0] + "".join(fills[i % len(fills)] + p for i, p in enumerate(pieces[1:]))
    assert matches(granted, channel), (granted, requested, channel)


@pytest.fixture(scope="module")
def plain_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    tmp: Path = tmp_path_factory.mktemp("channels")
    hub = start_hub_process(tmp, {"SSEHUB_OPEN_ACCESS": "true"})
    yield hub
    assert hub.terminate() == 0, hub.log()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=names)
def test_api_answers_any_channel_name_without_500(plain_hub: HubProcess, name: str) -> None:
    quoted = urllib.parse.quote(name, safe="")
    with httpx.Client(base_url=plain_hub.url, timeout=5) as client:
        published = client.post(f"/api/v1/publish/{quoted}", json={"data": 1})
        history = client.get(f"/api/v1/channels/{quoted}/events")
    if name in (".", ".."):  # dot segments are resolved by the URL, never reach the hub as names
        return
    valid = bool(NAME_RE.fullmatch(name))
    for response in (published, history):
        assert response.status_code < 500, (name, response.text)
        if not response.is_redirect:  # "" hits the trailing-slash redirect of another route
            assert response.headers["content-type"].startswith("application/json")
        assert (response.status_code == 200) == valid, (name, response.status_code)

"""Channel names, patterns and selectors."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssehub.channel_index import ChannelIndex
from ssehub.channels import Selector, matches, validate_channel
from ssehub.errors import InvalidChannel


@pytest.mark.parametrize("name", ["demo", "project:123:stage:rewrite", "user:a@b.c", "x=1-2_3.4"])
def test_valid_names(name: str) -> None:
    assert validate_channel(name) == name


@pytest.mark.parametrize(
    "name", ["", "a b", "a/b", "a\nb", "x" * 201, "é", "$broadcast", "a*", "%2A", "../x"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidChannel):
        validate_channel(name)


def test_patterns_only_where_allowed() -> None:
    assert validate_channel("project:1:*", allow_pattern=True) == "project:1:*"
    assert validate_channel("$client:abc", allow_reserved=True) == "$client:abc"


def test_star_matches_across_colons_and_nothing_else() -> None:
    assert matches("project:1:*", "project:1:stage:rewrite")
    assert matches("project:1:stage:*", "project:1:stage:x")
    assert not matches("project:1:*", "project:10:stage")
    assert not matches("project:1:*", "project:1")
    assert matches("a.b", "a.b") and not matches("a.b", "aXb")


def test_selector_covers_channels_and_patterns() -> None:
    selector = Selector.of(["a", "p:*"])
    assert selector.covers("a") and selector.covers("p:x") and not selector.covers("b")
    assert list(selector) == ["a", "p:*"]


@given(st.text(max_size=50))
def test_validation_never_raises_anything_but_invalid_channel(name: str) -> None:
    with contextlib.suppress(InvalidChannel):
        validate_channel(name, allow_pattern=True)


def reference_match(pattern: str, channel: str) -> bool:
    """The old definition (a regular expression), to compare with on small inputs."""
    if channel[:1] == "$" and pattern[:1] != "$" and "*" in pattern:
        return False
    parts = (re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(".*".join(parts), channel, re.DOTALL) is not None


@given(st.text("ab:*", max_size=12), st.text("ab:", max_size=12))
def test_glob_matcher_agrees_with_the_regular_expression(pattern: str, channel: str) -> None:
    assert matches(pattern, channel) == reference_match(pattern, channel)


class CountingText(str):
    """A channel name that counts the substring searches made in it."""

    searches = 0

    def find(self, *args: Any) -> int:  # type: ignore[override]
        CountingText.searches += 1
        return super().find(*args)


def test_hostile_pattern_is_matched_without_backtracking() -> None:
    # A regex took seconds here (each `*` retried at every position): the glob matcher searches
    # each literal once, left to right.
    pattern = "user:u1:" + "*a" * 7 + "*b"
    channel = CountingText("user:u1:" + "a" * 52)
    CountingText.searches = 0
    assert not matches(pattern, channel)
    assert CountingText.searches <= 7
    wide = "*" + "*a" * 100 + "*"
    CountingText.searches = 0
    assert matches(wide, CountingText("a" * 100)) and CountingText.searches == 100
    assert matches("a" + "*" * 50 + "b", "ab") and matches("a**b", "axxb")


def test_wildcards_are_capped_where_a_cap_is_given() -> None:
    eight = "p" + ":*" * 8
    assert validate_channel(eight, allow_pattern=True, max_wildcards=8) == eight
    with pytest.raises(InvalidChannel, match="at most 8"):
        validate_channel(eight + "*", allow_pattern=True, max_wildcards=8)


def test_channel_index_looks_only_at_a_prefix_range_within_budget() -> None:
    index = ChannelIndex()
    for i in range(5000):
        index.add(f"many:{i}")
    for name in ("few:1", "few:2:x", "fewer"):
        index.add(name)
    assert index.matching(["few:*"], budget=3) == {"few:1", "few:2:x"}
    assert index.matching(["few:*:x", "few*"], budget=6) == {"few:1", "few:2:x", "fewer"}
    assert index.matching(["many:1*"], budget=100) is None
    assert index.matching(["*:2:x"], budget=10) is None
    index.discard("few:1")
    assert index.matching(["few:*"], budget=2) == {"few:2:x"}

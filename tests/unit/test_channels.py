"""Channel names, patterns and selectors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

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

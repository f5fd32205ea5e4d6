"""Channel-right coverage, claims to Principal, and the memory ClusterState."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssehub.auth import Principal, covers, principal_from_claims
from ssehub.channels import matches
from ssehub.cluster import MAX_BUCKETS, MemoryClusterState
from ssehub.errors import Unauthorized


async def take_token(
    cluster: MemoryClusterState, key: str, rate: float, burst: int, cost: int = 1
) -> float:
    """One bucket's wait, taken alone."""
    return (await cluster.take_tokens([(key, rate, burst, cost)]))[0]


@pytest.mark.parametrize(
    ("granted", "requested", "expected"),
    [
        ("project:42:*", "project:42:chat", True),
        ("project:42:*", "project:42:stage:*", True),
        ("project:*", "project:1:*", True),
        ("project:1:*", "project:*", False),
        ("project:1:*", "project:1*", False),
        ("project:1:*", "*", False),
        ("*", "*", True),
        ("*", "anything:*:x", True),
        ("a:*:c", "a:b:c", True),
        ("a:*:c", "a:*:c", True),
        ("a:*:c", "a:*", False),
        ("a:*:c", "a:*:c:*", False),
        ("*:c", "a:*:c", True),
        ("exact", "exact", True),
        ("exact", "exact*", False),
        ("exact", "exac*", False),
        ("*", "$broadcast", False),
        ("*", "$client:abc", False),
    ],
)
def test_covers(granted: str, requested: str, expected: bool) -> None:
    assert covers(granted, requested) is expected


_part = st.text(alphabet="ab:", max_size=4)
_pattern = st.lists(_part, min_size=1, max_size=4).map("*".join)


@given(granted=_pattern, requested=_pattern, fills=st.lists(st.text("ab:", max_size=3), max_size=4))
def test_covers_is_sound(granted: str, requested: str, fills: list[str]) -> None:
    """When a grant covers a request, every channel the request names is granted."""
    if not granted or not requested or not covers(granted, requested):
        return
    parts = requested.split("*")
    channel = parts[0]
    for i, part in enumerate(parts[1:]):
        channel += (fills[i] if i < len(fills) else "") + part
    assert matches(granted, channel)


def claims_principal(claims: dict[str, object]) -> Principal:
    return principal_from_claims(claims, admin_claim="admin", admin_role="admin")


def test_sub_expands_into_patterns() -> None:
    p = claims_principal({"sub": "alice", "subscribe": ["user:{sub}:*"], "publish": "chat:{sub}"})
    assert p.subscribe == ("user:alice:*",)
    assert p.publish == ("chat:alice",)
    assert p.can_subscribe("user:alice:inbox")
    assert not p.can_subscribe("user:bob:inbox")
    assert not p.admin


@pytest.mark.parametrize("sub", ["a*", "a:b", "", "a b", "ü", 5])
def test_subjects_that_could_widen_patterns_are_refused(sub: object) -> None:
    with pytest.raises(Unauthorized, match="sub must be"):
        claims_principal({"sub": sub, "subscribe": ["user:{sub}:*"]})


@pytest.mark.parametrize(
    "claims",
    [
        {"subscribe": ["user:{sub}:*"]},
        {"sub": "a", "subscribe": [1]},
        {"sub": "a", "subscribe": ["bad channel"]},
    ],
)
def test_bad_pattern_claims_are_refused(claims: dict[str, object]) -> None:
    with pytest.raises(Unauthorized):
        claims_principal(claims)


@pytest.mark.parametrize(
    ("value", "admin"), [(True, True), ("admin", True), (["x", "admin"], True), ("true", False)]
)
def test_admin_claim(value: object, admin: bool) -> None:
    assert claims_principal({"sub": "a", "admin": value}).admin is admin


async def test_memory_cluster_slots_tickets_and_buckets() -> None:
    cluster = MemoryClusterState()
    assert await cluster.acquire_slot("user:a", "c1", 2)
    assert await cluster.acquire_slot("user:a", "c2", 2)
    assert await cluster.acquire_slot("user:a", "c2", 2)  # idempotent for a holder
    assert not await cluster.acquire_slot("user:a", "c3", 2)
    await cluster.release_slot("user:a", "c1")
    assert await cluster.acquire_slot("user:a", "c3", 2)

    await cluster.put_ticket("t", {"user_id": "a"}, 30)
    assert await cluster.take_ticket("t") == {"user_id": "a"}
    assert await cluster.take_ticket("t") is None
    await cluster.put_ticket("old", {}, -1)
    assert await cluster.take_ticket("old") is None

    assert await take_token(cluster, "k", 1.0, 2) == 0.0
    assert await take_token(cluster, "k", 1.0, 2) == 0.0
    wait = await take_token(cluster, "k", 1.0, 2)
    assert 0.0 < wait <= 1.0


async def test_memory_cluster_flood_of_new_callers_keeps_a_limited_callers_bucket() -> None:
    """Past the bucket bound, forgetting buckets must not lift a limit still in force: before,
    100,001 buckets (one per address of a flood) cleared all of them, debts included."""
    cluster = MemoryClusterState()
    assert await take_token(cluster, "publish:user:a", 1.0, 5, cost=50) == 0.0  # 45 in debt
    for n in range(MAX_BUCKETS + 10):
        await take_token(cluster, f"stream:ip:10.{n}", 5.0, 20)  # each bucket fills in 0.2 s
    assert await take_token(cluster, "publish:user:a", 1.0, 5) > 40


def test_rights_are_answered_alike_for_few_and_many_patterns() -> None:
    """Answers for callers with few patterns are kept; with many they are worked out each time."""
    few = Principal(publish=("a:*", "b"))
    many = Principal(publish=("a:*", "b", *(f"z{i}" for i in range(20))))
    for principal in (few, many, few, many):  # the second look-up of ``few`` is a kept answer
        assert principal.can_publish("a:1") and principal.can_publish("b")
        assert not principal.can_publish("c") and not principal.can_publish("a")

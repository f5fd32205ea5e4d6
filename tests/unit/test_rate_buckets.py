"""Rate buckets: per caller and per IP apart, several kinds taken all or none."""

from __future__ import annotations

import pytest

from ssehub.auth import Principal
from ssehub.clusterstate import MemoryClusterState
from ssehub.errors import HubError
from ssehub.gate import PUBLISH_RATES, Gate
from ssehub.settings import Settings


async def test_anonymous_caller_is_held_to_the_slower_per_ip_rate() -> None:
    settings = Settings(
        publish_rate_per_user=1000.0,
        publish_burst_per_user=1000,
        publish_rate_per_ip=0.001,
        publish_burst_per_ip=2,
    )
    gate = Gate(settings, MemoryClusterState(), hub=None)  # type: ignore[arg-type]
    anonymous = Principal(authenticated=False)
    for _ in range(2):
        await gate.check_rate("publish", anonymous, "203.0.113.7")
    with pytest.raises(HubError) as refused:
        await gate.check_rate("publish", anonymous, "203.0.113.7")
    assert refused.value.status == 429
    assert "from this address" in str(refused.value)


async def test_a_user_and_its_address_are_counted_apart() -> None:
    settings = Settings(publish_rate_per_user=0.001, publish_burst_per_user=1)
    gate = Gate(settings, MemoryClusterState(), hub=None)  # type: ignore[arg-type]
    await gate.check_rate("publish", Principal(user_id="alice"), "203.0.113.8")
    await gate.check_rate("publish", Principal(authenticated=False), "203.0.113.8")
    with pytest.raises(HubError):
        await gate.check_rate("publish", Principal(user_id="alice"), "203.0.113.8")


alice = Principal(user_id="alice")


def publish_gate(*, rate: float, burst: int, bytes_rate: float, bytes_burst: int) -> Gate:
    """A gate limiting each user's publishes and publish bytes (per user only)."""
    settings = Settings(
        publish_rate_per_user=rate,
        publish_burst_per_user=burst,
        publish_bytes_rate_per_user=bytes_rate,
        publish_bytes_burst_per_user=bytes_burst,
    )
    return Gate(settings, MemoryClusterState(), hub=None)  # type: ignore[arg-type]


async def test_a_publish_refused_for_its_bytes_is_not_counted_as_a_publish() -> None:
    """Before, the publish bucket was charged before the bytes bucket refused: a refused
    publish used up the caller's publishes too."""
    gate = publish_gate(rate=0.001, burst=2, bytes_rate=0.001, bytes_burst=10)
    await gate.check_rates(alice, "203.0.113.9", PUBLISH_RATES, 1, 8)
    with pytest.raises(HubError) as refused:
        await gate.check_rates(alice, "203.0.113.9", PUBLISH_RATES, 1, 8)
    assert refused.value.status == 429 and "publish bytes" in str(refused.value)
    await gate.check_rates(alice, "203.0.113.9", PUBLISH_RATES, 1, 2)


async def test_retry_after_waits_for_the_bucket_that_lacks_longest() -> None:
    """Before, the 429 named the first bucket short: a caller retrying after its Retry-After
    was refused again by the other bucket."""
    gate = publish_gate(rate=1.0, burst=1, bytes_rate=1.0, bytes_burst=100)
    await gate.check_rates(alice, "203.0.113.10", PUBLISH_RATES, 1, 100)
    with pytest.raises(HubError) as refused:  # short of 1 publish (~1 s) and 50 bytes (~50 s)
        await gate.check_rates(alice, "203.0.113.10", PUBLISH_RATES, 1, 50)
    assert "publish bytes requests from this user" in str(refused.value)
    assert int(refused.value.headers["Retry-After"]) >= 49

"""The per-caller and per-IP rate buckets of an anonymous caller are two buckets."""

from __future__ import annotations

import pytest

from ssehub.auth import Principal
from ssehub.clusterstate import MemoryClusterState
from ssehub.errors import HubError
from ssehub.gate import Gate
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

"""What run metrics read from an event's data: only a JSON object has fields."""

from __future__ import annotations

import pytest

from ssehub.event import Event
from ssehub.metrics import Metrics, run_outcome, token_count


def event(kind: str, data: str) -> Event:
    return Event(channel="chat:1", event=kind, data=data)


@pytest.mark.parametrize(
    ("data", "count"),
    [
        ('{"token_count": 5}', 5),
        (' \n\t{"token_count": 7}', 7),  # whitespace JSON allows before the object
        ("hello, world", 1),
        ("", 1),
        ('"{"', 1),
        ("[1, 2]", 1),
        ("{not json", 1),
        ('{"token_count": 0}', 1),
    ],
)
def test_token_count(data: str, count: int) -> None:
    assert token_count(event("token", data)) == count


def test_outcomes_read_objects_only() -> None:
    assert run_outcome(event("error", '\r\n{"error": "cancelled"}')) == "cancelled"
    assert run_outcome(event("error", "cancelled")) == "error"
    assert run_outcome(event("ai_response_complete", ' {"status": "cancelled"}')) == "cancelled"


def test_published_counts_per_family() -> None:
    metrics = Metrics()
    for channel in ("chat:1", "chat:2", "jobs:1"):
        metrics.published(Event(channel=channel, event="token", data="x"))
    assert metrics.events_published.labels("chat")._value.get() == 2
    assert metrics.events_published.labels("jobs")._value.get() == 1

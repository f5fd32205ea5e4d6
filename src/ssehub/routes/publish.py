"""Publishing (single and batch) and the JSON history of a channel."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..auth import Principal, require_publish, require_subscribe
from ..channels import Selector, validate_channel
from ..errors import BadRequest, PayloadTooLarge
from ..event import Event, make_event, require_data_size
from ..gate import PUBLISH_RATES, Gate, client_ip
from ..hub import Hub
from ..idempotency import scoped_key
from ..settings import Settings
from .deps import get_hub, get_principal, get_settings

router = APIRouter(prefix="/api/v1", tags=["publish"])

# A batch gives the loop back this often, so its fan-out never holds every other stream.
BATCH_SLICE_SECONDS = 0.005

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid channel, event name, id, `retry` or body."},
    401: {"description": "Missing or invalid credentials."},
    403: {"description": "A channel outside the caller's publish rights."},
    413: {"description": "Request body or event data larger than the configured maximum."},
    429: {"description": "Publishing too fast for this user or address (Retry-After)."},
    503: {"description": "The broker cannot accept events now; retry."},
}


class PublishBody(BaseModel):
    """One event to publish; ``data`` is any JSON (a string is sent as it is)."""

    model_config = ConfigDict(extra="forbid")

    event: str | None = Field(None, description="SSE event type; `message` when omitted.")
    data: Any = Field(None, description="Payload: a JSON value; strings are sent verbatim.")
    retry: int | None = Field(None, ge=0, description="Reconnection time to send with it, in ms.")

    @model_validator(mode="before")
    @classmethod
    def known_fields_only(cls, body: Any) -> Any:
        """Refuse fields other clients use (``type``, ``payload``) instead of dropping them."""
        if isinstance(body, dict):
            unknown = sorted(str(k) for k in body if k not in cls.model_fields)[:5]
            if unknown:
                raise ValueError(
                    f'unknown field(s) {", ".join(unknown)}: put the event type in "event" '
                    f'and the payload in "data" (accepted: {", ".join(cls.model_fields)})'
                )
        return body


class PlainBody(NamedTuple):
    """A publish body read without the model, as the model would take it (the shortcuts')."""

    event: str | None
    data: Any
    retry: int | None


EventBody = PublishBody | PlainBody


class BatchItem(PublishBody):
    """One event of a batch, with its channel."""

    channel: str


class Published(BaseModel):
    """Where an event was stored."""

    id: str
    channel: str


class BatchPublished(BaseModel):
    """Ids of a batch, in request order."""

    events: list[Published]


class HistoryPage(BaseModel):
    """Kept events of a channel after a position."""

    channel: str
    events: list[dict[str, Any]]
    last_id: str = Field(description="Pass as `after` to poll for what comes next.")
    reset: bool = Field(description="True when events after `after` are no longer kept.")


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="A retried publish with the same key returns the first id.",
    ),
]


def build_event(principal: Principal, settings: Settings, channel: str, body: EventBody) -> Event:
    """Validate rights, size and fields, and return the event to publish."""
    validate_channel(channel)
    require_publish(principal, channel)
    if body.retry is not None and body.retry > settings.max_retry_ms:
        raise BadRequest(f"retry must be at most {settings.max_retry_ms} ms")
    event = make_event(channel, body.event, body.data, retry=body.retry)
    require_data_size(event, settings.max_event_bytes)
    return event


def published(stored: Event) -> Published:
    """The answer naming where ``stored`` was kept."""
    return Published(id=stored.id, channel=stored.channel)


async def accept_publish(
    hub: Hub,
    gate: Gate,
    settings: Settings,
    principal: Principal,
    ip: str,
    channel: str,
    body: EventBody,
    key: str | None,
) -> Event:
    """The single-event publish without HTTP: check, rate-limit, count and publish ``body``
    to ``channel`` for ``principal`` calling from ``ip`` (``key``: its ``Idempotency-Key``);
    the event as stored (409 after the event's run ended)."""
    event = build_event(principal, settings, channel, body)
    await gate.check_rates(principal, ip, PUBLISH_RATES, 1, len(event.data))
    gate.count_publish(channel)
    return await hub.publish(event, key=scoped_key(principal, ip, channel, key))


@router.post("/publish/{channel}", responses=ERRORS)
async def publish(
    request: Request,
    channel: str,
    body: PublishBody,
    idempotency_key: IdempotencyKey = None,
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> Published:
    """Publish one event to a channel; every subscriber of the channel receives it."""
    gate = request.app.state.gate
    stored = await accept_publish(
        hub, gate, settings, principal, client_ip(request), channel, body, idempotency_key
    )
    return published(stored)


@router.post("/publish", responses=ERRORS)
async def publish_batch(
    request: Request,
    items: list[BatchItem],
    idempotency_key: IdempotencyKey = None,
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> BatchPublished:
    """Publish several events, to one or many channels, in one request (all validated first)."""
    if not items:
        raise BadRequest("the batch is empty")
    if len(items) > settings.max_batch_events:
        raise PayloadTooLarge(f"at most {settings.max_batch_events} events per batch")
    events = [build_event(principal, settings, item.channel, item) for item in items]
    gate = request.app.state.gate
    ip = client_ip(request)
    # Each event counts against the publish rate, and its data against the byte rate.
    size = sum(len(e.data) for e in events)
    await gate.check_rates(principal, ip, PUBLISH_RATES, len(events), size)
    answers = []
    slice_end = time.monotonic() + BATCH_SLICE_SECONDS
    for index, event in enumerate(events):
        if time.monotonic() > slice_end:
            await asyncio.sleep(0)
            slice_end = time.monotonic() + BATCH_SLICE_SECONDS
        gate.count_publish(event.channel)
        key = f"{idempotency_key}#{index}" if idempotency_key else None
        stored = await hub.publish(event, key=scoped_key(principal, ip, event.channel, key))
        answers.append(published(stored))
    return BatchPublished(events=answers)


@router.get("/channels/{channel}/events", tags=["history"], responses=ERRORS)
async def channel_events(
    channel: str,
    after: Annotated[
        str | None, Query(max_length=256, description="Only events after this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    hub: Hub = Depends(get_hub),
    principal: Principal = Depends(get_principal),
) -> HistoryPage:
    """Kept events of a channel as JSON: for polling fallbacks and debugging."""
    validate_channel(channel)
    require_subscribe(principal, channel)
    selector = Selector.of([channel])
    if after:
        history = await hub.history(selector, after, limit=limit)
        events, reset = history.events, history.gap
        last_id = events[-1].id if events else (await hub.head() if reset else after)
    else:
        events, reset = await hub.recent(selector, limit=limit), False
        last_id = events[-1].id if events else await hub.head()
    return HistoryPage(
        channel=channel, events=[e.to_json() for e in events], last_id=last_id, reset=reset
    )

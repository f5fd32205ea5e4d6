"""Idempotent producers: the validation of ``(Producer-Id, Producer-Epoch, Producer-Seq)``.

Pure functions over the stored state of one producer on one stream; the store applies the
result in the same transaction as the append, so a retry after a crash is still deduplicated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..errors import BadRequest

MAX_SAFE_INTEGER = 2**53 - 1


class Verdict(Enum):
    """What to do with a producer's request."""

    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    STALE_EPOCH = "stale_epoch"
    BAD_EPOCH_SEQ = "bad_epoch_seq"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class Producer:
    """A producer's claim on one request."""

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class ProducerState:
    """What the stream remembers of a producer: its epoch and last accepted sequence."""

    epoch: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict with what the response headers need."""

    verdict: Verdict
    state: ProducerState | None = None  # the state after accepting, or the current one
    expected_seq: int = 0


def _integer(name: str, value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > MAX_SAFE_INTEGER:
        raise BadRequest(f"{name} must be a non-negative integer of at most 2^53-1")
    return int(value)


def producer_from_headers(
    producer_id: str | None, epoch: str | None, seq: str | None
) -> Producer | None:
    """The producer of a request: all three headers or none (400 otherwise)."""
    if producer_id is None and epoch is None and seq is None:
        return None
    if producer_id is None or epoch is None or seq is None:
        raise BadRequest("Producer-Id, Producer-Epoch and Producer-Seq go together")
    if not producer_id or len(producer_id) > 256:
        raise BadRequest("Producer-Id must be 1-256 characters")
    return Producer(producer_id, _integer("Producer-Epoch", epoch), _integer("Producer-Seq", seq))


def decide(producer: Producer, state: ProducerState | None) -> Decision:
    """Epoch fencing and sequence checks of the protocol's idempotent producers."""
    epoch, seq = producer.epoch, producer.seq
    if state is None or epoch > state.epoch:
        if seq != 0:
            if state is None:
                return Decision(Verdict.GAP, None, expected_seq=0)
            return Decision(Verdict.BAD_EPOCH_SEQ, state)
        return Decision(Verdict.ACCEPT, ProducerState(epoch, 0))
    if epoch < state.epoch:
        return Decision(Verdict.STALE_EPOCH, state)
    if seq <= state.last_seq:
        return Decision(Verdict.DUPLICATE, state)
    if seq == state.last_seq + 1:
        return Decision(Verdict.ACCEPT, ProducerState(epoch, seq))
    return Decision(Verdict.GAP, state, expected_seq=state.last_seq + 1)

"""Event ids on Redis: the epoch, this process's high-water mark and its check-in with each Redis
incarnation, which starts a new epoch when Redis came back without the newest ids."""

from __future__ import annotations

import logging
import secrets

import redis.asyncio as aioredis

from .keys import FAULTS, Keys, unreachable
from .scripts import CHECK_IN, HEAD

log = logging.getLogger("ssehub.redis")


def new_epoch() -> str:
    """A random epoch, taken by CHECK_IN only when Redis has none or came back stale."""
    return secrets.token_hex(4)


class EventIds:
    """The epoch of the ids this process hands out and the newest seq it has seen of it."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.epoch = ""
        self.run = ""  # the Redis run_id this process last checked in with
        self.high = 0  # the highest seq of ``epoch`` this process has seen
        self.head_script = redis.register_script(HEAD)
        self._check_in_script = redis.register_script(CHECK_IN)

    async def check_in(self) -> tuple[str, int, int]:
        """Run CHECK_IN with what this process saw; returns (epoch, newest seq, epoch base)."""
        args: list[str | int] = [new_epoch(), self.run, self.epoch, self.high]
        keys = [self.keys.epoch, self.keys.seq, self.keys.incarnation]
        try:
            epoch, seq, base, run = await self._check_in_script(keys=keys, args=args)
        except FAULTS as exc:
            raise unreachable() from exc
        if self.run and run != self.run:
            changed = epoch != self.epoch
            log.warning(
                "redis: a new Redis run (%s); %s",
                run[:8],
                "it came back without the newest ids: new epoch" if changed else "ids intact",
            )
        self.run = run
        self.note(epoch, int(seq))
        return epoch, int(seq), int(base)

    def note(self, epoch: str, seq: int) -> None:
        """Note a position read from Redis: the epoch and this process's high-water mark."""
        if epoch != self.epoch:
            self.epoch, self.high = epoch, seq
        elif seq > self.high:
            self.high = seq

    async def position(self) -> tuple[str, int]:
        """The backplane's epoch (created when missing) and its newest seq."""
        try:
            epoch, seq = await self.head_script(keys=[self.keys.epoch, self.keys.seq])
        except FAULTS as exc:
            raise unreachable() from exc
        if not epoch:
            return (await self.check_in())[:2]
        self.note(epoch, int(seq))
        return epoch, int(seq)

"""Admission of streams and publishes: rate limits, connection slots, the client registry, presence.

Every check goes through the ClusterState, so limits hold across hub processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets

from starlette.requests import HTTPConnection

from .auth import Principal
from .background import stop_task
from .channels import matches
from .cluster import GLOBAL_SCOPE, ClientRecord, ClusterState, user_scope
from .connection import Connection
from .errors import TooManyRequests, Unavailable
from .event import make_event
from .hub import Hub
from .settings import Settings

log = logging.getLogger("ssehub.gate")

KEEPALIVE_SECONDS = 10.0
MAX_COUNTED_CHANNELS = 10_000
CALLER = "caller:"  # a per-user bucket's key, after its kind
MAX_RATE_PLANS = 4096  # callers whose bucket keys are kept (forgotten all at once past it)
PUBLISH_RATES = ("publish", "publish_bytes")  # a publish's count, then its data's size

# The buckets some rate kinds take from, each with the index of its kind's cost.
RatePlan = tuple[tuple[str, float, int, int], ...]


def client_ip(request: HTTPConnection) -> str:
    """The peer address of a request (a proxy in front must be trusted separately)."""
    return request.client.host if request.client else ""


def limit_scope(principal: Principal, ip: str) -> str | None:
    """Whom per-user limits count: the token's ``sub``, else the caller's address (anonymous
    callers, tokens without ``sub``); None for an admin without ``sub`` (no per-user limits)."""
    if principal.user_id is not None:
        return user_scope(principal.user_id)
    if principal.admin:
        return None
    return f"ip:{ip}"


def retry_after(seconds: float) -> dict[str, str]:
    """A ``Retry-After`` header of whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def too_many(kind: str, who: str, rate: float, burst: int, wait: float) -> TooManyRequests:
    """The 429 of a ``kind`` bucket of ``who`` ("user", "address") that lacks tokens."""
    noun = kind.replace("_", " ")
    return TooManyRequests(
        f"too many {noun} requests from this {who}: limit {rate:g}/s "
        f"(burst {burst}); retry in {wait:.1f} s",
        headers=retry_after(wait),
    )


class Gate:
    """Decides whether a stream may open or an event may be published, and tracks streams."""

    def __init__(self, settings: Settings, cluster: ClusterState, hub: Hub) -> None:
        self.settings = settings
        self.cluster = cluster
        self.hub = hub
        self.node = secrets.token_hex(4)
        self.publishes: dict[str, int] = {}
        self._scopes: dict[str, str] = {}  # admitted client id -> its per-user slot scope
        self.held: set[str] = set()  # slot holders other than streams (running chat answers)
        self._keepalive: asyncio.Task[None] | None = None
        self._limits: dict[str, tuple[float, int, float, int]] = {}
        self._plans: dict[tuple[str | None, bool, str, tuple[str, ...]], RatePlan] = {}

    async def start(self) -> None:
        """Start refreshing this process's client records in the cluster."""
        self._keepalive = asyncio.create_task(self._keepalive_forever(), name="ssehub-keepalive")

    async def close(self) -> None:
        """Stop the refresher."""
        await stop_task(self._keepalive)

    async def check_rate(self, kind: str, principal: Principal, ip: str, *, cost: int = 1) -> None:
        """Take ``cost`` tokens from the ``kind`` buckets ("stream", "publish", "ticket"...) of
        the caller (see ``limit_scope``) and of its IP, or 429."""
        await self.check_rates(principal, ip, (kind,), cost)

    async def check_rates(
        self, principal: Principal, ip: str, kinds: tuple[str, ...], *costs: int
    ) -> None:
        """Take each kind's cost from its buckets in one step, all or none, or 429 naming the
        bucket that lacks longest (a refused request is charged nowhere)."""
        plan = self._plans.get((principal.user_id, principal.admin, ip, kinds))
        if plan is None:
            plan = self._plan(principal, ip, kinds)
        if not plan:
            return
        buckets = [(key, rate, burst, costs[at]) for key, rate, burst, at in plan]
        waits = await self.cluster.take_tokens(buckets)
        wait = max(waits)
        if wait > 0:
            # Retry-After: when every bucket has enough again, not just the first short one.
            key, rate, burst, _ = buckets[waits.index(wait)]
            kind, _, owner = key.partition(":")
            caller = owner.startswith(CALLER) and principal.user_id is not None
            raise too_many(kind, "user" if caller else "address", rate, burst, wait)

    def _plan(self, principal: Principal, ip: str, kinds: tuple[str, ...]) -> RatePlan:
        """The buckets ``kinds`` take from for this caller, each with its kind's index (kept:
        their keys and limits are the same on every request of the caller)."""
        scope = None if principal.admin else limit_scope(principal, ip)
        plan = []
        for at, kind in enumerate(kinds):
            limits = self._limits.get(kind)
            if limits is None:
                limits = self._limits[kind] = self._limits_of(kind)
            user_rate, user_burst, ip_rate, ip_burst = limits
            if user_rate > 0 and scope is not None:
                # Its own bucket even when the caller is counted by address: sharing the IP
                # bucket's key would let the faster rate refill the slower limit.
                plan.append((f"{kind}:{CALLER}{scope}", user_rate, user_burst, at))
            if ip_rate > 0 and ip:
                plan.append((f"{kind}:ip:{ip}", ip_rate, ip_burst, at))
        if len(self._plans) >= MAX_RATE_PLANS:
            self._plans.clear()
        kept = self._plans[(principal.user_id, principal.admin, ip, kinds)] = tuple(plan)
        return kept

    def _limits_of(self, kind: str) -> tuple[float, int, float, int]:
        """Rate and burst per user, then per IP, of ``kind`` (settings are read once per kind)."""
        s = self.settings
        return (
            getattr(s, f"{kind}_rate_per_user"),
            getattr(s, f"{kind}_burst_per_user"),
            getattr(s, f"{kind}_rate_per_ip", 0.0),
            getattr(s, f"{kind}_burst_per_ip", 1),
        )

    def count_publish(self, channel: str) -> None:
        """Count a publish through this process's API (per channel, bounded)."""
        if channel not in self.publishes and len(self.publishes) >= MAX_COUNTED_CHANNELS:
            self.publishes.clear()
        self.publishes[channel] = self.publishes.get(channel, 0) + 1

    async def admit(self, conn: Connection, principal: Principal | None = None) -> None:
        """Take a global slot and a per-user slot for ``conn`` and register it, or 503/429.

        The per-user slot counts ``principal`` as ``limit_scope`` does (without a principal:
        the connection's user, if any).
        """
        s = self.settings
        cid = conn.client_id
        ip = conn.info.get("ip", "")
        if principal is not None:
            scope = limit_scope(principal, ip)
        else:
            scope = None if conn.user_id is None else user_scope(conn.user_id)
        if not await self.cluster.acquire_slot(GLOBAL_SCOPE, cid, s.max_connections):
            raise Unavailable(
                f"the hub is at its limit of {s.max_connections} concurrent streams",
                headers=retry_after(5),
            )
        if scope is not None:
            by_address = conn.user_id is None
            limit = s.max_connections_per_ip if by_address else s.max_connections_per_user
            if not await self.cluster.acquire_slot(scope, cid, limit):
                await self.cluster.release_slot(GLOBAL_SCOPE, cid)
                who = f"address {ip!r} (no token sub)" if by_address else f"user {conn.user_id!r}"
                raise TooManyRequests(
                    f"{who} already has {limit} open streams (the limit); close one first",
                    code="too_many_connections",
                    headers=retry_after(1),
                )
            self._scopes[cid] = scope
        record: ClientRecord = {
            "client_id": cid,
            "user_id": conn.user_id,
            "ip": conn.info.get("ip", ""),
            "user_agent": conn.info.get("user_agent", ""),
            "channels": list(conn.channel_names),
            "connected_at": conn.connected_at,
            "node": self.node,
        }
        await self.cluster.register_client(record)

    async def release(self, conn: Connection) -> None:
        """Give back the slots of a finished stream and forget it.

        If the cluster state is unreachable now, the entries expire once ``keepalive`` stops
        naming this client; the stream has ended either way.
        """
        cid = conn.client_id
        try:
            # Slots first: a client no longer listed has certainly given its slots back.
            await self.cluster.release_slot(GLOBAL_SCOPE, cid)
            scope = self._scopes.pop(cid, None)
            if scope is not None:
                await self.cluster.release_slot(scope, cid)
            await self.cluster.unregister_client(cid)
        except Exception:
            log.warning("could not release the slots of client %s", cid, exc_info=True)

    async def hold_answer(self, owner: str, holder: str) -> None:
        """Take one of ``owner``'s chat-answer slots for ``holder``, or 429."""
        limit = self.settings.max_answers_per_user
        if not await self.cluster.acquire_slot(f"answers:{owner}", holder, limit):
            raise TooManyRequests(
                f"{limit} answers of this user are already streaming (the limit); "
                "wait for one to end",
                code="too_many_answers",
                headers=retry_after(1),
            )
        self.held.add(holder)

    async def release_answer(self, owner: str, holder: str) -> None:
        """Give back a chat-answer slot."""
        self.held.discard(holder)
        with contextlib.suppress(Exception):
            await self.cluster.release_slot(f"answers:{owner}", holder)

    def presence_channels(self, conn: Connection) -> list[str]:
        """Exact channels of ``conn`` that announce join/leave."""
        patterns = self.settings.presence_events
        if not patterns:
            return []
        return sorted(c for c in conn.selector.channels if any(matches(p, c) for p in patterns))

    async def announce(self, conn: Connection, kind: str) -> None:
        """Publish ``join`` or ``leave`` for ``conn`` on its presence channels."""
        for channel in self.presence_channels(conn):
            data = {"user_id": conn.user_id, "client_id": conn.client_id}
            try:
                await self.hub.publish(make_event(channel, kind, data))
            except Exception:  # a lost presence notice must not break the stream
                log.warning("could not publish %s on %s", kind, channel, exc_info=True)

    async def _keepalive_forever(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            with contextlib.suppress(Exception):
                await self.cluster.keepalive([*self.hub.connections, *self.held])

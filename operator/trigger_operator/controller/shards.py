"""The shard Leases loop of a sharded install (`core.sharding` decides): each round one LIST of the
install's Leases, one write of our member Lease, one write per shard we hold, take or hand back.

A shard is ours to act on while its last successful write began less than the renew deadline ago
(`core.leadership.leading`), exactly as the single leader's lease; a shard is dropped *before* the
write that hands it back, so that no pass of ours starts on it after another replica may hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import Callable

from trigger_operator.api import LABEL_LEASE_OF, LABEL_ROLE
from trigger_operator.config import LeaderSettings
from trigger_operator.controller.leader import Sightings, hand_back, lease_record, put_lease, rounds
from trigger_operator.core.leadership import leading
from trigger_operator.core.sharding import Seen, alive, dead, job_selectors, plan_shards, shard_of
from trigger_operator.kube.interface import AlreadyExists, Body, Conflict, LeaseApi, NotFound

log = logging.getLogger(__name__)


def shard_lease(name: str, shard: int) -> str:
    return f"{name}-shard-{shard}"


def member_lease(name: str, identity: str) -> str:
    """A Lease name for ``identity`` (a DNS subdomain: lower case, at most 253 characters)."""
    return f"{name}-member-{re.sub(r'[^a-z0-9.-]', '-', identity.lower())}"[:253].rstrip("-.")


class ShardElector:
    def __init__(self, api: LeaseApi, settings: LeaderSettings, namespace: str, identity: str, *,
                 on_start: Callable[[], None], on_renewed: Callable[[], None] = lambda: None,
                 on_held: Callable[[frozenset[int]], None] = lambda held: None,
                 monotonic: Callable[[], float] = time.monotonic,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.api, self.settings, self.namespace, self.identity = api, settings, namespace, identity
        self.count = settings.shards
        self._on_start, self._on_renewed, self._monotonic, self._clock = on_start, on_renewed, monotonic, clock
        self._on_held = on_held  # told the shards held whenever they change (the Job watch follows them)
        self._renewed_at: dict[int, float] = {}  # shard -> monotonic start of our last successful write
        self._sightings = Sightings()
        self._was_held: frozenset[int] = frozenset()
        self._acquired = False  # this round took a shard anew (`_tell` starts a new term)

    def held(self) -> frozenset[int]:
        """The shards we may act on now."""
        now = self._monotonic()
        return frozenset(k for k, at in self._renewed_at.items()
                         if leading(at, now, self.settings.renew_deadline_seconds))

    def owns(self, namespace: str, name: str) -> bool:
        shard = shard_of(namespace, name, self.count)
        at = self._renewed_at.get(shard)
        return leading(at, self._monotonic(), self.settings.renew_deadline_seconds)

    def leading(self) -> bool:
        return bool(self.held())

    async def run(self) -> None:
        await rounds(self.step, self.release, self.settings.retry_seconds)

    async def step(self) -> None:
        try:
            await self._round()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the API is away: each shard is kept only until its renew deadline
            log.warning("could not read or renew the shard leases of %s/%s: %s", self.namespace,
                        self.settings.name, error)
        self._tell()

    async def _round(self) -> None:
        listed = await self.api.list_leases(self.namespace, f"{LABEL_LEASE_OF}={self.settings.name}")
        now = self._monotonic()
        bodies = {b["metadata"]["name"]: b for b in listed}
        self._sightings.forget_all_but(bodies)
        seen: dict[str, Seen] = {}
        for lease_name, body in bodies.items():
            record = lease_record(body)
            seen[lease_name] = Seen(record, self._sightings.unchanged_for(lease_name, record, now))
        members = {n: seen[n] for n, b in bodies.items()
                   if (b["metadata"].get("labels") or {}).get(LABEL_ROLE) == "member"}
        mine = member_lease(self.settings.name, self.identity)
        with contextlib.suppress(Conflict, AlreadyExists):
            await self._write(mine, bodies.get(mine), "member")
        for name in dead({n: s for n, s in members.items() if n != mine}):
            # A killed replica's member Lease: gone, so that the shares count only the living.
            with contextlib.suppress(Conflict, NotFound):
                await self.api.delete_lease(self.namespace, name, bodies[name]["metadata"]["resourceVersion"])
        shards = {k: seen[shard_lease(self.settings.name, k)] for k in range(self.count)
                  if shard_lease(self.settings.name, k) in seen}
        plan = plan_shards(shards, alive(members) | {self.identity}, self.identity, self.count)
        for shard in plan.release:
            self._renewed_at.pop(shard, None)  # dropped before the write that lets another take it
            name = shard_lease(self.settings.name, shard)
            with contextlib.suppress(Conflict, NotFound):
                await hand_back(self.api, self.namespace, bodies[name], self._clock())
        acquired: list[int] = []
        for shard in plan.renew + plan.acquire:
            name = shard_lease(self.settings.name, shard)
            with contextlib.suppress(Conflict, AlreadyExists):  # another replica wrote first: next round
                if await self._write(name, bodies.get(name), "shard", new_term=shard in plan.acquire):
                    if shard in plan.acquire:
                        acquired.append(shard)
                    else:
                        self._renewed_at[shard] = now
        # A shard taken anew is ours from the round's end, with no await before `_tell`: no pass runs
        # on it before `on_start` has marked the new term (another replica may have held it meanwhile).
        for shard in acquired:
            self._renewed_at[shard] = now
        self._acquired = bool(acquired)

    async def _write(self, name: str, body: Body | None, role: str, *, new_term: bool = False) -> bool:
        """Creates or replaces one Lease with us holding it; False if it vanished meanwhile."""
        try:
            await put_lease(self.api, self.namespace, name, body, holder=self.identity,
                            duration_seconds=self.settings.duration_seconds, wall=self._clock(), new_term=new_term,
                            labels={LABEL_LEASE_OF: self.settings.name, LABEL_ROLE: role})
        except NotFound:
            return False
        return True

    def _tell(self) -> None:
        held = self.held()
        acquired, self._acquired = self._acquired, False
        if held != self._was_held:  # first, so the store keeps the new shards' Jobs before their passes
            self._on_held(held)
        if held - self._was_held or acquired:
            log.info("now scheduling shards %s of %d (leases %s/%s-shard-*, identity %s)", sorted(held), self.count,
                     self.namespace, self.settings.name, self.identity)
            self._on_start()
        elif self._was_held - held:
            log.info("now scheduling shards %s of %d", sorted(held), self.count)
        self._was_held = held
        if held:
            self._on_renewed()

    async def release(self) -> None:
        """On a clean stop: hand every shard back and remove our member Lease, so that the others
        take the shards over at once."""
        held, self._renewed_at = self.held(), {}
        try:
            listed = await self.api.list_leases(self.namespace, f"{LABEL_LEASE_OF}={self.settings.name}")
            for body in listed:
                name, spec = body["metadata"]["name"], body.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    continue
                if name == member_lease(self.settings.name, self.identity):
                    await self.api.delete_lease(self.namespace, name, body["metadata"]["resourceVersion"])
                else:
                    await hand_back(self.api, self.namespace, body, self._clock())
            log.info("released shards %s of %s/%s", sorted(held), self.namespace, self.settings.name)
        except Exception as error:  # the others take over after the leases' duration instead
            log.warning("could not release the shard leases: %s", error)


class JobShards:
    """Which Jobs a replica watches and keeps (handlers.py wires it between the elector, the store
    and the Job watch): without sharding, all; sharded, those of the shards the elector last said
    it holds (`hold`), and of any Trigger it owns right now: a shard just taken owns its Triggers
    before the elector's round ends, and a pass's own read of such a Job must not be dropped."""

    def __init__(self, count: int, owns: Callable[[str, str], bool]) -> None:
        self.count, self.owns = count, owns
        self.held: frozenset[int] = frozenset()

    def keeps(self, key: tuple[str, str]) -> bool:
        return self.count <= 1 or shard_of(key[0], key[1], self.count) in self.held or self.owns(*key)

    def hold(self, held: frozenset[int]) -> tuple[str, ...]:
        """Now these shards: the Job watch's selectors for them (core/sharding.py)."""
        self.held = held
        return job_selectors(held, self.count)

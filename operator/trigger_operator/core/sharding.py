"""Sharded scheduling: which replica schedules which Triggers (README, "Scale out"). Pure.

A Trigger belongs to shard ``hash(namespace/name) mod S``; each shard is one Kubernetes Lease, held
by one replica at a time under the same rules as the single leader's (`core.leadership`). Every
replica also renews a *member* Lease of its own, so that all of them see who is alive and agree on
each one's fair share: the members sorted by identity, the first ``S mod M`` of them one shard more.
A replica over its share hands shards back (holder emptied, so a taker need not wait); one under
it takes shards that are free. Which free shards: each replica ranks the shards by a hash of its
identity and the shard (rendezvous hashing), so that replicas joining together reach for different
ones and rarely collide; a collision is refused by the Lease's resourceVersion.

The shard is a hash of the Trigger's key, not of its uid, so that a Trigger deleted and made again
under its name stays with the replica that holds its old Jobs, and a gone Trigger's Jobs (known by
key only) are released by the shard's holder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from trigger_operator.api import LABEL_SHARD, LABEL_TRIGGER
from trigger_operator.core.leadership import LeaseRecord, Step, decide

# A shard free this many lease durations is taken by anyone, over its share or not: fair shares
# are computed from member Leases, and while the replicas disagree on who is alive (one just
# died, one just joined) the shares may add up to less than all shards for a moment.
ORPHAN_DURATIONS = 2.0


def shard_of(namespace: str, name: str, shards: int) -> int:
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_label(namespace: str, name: str, shards: int) -> str:
    """The value of LABEL_SHARD on the Jobs of a Trigger: its shard and the count it was taken of, so
    that a Job labelled under another shard count is never mistaken for one of this count's."""
    return _label(shard_of(namespace, name, shards), shards)


def _label(shard: int, shards: int) -> str:
    return f"{shard}-of-{shards}"


def job_selectors(held: Collection[int], shards: int) -> tuple[str, ...]:
    """The label selectors of the Job watches of a replica holding ``held`` of ``shards``: without
    sharding (``shards`` <= 1) all our Jobs; else the Jobs labelled for the held shards, and the Jobs
    without a label of this shard count (made by an operator before the label, or under another
    count: few, and each then kept only if its Trigger's shard is held). None while nothing is held."""
    if shards <= 1:
        return (LABEL_TRIGGER,)
    if not held:
        return ()
    mine = ",".join(_label(k, shards) for k in sorted(held))
    every = ",".join(_label(k, shards) for k in range(shards))
    return f"{LABEL_TRIGGER},{LABEL_SHARD} in ({mine})", f"{LABEL_TRIGGER},{LABEL_SHARD} notin ({every})"


def fair_share(members: Collection[str], me: str, shards: int) -> int:
    """How many of ``shards`` the member ``me`` should hold, ``members`` being those alive."""
    ranked = sorted(set(members) | {me})
    base, extra = divmod(shards, len(ranked))
    return base + (1 if ranked.index(me) < extra else 0)


def preference(me: str, shards: int) -> list[int]:
    """The shards in the order ``me`` reaches for them, and keeps them (highest score first)."""
    def score(shard: int) -> bytes:
        return hashlib.sha256(f"{me}#{shard}".encode()).digest()
    return sorted(range(shards), key=score, reverse=True)


@dataclass(frozen=True)
class Seen:
    """A Lease as read, and for how long we have seen it unchanged (our monotonic clock)."""

    record: LeaseRecord | None
    unchanged_for: float


def _renewed(seen: Seen) -> bool:
    return seen.record is not None and decide(seen.record, "", unchanged_for=seen.unchanged_for) is Step.WAIT


def alive(members: Mapping[str, Seen]) -> set[str]:
    """The identities holding member Leases (by Lease name) that are renewed, by the same rule as a shard's."""
    return {seen.record.holder for seen in members.values() if seen.record is not None and _renewed(seen)}


def dead(members: Mapping[str, Seen]) -> list[str]:
    """Member Leases to delete: released, or not renewed for their duration (a replica killed)."""
    return sorted(name for name, seen in members.items() if not _renewed(seen))


@dataclass(frozen=True)
class ShardPlan:
    renew: tuple[int, ...] = ()
    acquire: tuple[int, ...] = ()
    release: tuple[int, ...] = ()


def _orphaned(seen: Seen | None) -> bool:
    """Free (released, or its holder dead) for ORPHAN_DURATIONS lease durations."""
    return seen is not None and seen.record is not None and \
        seen.unchanged_for >= ORPHAN_DURATIONS * seen.record.duration_seconds


def plan_shards(shards: Mapping[int, Seen], members: Collection[str], me: str, count: int) -> ShardPlan:
    """What ``me`` writes this round: ``shards`` maps each shard to its Lease as read (``Seen(None,
    ...)`` before it was ever created), ``members`` are the identities alive, ``count`` the number
    of shards."""
    order = preference(me, count)
    steps = {k: decide(shards[k].record if k in shards else None, me,
                       unchanged_for=shards[k].unchanged_for if k in shards else 0.0) for k in range(count)}
    share = fair_share(members, me, count)
    ours = [k for k in order if steps[k] is Step.RENEW]
    keep, release = ours[:share], ours[share:]
    free = [k for k in order if steps[k] is Step.ACQUIRE]
    acquire = free[:max(0, share - len(keep))]
    orphans = [k for k in free if k not in acquire and _orphaned(shards.get(k))]
    return ShardPlan(renew=tuple(sorted(keep)), acquire=tuple(sorted(acquire + orphans)),
                     release=tuple(sorted(release)))

"""Sharded scheduling: the pure shard math, and shard electors of several replicas against the fake
Lease API: the shards split evenly, no shard is ever held by two replicas at once or by nobody for
long, a killed replica's shards move to the others after the lease's duration, a new one gets its
share, and a replica schedules only the Triggers of its shards."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from tests.unit.conftest import NAMESPACE, TRIGGER_NAME, Seconds, at, cron_spec
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_controller import Clock, Replica, boot, new_cluster, run
from tests.unit.test_leadership import FakeLeases
from trigger_operator.api import LABEL_SHARD
from trigger_operator.config import LeaderSettings, OperatorConfig
from trigger_operator.controller.shards import JobShards, ShardElector, member_lease, shard_lease
from trigger_operator.core.leadership import LeaseRecord
from trigger_operator.core.sharding import (
    ORPHAN_DURATIONS,
    Seen,
    alive,
    dead,
    fair_share,
    job_selectors,
    plan_shards,
    shard_label,
    shard_of,
)
from trigger_operator.jobs.render import scheduled_job_name

SHARDS = 6
SETTINGS = LeaderSettings(enabled=True, duration_seconds=10, renew_deadline_seconds=7, retry_seconds=2, shards=SHARDS)


def held_by(holder: str, renewed: float = 0.0, duration: float = 10) -> Seen:
    return Seen(LeaseRecord(holder=holder, renew_time="t", duration_seconds=duration), renewed)


def test_the_shard_of_a_trigger_is_stable_and_the_keys_spread_evenly() -> None:
    assert shard_of("ns", "a", SHARDS) == shard_of("ns", "a", SHARDS)
    spread = Counter(shard_of(f"ns-{i % 7}", f"trigger-{i}", SHARDS) for i in range(6000))
    assert set(spread) == set(range(SHARDS))
    assert max(spread.values()) < 1.1 * 1000 and min(spread.values()) > 0.9 * 1000


@pytest.mark.parametrize(("members", "shards", "shares"), [
    (["a"], 6, [6]), (["a", "b"], 6, [3, 3]), (["a", "b", "c"], 6, [2, 2, 2]),
    (["a", "b", "c", "d"], 6, [2, 2, 1, 1]), (["a", "b", "c"], 2, [1, 1, 0]), (["c", "a", "b"], 7, [3, 2, 2]),
])
def test_fair_shares_add_up_to_every_shard(members: list[str], shards: int, shares: list[int]) -> None:
    assert [fair_share(members, me, shards) for me in sorted(members)] == shares


def test_a_replica_counts_itself_among_the_members() -> None:
    assert fair_share(["b"], "a", 6) == 3


@pytest.mark.parametrize(("shards", "members", "expected"), [
    pytest.param({}, {"a"}, (0, 6, 0), id="alone-takes-all"),
    pytest.param({k: held_by("a") for k in range(6)}, {"a", "b"}, (3, 0, 3), id="over-its-share-hands-back"),
    pytest.param({k: held_by("b") for k in range(3)}, {"a", "b"}, (0, 3, 0), id="takes-the-free-half"),
    pytest.param({k: held_by("b", 9.9) for k in range(6)}, {"a", "b"}, (0, 0, 0), id="not-a-living-holder's"),
    pytest.param({k: held_by("b", 10) for k in range(6)}, {"a"}, (0, 6, 0), id="a-dead-holder's-after-its-duration"),
    pytest.param({k: held_by("") for k in range(6)}, {"a", "b", "c"}, (0, 2, 0), id="released-at-once"),
    pytest.param({**{k: held_by("c") for k in range(4)}, 4: held_by("", 10 * ORPHAN_DURATIONS),
                  5: held_by("", 10 * ORPHAN_DURATIONS)}, {"a", "b"}, (0, 2, 0), id="free-ones-up-to-the-share"),
])
def test_the_shard_plan(shards: dict[int, Seen], members: set[str], expected: tuple[int, int, int]) -> None:
    plan = plan_shards(shards, members, "a", SHARDS)
    assert (len(plan.renew), len(plan.acquire), len(plan.release)) == expected
    assert not set(plan.renew) & set(plan.acquire) and not set(plan.acquire) & {
        k for k, s in shards.items() if s.record and s.record.holder not in ("", "a") and s.unchanged_for < 10}


def test_an_orphan_free_for_long_is_taken_over_the_share() -> None:
    shards = {k: held_by("b") for k in range(5)} | {5: held_by("", 10 * ORPHAN_DURATIONS)}
    plan = plan_shards(shards, {"a", "b"}, "a", SHARDS)  # a's share (3) is not free, but shard 5 is nobody's
    assert plan.acquire == (5,)


def test_member_leases_alive_and_dead() -> None:
    members = {"m-a": held_by("a", 1), "m-b": held_by("b", 10), "m-c": held_by("", 0)}
    assert alive(members) == {"a"} and dead(members) == ["m-b", "m-c"]


def test_lease_names_are_dns_subdomains() -> None:
    assert member_lease("trg", "Pod_0-ab12") == "trg-member-pod-0-ab12"
    assert len(member_lease("trg", "x" * 400)) == 253 and shard_lease("trg", 3) == "trg-shard-3"


class Fleet:
    """Shard electors of several replicas on one fake Lease API and one monotonic clock."""

    def __init__(self, clock: Clock) -> None:
        self.leases, self.seconds, self.clock = FakeLeases(), Seconds(1000.0), clock
        self.electors: dict[str, ShardElector] = {}
        self.names = (f"op-{i}" for i in itertools.count())

    def join(self) -> ShardElector:
        name = next(self.names)
        elector = self.electors[name] = ShardElector(self.leases, SETTINGS, NAMESPACE, name, on_start=lambda: None,
                                                     monotonic=self.seconds, clock=self.clock)
        return elector

    async def rounds(self, n: int) -> None:
        for _ in range(n):
            self.seconds.now += SETTINGS.retry_seconds
            await asyncio.gather(*(e.step() for e in self.electors.values()))
            self.assert_no_shard_held_twice()

    def assert_no_shard_held_twice(self) -> None:
        held = [e.held() for e in self.electors.values()]
        assert sum(len(h) for h in held) == len(frozenset().union(*held)), held

    def shares(self) -> list[int]:
        return sorted(len(e.held()) for e in self.electors.values())

    def every_shard_held(self) -> bool:
        return frozenset().union(*(e.held() for e in self.electors.values())) == frozenset(range(SHARDS))


def test_replicas_split_the_shards_evenly_and_rebalance_when_they_come_and_go() -> None:
    async def scenario() -> None:
        fleet = Fleet(new_cluster()[1])
        for _ in range(3):
            fleet.join()
        await fleet.rounds(4)
        assert fleet.shares() == [2, 2, 2] and fleet.every_shard_held()
        # A killed replica (no release): its shards move after the lease's duration, within 8 rounds.
        del fleet.electors["op-1"]
        await fleet.rounds(8)
        assert fleet.shares() == [3, 3] and fleet.every_shard_held()
        assert (NAMESPACE, member_lease(SETTINGS.name, "op-1")) not in fleet.leases.leases  # its member Lease is gone
        # A new replica gets its share: the others hand shards back, it takes them.
        fleet.join()
        await fleet.rounds(3)
        assert fleet.shares() == [2, 2, 2] and fleet.every_shard_held()
        # A clean stop hands over at once: the next round has every shard held again.
        leaving = fleet.electors.pop("op-0")
        await leaving.release()
        await fleet.rounds(2)
        assert fleet.shares() == [3, 3] and fleet.every_shard_held()
    run(scenario)


def test_a_frozen_replica_drops_its_shards_before_another_may_take_them() -> None:
    async def scenario() -> None:
        fleet = Fleet(new_cluster()[1])
        frozen, other = fleet.join(), fleet.join()
        await fleet.rounds(3)
        assert fleet.shares() == [3, 3]
        del fleet.electors["op-0"]  # SIGSTOP: it makes no rounds, its monotonic clock runs on
        for _ in range(8):
            await fleet.rounds(1)
            assert not frozen.held() & other.held()
        assert other.held() == frozenset(range(SHARDS)) and not frozen.held()
        fleet.electors["op-0"] = frozen  # SIGCONT: it finds its shards taken and its share shrunk to nothing
        await fleet.rounds(3)
        assert fleet.shares() == [3, 3] and fleet.every_shard_held()
    run(scenario)


def test_a_replica_schedules_only_the_triggers_of_its_shards() -> None:
    async def scenario() -> None:
        clock = Clock(at(minutes=-2))
        cluster = FakeCluster(clock)
        names = [f"t-{i}" for i in range(12)]
        for name in names:
            cluster.apply_trigger(NAMESPACE, name, cron_spec("0 10 * * *"))
        fleet = Fleet(clock)
        replicas = [boot(cluster, clock, owns=e.owns, leading=e.leading) for e in (fleet.join(), fleet.join())]
        await fleet.rounds(3)
        assert fleet.shares() == [3, 3]
        owners = {name: [e.owns(NAMESPACE, name) for e in fleet.electors.values()].count(True) for name in names}
        assert set(owners.values()) == {1}  # each Trigger owned exactly once
        clock.now = at(seconds=1)
        for _ in range(3):
            for replica in replicas:
                replica.watch.deliver(replica.scheduler)
                for name in names:
                    await replica.scheduler.sync((NAMESPACE, name))
        assert sorted(cluster.created) == sorted(scheduled_job_name(n, at()) for n in names)
        by_replica = [sum(e.owns(NAMESPACE, n) for n in names) for e in fleet.electors.values()]
        assert sum(by_replica) == len(names) and min(by_replica) > 0
        # A replica's pass over a Trigger of another's shard makes no call at all.
        calls = len(cluster.calls)
        for replica, elector in zip(replicas, fleet.electors.values(), strict=True):
            for name in [n for n in names if not elector.owns(NAMESPACE, n)]:
                await replica.scheduler.sync((NAMESPACE, name))
        assert len(cluster.calls) == calls
    run(scenario)


def test_a_trigger_dropped_while_its_lease_lapsed_for_a_moment_comes_back_at_the_next_renewal() -> None:
    """A round later than the renew deadline (a starved process) makes `owns` false for a moment
    without the shard changing hands; a pass in that moment drops its key, and no new shard calls
    `lead`: the next renewal must bring the key back, or the Trigger would never run again."""
    async def scenario() -> None:
        clock = Clock(at(minutes=-2))
        cluster = FakeCluster(clock)
        cluster.apply_trigger(NAMESPACE, "t-0", cron_spec("0 10 * * *"))
        fleet = Fleet(clock)
        booted: list[Replica] = []  # the elector first, as in handlers.start
        elector = ShardElector(fleet.leases, SETTINGS, NAMESPACE, "op-0", on_start=lambda: booted[0].scheduler.lead(),
                               on_renewed=lambda: booted[0].scheduler.take_back(), monotonic=fleet.seconds,
                               clock=clock)
        replica = boot(cluster, clock, owns=elector.owns, leading=elector.leading)
        booted.append(replica)
        await elector.step()
        replica.watch.deliver(replica.scheduler)
        clock.now = at(seconds=1)
        fleet.seconds.now += SETTINGS.renew_deadline_seconds  # the next round is late
        queue = replica.scheduler.queue
        key = await asyncio.wait_for(queue.get(), timeout=1)  # a worker takes it: not owned now, dropped
        await replica.scheduler.sync(key)
        queue.done(key)
        assert len(queue) == 0 and cluster.created == []
        await elector.step()  # renewed: the same shards, so no `lead`
        assert len(queue) == 1
        for _ in range(3):
            await replica.scheduler.sync(key)
            replica.watch.deliver(replica.scheduler)
        assert cluster.created == [scheduled_job_name("t-0", at())]
    run(scenario)


def test_a_shard_taken_anew_while_our_clock_still_holds_it_starts_a_new_term() -> None:
    """As for the single lease: a shard handed back by a replica that held it while we were paused,
    taken again within our old renew deadline, calls `on_start` (a new term); renewals do not."""
    async def scenario() -> None:
        fleet = Fleet(new_cluster()[1])
        started: list[int] = []
        elector = fleet.electors["op-0"] = ShardElector(fleet.leases, SETTINGS, NAMESPACE, "op-0",
                                                        on_start=lambda: started.append(1),
                                                        monotonic=fleet.seconds, clock=fleet.clock)
        await fleet.rounds(2)
        assert elector.held() == frozenset(range(SHARDS)) and started == [1]
        await fleet.rounds(1)
        assert started == [1]
        key = (NAMESPACE, shard_lease(SETTINGS.name, 0))
        stored = fleet.leases.leases[key]
        fleet.leases._store(key, {**stored, "spec": {**stored["spec"], "holderIdentity": ""}})
        await fleet.rounds(1)
        assert 0 in elector.held() and started == [1, 1]
    run(scenario)


@pytest.mark.parametrize("leader", [SETTINGS, LeaderSettings(enabled=False, shards=SHARDS), LeaderSettings()])
def test_a_sharded_replica_labels_each_job_with_its_triggers_shard(leader: LeaderSettings) -> None:
    """So that each replica can watch only the Jobs of the shards it holds (kube/watch.py)."""
    async def scenario() -> None:
        cluster, clock = new_cluster(expression="0 10 * * *")
        replica = boot(cluster, clock, OperatorConfig(leader=leader))
        await replica.settle()
        clock.now = at(seconds=1)
        await replica.settle()
        (job,) = cluster.jobs.values()
        labels = job["metadata"]["labels"]
        if leader.enabled:
            assert labels[LABEL_SHARD] == shard_label(NAMESPACE, TRIGGER_NAME, SHARDS) == \
                f"{shard_of(NAMESPACE, TRIGGER_NAME, SHARDS)}-of-{SHARDS}"
        else:
            assert LABEL_SHARD not in labels
    run(scenario)


def test_a_replica_keeps_the_jobs_of_its_shards_and_of_what_it_owns_and_follows_its_shards() -> None:
    owned: set[str] = set()
    scope = JobShards(SHARDS, owns=lambda namespace, name: name in owned)
    by_shard = {shard_of(NAMESPACE, f"t-{i}", SHARDS): f"t-{i}" for i in range(100)}
    assert scope.keeps((NAMESPACE, by_shard[0])) is False  # nothing held yet
    assert scope.hold(frozenset({0, 2})) == job_selectors({0, 2}, SHARDS)
    assert [scope.keeps((NAMESPACE, by_shard[k])) for k in range(SHARDS)] == [k in (0, 2) for k in range(SHARDS)]
    owned.add(by_shard[1])  # a shard just taken: owned before the elector's round ends
    assert scope.keeps((NAMESPACE, by_shard[1]))
    assert JobShards(1, owns=lambda namespace, name: False).keeps((NAMESPACE, "any"))


def test_the_elector_tells_the_shards_held_whenever_they_change() -> None:
    async def scenario() -> None:
        told: list[frozenset[int]] = []
        fleet = Fleet(new_cluster()[1])
        first = fleet.electors["first"] = ShardElector(fleet.leases, SETTINGS, NAMESPACE, "first",
                                                       on_start=lambda: None, on_held=told.append,
                                                       monotonic=fleet.seconds, clock=fleet.clock)
        await fleet.rounds(3)
        assert told == [frozenset(range(SHARDS))]  # once, not every round
        fleet.join()
        await fleet.rounds(4)
        assert told[-1] == first.held() and len(first.held()) == SHARDS // 2
    run(scenario)

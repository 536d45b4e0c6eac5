"""High availability: the pure lease decision, and the Lease loop with two schedulers against a
fake Lease API: one schedules at a time, a dead leader is replaced after the lease's duration, a
frozen one stops acting before anyone else starts, and a clean stop hands over at once."""

from __future__ import annotations

import asyncio
import copy
import itertools
from typing import Any

import pytest

from tests.unit.conftest import NAMESPACE, Seconds, at
from tests.unit.test_controller import FIRST, Clock, Replica, boot, counters, new_cluster, run
from trigger_operator.config import LeaderSettings
from trigger_operator.controller.leader import Elector
from trigger_operator.core.leadership import LeaseRecord, Step, decide, leading
from trigger_operator.kube.interface import AlreadyExists, Body, Conflict, NotFound

SETTINGS = LeaderSettings(enabled=True, duration_seconds=10, renew_deadline_seconds=7, retry_seconds=2)
THEIRS = LeaseRecord(holder="b-1", renew_time="t1", duration_seconds=10)


@pytest.mark.parametrize(("record", "unchanged_for", "expected"), [
    pytest.param(None, 0, Step.ACQUIRE, id="no-lease-yet"),
    pytest.param(LeaseRecord(holder="", renew_time="t1", duration_seconds=10), 0, Step.ACQUIRE, id="released"),
    pytest.param(LeaseRecord(holder="a-1", renew_time="t1", duration_seconds=10), 0, Step.RENEW, id="ours"),
    pytest.param(THEIRS, 0, Step.WAIT, id="theirs-just-renewed"),
    pytest.param(THEIRS, 9.9, Step.WAIT, id="theirs-unchanged-under-its-duration"),
    pytest.param(THEIRS, 10, Step.ACQUIRE, id="theirs-unchanged-for-its-duration"),
])
def test_the_lease_decision(record: LeaseRecord | None, unchanged_for: float, expected: Step) -> None:
    assert decide(record, "a-1", unchanged_for=unchanged_for) is expected


@pytest.mark.parametrize(("renewed_at", "now", "expected"), [
    (None, 0.0, False), (100.0, 106.9, True), (100.0, 107.0, False), (100.0, 1000.0, False)])
def test_a_leader_acts_only_within_its_renew_deadline(renewed_at: float | None, now: float, expected: bool) -> None:
    assert leading(renewed_at, now, renew_deadline=7) is expected


class FakeLeases:
    """Leases as the API server keeps them: resourceVersion-guarded replaces, create once."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], Body] = {}
        self._versions = itertools.count(1)
        self.writes = 0

    async def get_lease(self, namespace: str, name: str) -> Body | None:
        return copy.deepcopy(self.leases.get((namespace, name)))

    async def create_lease(self, namespace: str, body: Any) -> Body:
        key = (namespace, body["metadata"]["name"])
        if key in self.leases:
            raise AlreadyExists(key[1])
        return self._store(key, body)

    async def replace_lease(self, namespace: str, name: str, body: Any) -> Body:
        stored = self.leases.get((namespace, name))
        if stored is None or stored["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict(name)
        return self._store((namespace, name), body)

    async def list_leases(self, namespace: str, label_selector: str) -> list[Body]:
        label, value = label_selector.split("=")
        return [copy.deepcopy(b) for (ns, _), b in sorted(self.leases.items())
                if ns == namespace and (b["metadata"].get("labels") or {}).get(label) == value]

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None:
        stored = self.leases.get((namespace, name))
        if stored is None:
            raise NotFound(name)
        if stored["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(name)
        del self.leases[(namespace, name)]

    def _store(self, key: tuple[str, str], body: Any) -> Body:
        self.writes += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"] = {**stored["metadata"], "resourceVersion": str(next(self._versions))}
        self.leases[key] = stored
        return copy.deepcopy(stored)

    def holder(self) -> str:
        return str(self.leases[(NAMESPACE, SETTINGS.name)]["spec"]["holderIdentity"])


def replica_with_election(cluster: Any, clock: Clock, leases: FakeLeases, seconds: Seconds,
                          name: str) -> tuple[Replica, Elector]:
    booted: list[Replica] = []  # the elector is made first, as in handlers.start: it starts the scheduler
    elector = Elector(leases, SETTINGS, NAMESPACE, name, on_start=lambda: booted[0].scheduler.lead(),
                      on_stop=lambda: None, monotonic=seconds, clock=clock)
    replica = boot(cluster, clock, owns=elector.owns, leading=elector.leading)
    booted.append(replica)
    return replica, elector


def test_one_replica_schedules_and_a_dead_leader_is_replaced_after_the_lease_duration() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        leases, seconds = FakeLeases(), Seconds(1000.0)
        a, lease_a = replica_with_election(cluster, clock, leases, seconds, "a-1")
        b, lease_b = replica_with_election(cluster, clock, leases, seconds, "b-1")
        await lease_a.step()
        await lease_b.step()
        assert (lease_a.leading(), lease_b.leading(), leases.holder()) == (True, False, "a-1")
        clock.now = at(seconds=1)
        await b.settle()  # the follower decides nothing
        assert cluster.created == [] and cluster.calls == []
        await a.settle()
        assert cluster.created == [FIRST]
        # a dies (SIGKILL: no release). b sees its lease unchanged and takes over after 10 s.
        for _ in range(4):
            seconds.now += SETTINGS.retry_seconds
            await lease_b.step()
        assert not lease_b.leading() and leases.holder() == "a-1"  # 8 s: not yet
        seconds.now += SETTINGS.retry_seconds
        await lease_b.step()
        assert lease_b.leading() and leases.holder() == "b-1"
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(seconds=30)
        await b.settle()  # the new leader counts the run the old one started, once
        assert counters(cluster)[0] == 1 and cluster.created == [FIRST]
    run(scenario)


def test_a_frozen_leader_stops_acting_before_another_may_start() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        leases, seconds = FakeLeases(), Seconds(1000.0)
        a, lease_a = replica_with_election(cluster, clock, leases, seconds, "a-1")
        await lease_a.step()
        seconds.now += SETTINGS.renew_deadline_seconds  # SIGSTOP for 7 s: the monotonic clock ran on
        clock.now = at(seconds=1)
        await a.settle()  # woken before its loop renews: it must not act on its old term
        assert cluster.created == [] and not lease_a.leading()
        await lease_a.step()  # nobody took over meanwhile: it renews and goes on
        await a.settle()
        assert cluster.created == [FIRST]
    run(scenario)


def test_a_clean_stop_hands_the_lease_over_at_once() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        leases, seconds = FakeLeases(), Seconds(1000.0)
        _, lease_a = replica_with_election(cluster, clock, leases, seconds, "a-1")
        b, lease_b = replica_with_election(cluster, clock, leases, seconds, "b-1")
        await lease_a.step()
        await lease_b.step()
        await lease_a.release()
        assert not lease_a.leading() and leases.holder() == ""
        await lease_b.step()
        assert lease_b.leading() and leases.holder() == "b-1"
        assert leases.leases[(NAMESPACE, SETTINGS.name)]["spec"]["leaseTransitions"] == 1
        clock.now = at(seconds=1)
        await b.settle()
        assert cluster.created == [FIRST]
    run(scenario)


def test_two_replicas_racing_for_a_free_lease_make_one_leader() -> None:
    async def scenario() -> None:
        _, clock = new_cluster()
        leases, seconds = FakeLeases(), Seconds(1000.0)
        electors = [Elector(leases, SETTINGS, NAMESPACE, name, on_start=lambda: None, on_stop=lambda: None,
                            monotonic=seconds, clock=clock) for name in ("a-1", "b-1", "c-1")]
        await asyncio.gather(*(e.step() for e in electors))
        assert [e.leading() for e in electors].count(True) == 1
        for _ in range(5):
            seconds.now += SETTINGS.retry_seconds
            await asyncio.gather(*(e.step() for e in electors))
            assert [e.leading() for e in electors].count(True) == 1
    run(scenario)


def test_a_replica_that_cannot_reach_the_api_stops_leading_at_its_deadline() -> None:
    async def scenario() -> None:
        _, clock = new_cluster()
        leases, seconds = FakeLeases(), Seconds(1000.0)
        started, stopped = [], []
        elector = Elector(leases, SETTINGS, NAMESPACE, "a-1", on_start=lambda: started.append(1),
                          on_stop=lambda: stopped.append(1), monotonic=seconds, clock=clock)
        await elector.step()

        async def unreachable(namespace: str, name: str) -> Body | None:
            raise OSError("connection refused")
        leases.get_lease = unreachable  # type: ignore[method-assign]
        seconds.now += 4
        await elector.step()
        assert elector.leading() and stopped == []
        seconds.now += 4
        await elector.step()
        assert not elector.leading() and (started, stopped) == ([1], [1])
    run(scenario)


def test_a_lease_taken_anew_while_our_clock_still_says_we_lead_starts_a_new_term() -> None:
    """Paused past the lease's duration, then woken for a round that finds the lease handed back by
    the replica that held it meanwhile: we take it anew within our old renew deadline's reach, so
    `on_start` must mark the new term (a copy our own write produced before is no longer vouched for:
    docs/exactly-once.md, rule 3); a plain renewal does not."""
    async def scenario() -> None:
        _, clock = new_cluster()
        leases, seconds = FakeLeases(), Seconds(1000.0)
        started: list[int] = []
        elector = Elector(leases, SETTINGS, NAMESPACE, "a-1", on_start=lambda: started.append(1),
                          on_stop=lambda: None, monotonic=seconds, clock=clock)
        await elector.step()
        seconds.now += SETTINGS.retry_seconds
        await elector.step()
        assert started == [1] and leases.holder() == "a-1"
        stored = leases.leases[(NAMESPACE, SETTINGS.name)]  # b-1 held it and handed it back meanwhile
        leases._store((NAMESPACE, SETTINGS.name), {**stored, "spec": {**stored["spec"], "holderIdentity": ""}})
        seconds.now += SETTINGS.retry_seconds
        assert elector.leading()
        await elector.step()
        assert started == [1, 1] and leases.holder() == "a-1"
    run(scenario)

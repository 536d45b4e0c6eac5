"""The scheduler shell's exactly-once protocol, against a small fake of our own API interface.

Each scenario of the hardening review is replayed here as the operator would meet it: a second
replica holding a stale copy, a crash between any two API calls, a watch that lags or loses events,
a Job deleted by its TTL or by hand in a gap, a stranger holding a Job's name, an unreadable status,
refused creates. Unless a test says otherwise the Trigger is the hourly cron Trigger of the other
unit tests, created at 09:40; its first moment is 10:00 (``at()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.unit.conftest import NAMESPACE, TRIGGER_NAME, at, cron_spec, job_template
from tests.unit.fake_cluster import Crash, FakeCluster, Watch
from trigger_operator.admission.approval import requester, sign, subject
from trigger_operator.api import ANNOTATION_BACKFILL, ANNOTATION_SOURCE_APPROVAL, FINALIZER
from trigger_operator.config import OperatorConfig, SchedulerSettings, SourcesSettings
from trigger_operator.controller.checks import CHECKS_PER_NAMESPACE
from trigger_operator.controller.executor import TERMINAL_MARGIN
from trigger_operator.controller.loop import Scheduler
from trigger_operator.controller.reconciler import STALE_JOB_SECONDS
from trigger_operator.controller.result import Result
from trigger_operator.core.firing.backfill import request_annotation
from trigger_operator.core.runs import CREATE_GRACE
from trigger_operator.jobs.render import scheduled_job_name
from trigger_operator.kube.interface import Identity, Rejected, RetryLater
from trigger_operator.model.spec import parse_spec
from trigger_operator.model.status import format_time
from trigger_operator.sources.read import SourceError
from trigger_operator.timemath.calendar import jitter_offset

KEY = (NAMESPACE, TRIGGER_NAME)
FIRST = scheduled_job_name(TRIGGER_NAME, at())
SECOND = scheduled_job_name(TRIGGER_NAME, at(hours=1))
CATALOG_DATA = {"cluster": "spec:\n  template:\n    spec:\n      containers: [{name: a, image: busybox:1.37}]\n"}


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Replica:
    """One operator process: its scheduler (memory) and its watches."""

    scheduler: Scheduler
    watch: Watch

    async def step(self, *, only: str | None = None) -> None:
        """Watch events in, then one reconcile of the Trigger."""
        self.watch.deliver(self.scheduler, only=only)
        await self.scheduler.sync(KEY)
        await asyncio.sleep(0)  # let background Events post

    async def settle(self, passes: int = 4) -> None:
        for _ in range(passes):
            await self.step()


ROUTINE_EVENTS = OperatorConfig(scheduler=SchedulerSettings(routine_events=True))
APPROVAL_KEY = b"the-unit-tests-approval-key"


def approved(name: str, spec: dict[str, Any], *, namespace: str = NAMESPACE) -> dict[str, str]:
    """The annotation the mutating webhook writes for a requester who may get the spec's source."""
    approves = subject(parse_spec(spec).schedule_config.source)
    assert approves is not None
    return {ANNOTATION_SOURCE_APPROVAL: sign(APPROVAL_KEY, namespace, name, approves, requester(Identity("admin")))}


def boot(cluster: FakeCluster, clock: Clock, config: OperatorConfig | None = None, **wiring: Any) -> Replica:
    """A new operator process: empty memory, watches starting with a full list. ``wiring``: the
    Scheduler's owns, leading and watched, as handlers.start gives them (an elector's)."""
    scheduler = Scheduler(cluster, config or OperatorConfig(), clock=clock, monotonic=lambda: clock.now.timestamp(),
                          approval_key=APPROVAL_KEY, **wiring)
    scheduler.on_catalog(CATALOG_DATA)
    return Replica(scheduler, cluster.watch())


def new_cluster(**spec: Any) -> tuple[FakeCluster, Clock]:
    clock = Clock(at(minutes=-20))
    cluster = FakeCluster(clock)
    cluster.apply_trigger(NAMESPACE, TRIGGER_NAME, cron_spec(**spec))
    return cluster, clock


async def first_run_started(config: OperatorConfig | None = None, **spec: Any) -> tuple[FakeCluster, Clock, Replica]:
    """A cluster with the Trigger, one replica that has seen it, and the 10:00 run's Job created."""
    cluster, clock = new_cluster(**spec)
    replica = boot(cluster, clock, config)
    await replica.settle()
    clock.now = at(seconds=1)
    await replica.settle()
    return cluster, clock, replica


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def counters(cluster: FakeCluster) -> tuple[int, int, int]:
    s = cluster.status(*KEY)
    return s.get("executionCount", 0), s.get("failedExecutionCount", 0), s.get("consecutiveFailures", 0)


def outcomes(cluster: FakeCluster) -> list[tuple[str, str]]:
    return [(e["name"], e["outcome"]) for e in cluster.status(*KEY).get("recentExecutions") or []]


def held_jobs(cluster: FakeCluster) -> list[str]:
    """Jobs still carrying our finalizer."""
    return sorted(n for (_, n), b in cluster.jobs.items() if FINALIZER in (b["metadata"].get("finalizers") or []))


# --- scenario 1: no create or delete on a copy not confirmed current --------------------------------

def test_a_replica_with_a_stale_copy_does_not_create_a_pruned_job_again() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster(successfulJobsHistoryLimit=0)
        a, b = boot(cluster, clock), boot(cluster, clock)
        await a.step()
        clock.now = at(seconds=1)
        await a.step()  # A lists the run in status.active, then creates its Job
        b.watch.deliver(b.scheduler, only="Trigger")  # B sees the run active; its Job watch lags
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(seconds=90)  # the Job is older than the name hold: nothing keeps its name taken
        await a.settle()  # A counts the success, releases the Job and prunes it (history limit 0)
        assert (NAMESPACE, FIRST) not in cluster.jobs and counters(cluster) == (1, 0, 0)
        await b.scheduler.sync(KEY)  # B: run active in its copy, Job absent: plans to create it again
        await b.settle()
        assert cluster.created == [FIRST]
        assert counters(cluster) == (1, 0, 0)
    run(scenario)


def test_a_stale_copy_is_read_again_before_acting_and_the_read_costs_nothing_otherwise() -> None:
    async def scenario() -> None:
        cluster, clock, a = await first_run_started()
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(seconds=30)
        await a.settle()
        # A normal run: the moment announced by the first write, then the create, the write listing
        # it, the result; no read of the Trigger at all. The Job keeps our finalizer while it is
        # younger than the name hold; the next run's pass releases it.
        assert cluster.called("get_trigger") == 0
        assert [m for m, _ in cluster.calls] == ["patch_trigger_status", "create_job", "patch_trigger_status",
                                                "patch_trigger_status"]
        clock.now = at(hours=1, seconds=1)
        await a.settle()
        assert [m for m, _ in cluster.calls[4:]] == ["create_job", "patch_trigger_status", "release_job"]
        assert cluster.called("get_trigger") == 0 and held_jobs(cluster) == [SECOND]
    run(scenario)


# --- a replica paused in the middle of a pass ---------------------------------------------------------

@dataclass
class PausedB:
    """Two replicas that have seen the Trigger (history limit 0); ``start`` seconds after 10:00 B's
    pass has run until one of its calls reached a gate, and waits there until ``gate`` is set. At
    10:00:01 the announced run's create goes first; 5 s past create_within, the write does."""

    cluster: FakeCluster
    clock: Clock
    a: Replica
    b: Replica
    gate: asyncio.Event
    paused: asyncio.Task[Result]
    start: float


WITHIN = SchedulerSettings().create_within_seconds  # the default create window, one home: config.py
STARTS = [pytest.param(1, id="created-first"), pytest.param(WITHIN + 5, id="written-first")]


async def _b_paused_at(point: str, start: float) -> PausedB:
    cluster, clock = new_cluster(successfulJobsHistoryLimit=0)
    a, b = boot(cluster, clock), boot(cluster, clock)
    await b.step()  # B's write announces 10:00: its own answer, so it may create first
    await a.step()
    clock.now = at(seconds=start)
    b.watch.deliver(b.scheduler)
    gate = cluster.pause_at(point)
    paused = asyncio.create_task(b.scheduler.sync(KEY))
    for _ in range(1000):  # the other tasks run until B's call waits at the gate
        if point not in cluster.gates:
            return PausedB(cluster, clock, a, b, gate, paused, start)
        if paused.done():  # a create sent first: its write is the next pass's (the deferred listing write)
            paused.result()
            paused = asyncio.create_task(b.scheduler.sync(KEY))
        await asyncio.sleep(0)
    raise AssertionError(f"no call reached {point}")


async def _run_overtaken_by_a(cluster: FakeCluster, clock: Clock, a: Replica, paused_for: float,
                              start: float) -> None:
    """While B is paused, A makes the run's Job (active in status, absent), it succeeds at once,
    and A counts it and deletes it (history limit 0), ``paused_for`` seconds after B's pass began."""
    a.watch.deliver(a.scheduler)
    await a.scheduler.sync(KEY)
    assert cluster.created == [FIRST]
    cluster.finish_job(NAMESPACE, FIRST)
    clock.now = at(seconds=start + paused_for)
    await a.settle()
    assert counters(cluster) == (1, 0, 0) and cluster.jobs.get((NAMESPACE, FIRST), {}).get("metadata", {}) \
        .get("deletionTimestamp", "gone")


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("paused_for", [pytest.param(2, id="woke-in-time-the-name-still-held"),
                                        pytest.param(90, id="woke-too-late-to-create")])
def test_a_replica_paused_after_its_write_landed_does_not_run_the_moment_again(paused_for: float,
                                                                               start: float) -> None:
    """The duplicate a CI run found: B's write-ahead is applied and B stops before it reads the
    answer (SIGSTOP); A sees the run active with no Job and creates it; the Job succeeds, is counted
    and deleted; B wakes and sends the create it had decided on."""
    async def scenario() -> None:
        p = await _b_paused_at("patch_trigger_status:answered", start)
        cluster, clock, a, b = p.cluster, p.clock, p.a, p.b
        await _run_overtaken_by_a(cluster, clock, a, paused_for, start)
        p.gate.set()
        await p.paused
        clock.now = at(minutes=5)
        await a.settle()
        await b.settle()
        assert cluster.created == [FIRST], "a moment ran twice"
        assert counters(cluster) == (1, 0, 0) and held_jobs(cluster) == [] and cluster.jobs == {}
    run(scenario)


@pytest.mark.parametrize("start", STARTS)
def test_a_create_on_its_way_while_the_run_is_made_counted_and_deleted_meets_the_held_name(start: float) -> None:
    async def scenario() -> None:
        p = await _b_paused_at("create_job:sent", start)  # B's check passed; its request is on the way
        cluster, clock, a, b = p.cluster, p.clock, p.a, p.b
        await _run_overtaken_by_a(cluster, clock, a, paused_for=40, start=start)
        assert held_jobs(cluster) == [FIRST]  # deleted, and held: 40 s old, the hold is 60 s
        p.gate.set()
        await p.paused  # AlreadyExists: B reads the Job, and its next pass finds the run counted
        clock.now = at(seconds=start + 60)
        await a.settle()
        await b.settle()
        assert cluster.created == [FIRST], "a moment ran twice"
        assert counters(cluster) == (1, 0, 0) and cluster.jobs == {}
        # One read: A's before its create (written first), or B's after its write met A's (created first);
        # the release needs none.
        assert cluster.called("get_trigger", TRIGGER_NAME) == 1
    run(scenario)


# --- the announced moment: one API call between a moment and its Job ---------------------------------

def test_at_the_moment_the_create_is_the_first_call_and_past_create_within_the_write_is() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        assert cluster.status(*KEY)["nextScheduledAt"] == format_time(at())  # announced by a guarded write
        clock.now = at(seconds=3)
        before = len(cluster.calls)
        await a.settle()
        assert [m for m, _ in cluster.calls[before:]] == ["create_job", "patch_trigger_status"]
        assert [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST]
        late, clock = new_cluster()  # the operator came 5 s past create_within: too late to go first
        b = boot(late, clock)
        await b.settle()
        clock.now = at(seconds=WITHIN + 5)
        before = len(late.calls)
        await b.settle()
        assert [m for m, _ in late.calls[before:]] == ["patch_trigger_status", "create_job"]
    run(scenario)


def test_with_create_first_off_every_run_is_written_before_its_job_is_created() -> None:
    """The kill switch (TRIGGER_OPERATOR_SCHEDULER_CREATE_FIRST=false): at the announced moment, on
    our own write's answer, the status write still goes first and the create after it, as before
    the one-call critical path; the run is listed, created once and counted once."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock, OperatorConfig(scheduler=SchedulerSettings(create_first=False)))
        await a.settle()
        assert cluster.status(*KEY)["nextScheduledAt"] == format_time(at())
        clock.now = at(seconds=3)
        before = len(cluster.calls)
        await a.settle()
        assert [m for m, _ in cluster.calls[before:]] == ["patch_trigger_status", "create_job"]
        assert [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST] and cluster.created == [FIRST]
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=2)
        await a.settle()
        assert counters(cluster) == (1, 0, 0) and cluster.created == [FIRST]
    run(scenario)


@pytest.mark.parametrize("edit", [pytest.param({"state": "paused"}, id="paused"),
                                  pytest.param({"scheduleConfig": {"cronExpression": "30 * * * *"}}, id="rescheduled")])
def test_an_edit_seen_before_the_moment_withdraws_it_and_one_not_yet_seen_may_not(edit: dict[str, Any]) -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=-30)
        cluster.edit_spec(*KEY, **edit)
        await a.settle()  # seen before 10:00: the announcement is withdrawn in a write
        assert cluster.status(*KEY).get("nextScheduledAt") != format_time(at())
        clock.now = at(seconds=1)
        await a.settle()
        assert cluster.created == []
        # The decision given up: an edit stored but not yet delivered when the moment comes.
        lagging, clock = new_cluster()
        b = boot(lagging, clock)
        await b.settle()
        clock.now = at(seconds=-1)
        lagging.edit_spec(*KEY, **edit)
        clock.now = at(seconds=1)
        await b.scheduler.sync(KEY)  # the edit's watch event has not come
        assert lagging.created == [FIRST]  # run, and listed and counted once below
        lagging.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=2)
        await b.settle()
        assert counters(lagging) == (1, 0, 0) and lagging.status(*KEY)["active"] == []
        assert lagging.created == [FIRST] and held_jobs(lagging) == []
    run(scenario)


@pytest.mark.parametrize("restart_at", [pytest.param(3, id="in-time"), pytest.param(40, id="late")])
def test_a_crash_between_the_announcing_write_and_the_moment_creates_it_once_after_restart(restart_at: int) -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()  # announced 10:00; the process dies before it
        clock.now = at(seconds=restart_at)
        restarted = boot(cluster, clock)
        before = len(cluster.calls)
        await restarted.settle()
        # The new process's copy is not its own write's answer: it asks whether the announced Job
        # was made first (another process's create, its watch event not here), then its write goes
        # first (rule 3).
        assert [m for m, _ in cluster.calls[before:before + 3]] == ["get_job", "patch_trigger_status", "create_job"]
        assert cluster.created == [FIRST] and [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST]
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=3)
        await restarted.settle()
        assert cluster.created == [FIRST] and counters(cluster) == (1, 0, 0) and held_jobs(cluster) == []
    run(scenario)


@pytest.mark.parametrize("job_seen", [pytest.param(True, id="job-watched"), pytest.param(False, id="job-read")])
@pytest.mark.parametrize("paused", [pytest.param(False, id="as-is"), pytest.param(True, id="paused-meanwhile")])
def test_a_crash_between_the_first_create_and_its_listing_write_counts_the_run_once(paused: bool,
                                                                                     job_seen: bool) -> None:
    """The create went first and the process died before the write listing the run: the Job is ours,
    named for the announced moment, listed nowhere. The next process lists and counts it, also if the
    Trigger was paused meanwhile and the Job's watch event has not come (it reads the Job)."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        cluster.calls_before_crash = 1  # the create goes through, the write does not
        with pytest.raises(Crash):
            await a.settle()
        assert cluster.created == [FIRST] and cluster.status(*KEY).get("active", []) == []
        cluster.finish_job(NAMESPACE, FIRST)
        if paused:
            cluster.edit_spec(*KEY, state="paused")
        clock.now = at(seconds=20)
        restarted = boot(cluster, clock)
        if not job_seen:
            restarted.watch.pending = [e for e in restarted.watch.pending if e[0] == "Trigger"]
        for moment in (at(seconds=20), at(minutes=2), at(minutes=3)):
            clock.now = moment
            await restarted.settle()
        assert cluster.created == [FIRST], "a moment ran twice"
        assert outcomes(cluster) == [(FIRST, "Succeeded")] and counters(cluster) == (1, 0, 0)
        assert cluster.status(*KEY)["active"] == [] and held_jobs(cluster) == []
        assert cluster.status(*KEY).get("nextScheduledAt") == (None if paused else format_time(at(hours=1)))
    run(scenario)


def _handled(cluster: FakeCluster) -> list[tuple[str, str]]:
    return [(r["from"], r["to"]) for r in cluster.status(*KEY).get("handledMoments") or []]


def test_a_trigger_deleted_at_its_moment_counts_the_run_once_and_announces_nothing_more() -> None:
    """Held by the notify finalizer and deleted just before 10:00, its watch event not yet in: the
    create goes first and the listing write conflicts with the deletion. The deleting pass adopts
    the run, moves the cursor to it and withdraws the announcement: counted once, no Job read again."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        body = cluster.triggers[KEY]
        body["metadata"]["finalizers"] = ["trigger-operator.io/notify"]  # as with spec.notifications
        cluster._emit("Trigger", "MODIFIED", cluster._stamp(body))
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        cluster.delete_trigger(*KEY)
        await a.scheduler.sync(KEY)  # the deletion's event has not come
        assert cluster.created == [FIRST] and cluster.status(*KEY).get("active", []) == []
        await a.scheduler.sync(KEY)  # the deferred listing write, the event still not in: it conflicts
        assert cluster.status(*KEY).get("active", []) == []
        await a.settle()
        cluster.finish_job(NAMESPACE, FIRST)
        for s in (5, 10, 20, 30, 120):
            clock.now = at(seconds=s)
            await a.settle()
        assert counters(cluster) == (1, 0, 0) and outcomes(cluster) == [(FIRST, "Succeeded")]
        status = cluster.status(*KEY)
        assert status["lastScheduleTime"] == format_time(at()) and status.get("nextScheduledAt") is None
        assert _handled(cluster) == [(format_time(at()), format_time(at()))]
        assert cluster.called("get_job") == 0 and cluster.called("patch_trigger_status") == 4
    run(scenario)


def test_a_pause_racing_the_first_create_adopts_the_run_with_its_moment_handled() -> None:
    """Paused as 10:00 comes, the pause's event not yet in: the create goes first, the listing write
    conflicts. The paused pass lists the run, moves the cursor to 10:00 and records it handled, so a
    backfill over it once its Job is pruned passes it over."""
    async def scenario() -> None:
        cluster, clock = new_cluster(successfulJobsHistoryLimit=0)
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        cluster.edit_spec(*KEY, state="paused")
        await a.scheduler.sync(KEY)
        assert cluster.created == [FIRST] and cluster.status(*KEY).get("active", []) == []
        await a.settle()
        status = cluster.status(*KEY)
        assert [r["name"] for r in status["active"]] == [FIRST] and status["lastScheduleTime"] == format_time(at())
        assert _handled(cluster) == [(format_time(at()), format_time(at()))]
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=5)
        await a.settle()
        assert counters(cluster) == (1, 0, 0) and cluster.jobs == {}  # counted, pruned
        cluster.annotate(*KEY, **{ANNOTATION_BACKFILL: request_annotation("b1", at(minutes=-30), at(minutes=30))})
        cluster.edit_spec(*KEY, state="active")
        clock.now = at(minutes=6)
        await a.settle()
        assert cluster.created == [FIRST], "a backfill ran the adopted moment again"
        assert counters(cluster) == (1, 0, 0)
    run(scenario)


def test_an_invalid_spec_edit_racing_the_first_create_still_lists_and_counts_the_run() -> None:
    """An edit that makes the spec invalid stored as 10:00 comes, its event not yet in: the create
    goes first and the listing write conflicts. The invalid pass still lists the run (cursor at
    10:00), so its Job is counted once and released, not left unlisted with our finalizer."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        cluster.edit_spec(*KEY, concurrencyPolicy="Sometimes")
        await a.scheduler.sync(KEY)
        assert cluster.created == [FIRST] and cluster.status(*KEY).get("active", []) == []
        await a.settle()
        assert [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST]
        assert cluster.status(*KEY)["lastScheduleTime"] == format_time(at())
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=2)
        await a.settle()
        assert counters(cluster) == (1, 0, 0) and cluster.created == [FIRST] and held_jobs(cluster) == []
    run(scenario)


def test_a_pause_delivered_before_our_write_answer_keeps_the_newer_copy_and_holds_at_the_moment() -> None:
    """Our write announcing 10:00 lands (its answer is on its way); the user pauses; the watch
    delivers the pause before the answer is taken in. The store keeps the newer, paused copy (the
    watch never sends it again), so the older answer vouches for nothing and 10:00 does not run."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        clock.now = at(minutes=-15)
        a.watch.deliver(a.scheduler)
        gate = cluster.pause_at("patch_trigger_status:answered")
        task = asyncio.create_task(a.scheduler.sync(KEY))  # the pass whose write announces 10:00
        for _ in range(1000):
            if "patch_trigger_status:answered" not in cluster.gates:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError("the write was never sent")
        cluster.edit_spec(*KEY, state="paused")  # right after our write landed
        a.watch.deliver(a.scheduler)  # its event is in before our write's answer
        paused = cluster.triggers[KEY]["metadata"]["resourceVersion"]
        gate.set()
        await task
        stored = a.scheduler.store.trigger(KEY)
        assert stored is not None and stored["metadata"]["resourceVersion"] == paused
        await a.settle()
        for moment in (at(minutes=-5), at(seconds=1), at(minutes=5)):
            clock.now = moment
            await a.settle()
        assert cluster.created == [], "a Trigger whose pause the operator had received ran its moment"
        assert cluster.status(*KEY).get("phase") == "Paused"
    run(scenario)


def test_a_type_edit_racing_the_first_create_still_lists_and_counts_the_run() -> None:
    """triggerType edited from cron to event as 10:00 comes, the edit's event not yet in: the create
    goes first and the listing write conflicts. Whether a run was announced is read from the stored
    status (written by the cron Trigger's pass), not from the live spec: the event Trigger's pass
    lists the run, so it is counted once and its Job released."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        cluster.edit_spec(*KEY, triggerType="event", scheduleConfig={"eventType": "deploy", "eventThreshold": 1})
        await a.scheduler.sync(KEY)
        assert cluster.created == [FIRST] and cluster.status(*KEY).get("active", []) == []
        await a.settle()
        assert [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST]
        cluster.finish_job(NAMESPACE, FIRST)
        for seconds in (5, 70, 200, 700):
            clock.now = at(seconds=seconds)
            await a.settle()
        assert cluster.created == [FIRST]
        assert counters(cluster) == (1, 0, 0), "the run created first was never counted"
        assert held_jobs(cluster) == [], "our finalizer stays on the unlisted Job"
    run(scenario)


def test_a_trigger_recreated_under_its_name_before_the_moment_runs_it_for_the_new_trigger_only() -> None:
    """The Trigger is deleted and created again under its name 10 s before 10:00, the watch lagging:
    the store still holds the old Trigger's copy (our own write's answer), so 10:00 is created first
    for the old uid; the write conflicts and the refreshed copy is another Trigger. That Job is
    deleted and released at once, and the new Trigger's 10:00 runs (waiting for the name, not
    failing on it): no Job is left for the deleted Trigger."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()  # announces 10:00 (our own write)
        old_uid = cluster.triggers[KEY]["metadata"]["uid"]
        clock.now = at(seconds=-10)
        cluster.delete_trigger(*KEY)
        cluster.apply_trigger(NAMESPACE, TRIGGER_NAME, cron_spec())  # a new uid, wanting 10:00 too
        new_uid = cluster.triggers[KEY]["metadata"]["uid"]
        clock.now = at(seconds=1)
        await a.scheduler.sync(KEY)  # the watch 11 s behind: the old Trigger's copy
        assert cluster.created == [FIRST]
        await a.scheduler.sync(KEY)  # the deferred listing write, on the same copy: it conflicts
        assert (NAMESPACE, FIRST) not in cluster.jobs, "the old uid's Job stays"
        clock.now = at(seconds=2)
        await a.settle()
        assert cluster.created == [FIRST, FIRST]
        assert [r["uid"] for r in cluster.jobs[NAMESPACE, FIRST]["metadata"]["ownerReferences"]] == [new_uid]
        cluster.finish_job(NAMESPACE, FIRST)
        for seconds in (5, 30, 120, 600):
            clock.now = at(seconds=seconds)
            await a.settle()
        assert outcomes(cluster) == [(FIRST, "Succeeded")] and counters(cluster) == (1, 0, 0)
        assert held_jobs(cluster) == [] and old_uid != new_uid
    run(scenario)


def test_a_run_waits_for_its_name_while_a_deleted_namesakes_job_is_going_away() -> None:
    """A Job of another Trigger (a deleted namesake's) holds the name of 10:00 and is being deleted
    (Foreground: its pods go first): the run is listed and waits for the name instead of failing,
    and is created once that Job is gone (one not being deleted still fails the run at once:
    `test_a_stranger_holding_the_name_fails_the_run_at_once_and_is_left_alone`)."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        cluster.put_job({"apiVersion": "batch/v1", "kind": "Job",
                         "metadata": {"namespace": NAMESPACE, "name": FIRST, "finalizers": ["foregroundDeletion"],
                                      "deletionTimestamp": format_time(at(seconds=-1)),
                                      "labels": {"trigger-operator.io/trigger": TRIGGER_NAME},
                                      "ownerReferences": [{"uid": "uid-of-the-deleted-namesake", "controller": True}]},
                         "spec": {}, "status": {}})
        clock.now = at(seconds=1)
        await a.settle()
        status = cluster.status(*KEY)
        assert [r["name"] for r in status["active"]] == [FIRST] and counters(cluster) == (0, 0, 0)
        assert cluster.created == []
        cluster.jobs[NAMESPACE, FIRST]["metadata"]["finalizers"] = []  # its pods are gone: the GC deletes it
        cluster.remove_job(NAMESPACE, FIRST)
        clock.now = at(seconds=3)
        await a.settle()
        assert cluster.created == [FIRST]
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=2)
        await a.settle()
        assert outcomes(cluster) == [(FIRST, "Succeeded")]
    run(scenario)


def test_a_jitter_edit_racing_the_moment_runs_its_nominal_moment_once() -> None:
    """jitterSeconds edited as 11:00 comes, the edit's event not yet in: 11:00 is created first at the
    old offset and its listing write conflicts. The adopted run moves the cursor before the jitter
    shift applies, so the same nominal moment does not run again at its new offset (11:09:33)."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        await a.settle()
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=5)
        await a.settle()
        offset = jitter_offset(NAMESPACE, TRIGGER_NAME, 600)
        assert counters(cluster) == (1, 0, 0) and offset > dt.timedelta(seconds=3)
        clock.now = at(hours=1, seconds=1)
        cluster.edit_spec(*KEY, scheduleConfig=dict(cluster.triggers[KEY]["spec"]["scheduleConfig"], jitterSeconds=600))
        await a.scheduler.sync(KEY)
        assert cluster.created == [FIRST, SECOND]
        clock.now = at(hours=1, seconds=2)
        await a.settle()
        cluster.finish_job(NAMESPACE, SECOND)
        for moment in (at(hours=1, seconds=3), at(hours=1) + offset + dt.timedelta(seconds=1), at(hours=1, minutes=15)):
            clock.now = moment
            await a.settle()
        assert cluster.created == [FIRST, SECOND], "the 11:00 nominal moment ran twice"
        assert counters(cluster) == (2, 0, 0)
    run(scenario)


def test_a_missing_template_then_a_conflict_at_the_moment_still_counts_the_moments_missed_meanwhile() -> None:
    """The template was missing from 09:40 until 12:00, so the cursor stayed back while nextScheduledAt
    moved on to 12:00. Under catchUpPolicy Latest 12:00 runs (created first) and its listing write
    conflicts with an edit; the adopted run does not carry the cursor past 10:00 and 11:00: they are
    counted missed, and 12:00 runs once."""
    async def scenario() -> None:
        cluster, clock = new_cluster(catchUpPolicy="Latest")
        del cluster.triggers[KEY]["spec"]["jobTemplate"]  # the catalog's "cluster" template, missing at first
        a = boot(cluster, clock)
        templates, a.scheduler.catalog = a.scheduler.catalog, {}
        await a.settle()
        third = scheduled_job_name(TRIGGER_NAME, at(hours=2))
        for moment in (at(seconds=1), at(hours=1, seconds=1), at(hours=1, minutes=59)):
            clock.now = moment
            await a.settle()
        assert cluster.created == [] and cluster.status(*KEY)["nextScheduledAt"] == format_time(at(hours=2))
        a.scheduler.catalog = templates
        clock.now = at(hours=2, seconds=1)
        cluster.annotate(*KEY, note="an edit the watch has not delivered")
        await a.scheduler.sync(KEY)
        await a.settle()
        assert cluster.created == [third] and cluster.status(*KEY)["missedRuns"] == 2
        assert cluster.status(*KEY)["lastScheduleTime"] == format_time(at(hours=2))
    run(scenario)


def test_a_lease_lapse_at_the_first_create_check_drops_the_pass_before_its_write() -> None:
    """owns() holds when the pass starts and lapses at the check before the announced run's create
    (a renewal a round late): nothing of the pass goes out, so no run is listed without its create.
    The key comes back at the renewal (`take_back`) and the run is made then, once."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        answers: list[bool] = []
        a = boot(cluster, clock, owns=lambda ns, name: answers.pop(0) if answers else True)
        await a.settle()
        writes = cluster.called("patch_trigger_status")
        clock.now = at(seconds=1)
        a.watch.deliver(a.scheduler)
        answers[:] = [True, False]  # the pass's first check, then the one before the create
        await a.scheduler.sync(KEY)
        assert cluster.created == [] and cluster.called("patch_trigger_status") == writes
        assert cluster.status(*KEY).get("active", []) == []
        a.scheduler.take_back()  # renewed: the dropped key is queued again
        assert a.scheduler.queue.next_due() is not None
        clock.now = at(seconds=3)
        await a.settle()
        assert cluster.created == [FIRST] and [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST]
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=2)
        await a.settle()
        assert cluster.created == [FIRST] and counters(cluster) == (1, 0, 0)
    run(scenario)


def test_a_pause_honoured_before_the_moment_holds_for_a_new_owner_whose_watch_lags() -> None:
    """A saw the pause at 09:59:55 and withdrew the announcement in a write; the Trigger then passes
    to B, whose Trigger watch is behind: B's copy still announces 10:00. It is not B's own write's
    answer, so B's write goes first, conflicts, and the fresh copy runs nothing."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a, b = boot(cluster, clock), boot(cluster, clock)
        await a.settle()
        b.watch.deliver(b.scheduler)
        clock.now = at(seconds=-5)
        cluster.edit_spec(*KEY, state="paused")
        await a.settle()
        assert cluster.status(*KEY).get("nextScheduledAt") is None
        clock.now = at(seconds=1)
        await b.scheduler.sync(KEY)  # B's watch is 6 s behind
        await b.settle()
        clock.now = at(minutes=5)
        await b.settle()
        assert cluster.created == [], "a Trigger the operator had seen paused ran its moment"
        assert counters(cluster) == (0, 0, 0) and cluster.status(*KEY).get("active", []) == []
    run(scenario)


def test_only_a_copy_of_our_own_write_in_the_same_term_sends_the_create_first() -> None:
    """The announced run's create goes first only on the answer of this process's own status write,
    owned continuously since: after a new term (`lead`: a take-over, a lease taken anew) or on a copy
    the watch delivered, the write goes first."""
    async def scenario() -> None:
        for case in ("same-term", "new-term", "watch-copy"):
            cluster, clock = new_cluster()
            a = boot(cluster, clock)
            await a.settle()
            if case == "new-term":
                a.scheduler.lead()
            if case == "watch-copy":
                cluster.annotate(*KEY, note="an edit the watch delivers")
            clock.now = at(seconds=1)
            before = len(cluster.calls)
            await a.settle()
            # Any other copy: the announced Job is read first (made first by another process?),
            # then the write goes first.
            first = ["create_job"] if case == "same-term" else ["get_job", "patch_trigger_status"]
            assert [m for m, _ in cluster.calls[before:before + len(first)]] == first, case
            assert cluster.created == [FIRST] and [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST]
    run(scenario)


# --- the deferred listing write: a burst's creates before its writes ------------------------------------

async def drain(replica: Replica) -> None:
    """The worker loop, as `Scheduler.run` drives it, until no key is due: watch events in, then the
    next due key's pass, in the queue's order."""
    for _ in range(1000):
        replica.watch.deliver(replica.scheduler)
        due = replica.scheduler.queue.next_due()
        if due is None or due > replica.scheduler.clock():
            return
        await asyncio.wait_for(replica.scheduler.worker.step(), 1)
        await asyncio.sleep(0)
    raise AssertionError("the queue never ran dry")


def test_a_burst_of_triggers_due_at_one_moment_sends_every_create_before_any_status_write() -> None:
    """Five Triggers due at 10:00, each announced by our own write: the queue runs every pass's
    create first; each write listing a run comes in the pass after, queued behind the creates.
    Then each status lists its run and announces 11:00, and each moment has exactly one Job."""
    async def scenario() -> None:
        clock = Clock(at(minutes=-20))
        cluster = FakeCluster(clock)
        names = [f"burst-{i}" for i in range(5)]
        for name in names:
            cluster.apply_trigger(NAMESPACE, name, cron_spec())
        a = boot(cluster, clock)
        await drain(a)  # each write announces 10:00
        clock.now = at(seconds=1)
        before = len(cluster.calls)
        await drain(a)
        burst = cluster.calls[before:]
        jobs = {name: scheduled_job_name(name, at()) for name in names}
        assert sorted(burst[:5]) == [("create_job", jobs[name]) for name in names]
        assert sorted(burst[5:]) == [("patch_trigger_status", name) for name in names]
        for name in names:
            status = cluster.status(NAMESPACE, name)
            assert [r["name"] for r in status["active"]] == [jobs[name]]
            assert status["lastScheduleTime"] == format_time(at())
            assert status["nextScheduledAt"] == format_time(at(hours=1))
        for name in names:
            cluster.finish_job(NAMESPACE, jobs[name])
        for moment in (at(minutes=2), at(hours=1, seconds=1), at(hours=1, minutes=2)):
            clock.now = moment
            await drain(a)
        assert sorted(cluster.created) == sorted([*jobs.values(), *(scheduled_job_name(n, at(hours=1)) for n in names)])
        for name in names:  # 10:00 counted once; 11:00 running, listed
            status = cluster.status(NAMESPACE, name)
            assert status["executionCount"] == 1
            assert [r["name"] for r in status["active"]] == [scheduled_job_name(name, at(hours=1))]
    run(scenario)


def test_a_job_that_finishes_before_the_deferred_write_is_listed_and_counted_in_one_write() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        before = len(cluster.calls)
        await a.step()  # the create alone: its write waits for the next pass
        assert cluster.calls[before:] == [("create_job", FIRST)]
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(seconds=2)
        await a.step()
        assert [m for m, _ in cluster.calls[before + 1:]] == ["patch_trigger_status"]
        status = cluster.status(*KEY)
        assert status["active"] == [] and outcomes(cluster) == [(FIRST, "Succeeded")]
        assert counters(cluster) == (1, 0, 0) and status["nextScheduledAt"] == format_time(at(hours=1))
        clock.now = at(minutes=2)
        await a.settle()
        assert counters(cluster) == (1, 0, 0) and cluster.created == [FIRST] and held_jobs(cluster) == []
    run(scenario)


@pytest.mark.parametrize("between", ["crash", "lease-lapse"])
def test_a_crash_or_a_lease_lapse_before_the_deferred_write_adopts_the_run_once(between: str) -> None:
    """The create went out and the pass ended, its write left to the next: the process dies there (a
    new process takes over with empty memory), or its lease lapses and another replica takes over.
    The run is adopted once, from the Job: never created again, counted once."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        owned = [True]
        a = boot(cluster, clock, owns=lambda ns, name: owned[0])
        await a.settle()
        clock.now = at(seconds=1)
        await a.step()
        assert cluster.created == [FIRST] and cluster.status(*KEY).get("active", []) == []
        writes = cluster.called("patch_trigger_status")
        if between == "lease-lapse":
            owned[0] = False
            await a.step()  # the deferred pass finds the Trigger not ours: it writes nothing
            assert cluster.called("patch_trigger_status") == writes
        b = boot(cluster, clock)
        clock.now = at(seconds=3)
        await b.settle()
        assert cluster.created == [FIRST], "a moment ran twice"
        assert [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST]
        cluster.finish_job(NAMESPACE, FIRST)
        for moment in (at(minutes=2), at(minutes=3)):
            clock.now = moment
            await b.settle()
            await a.settle()
        assert cluster.created == [FIRST] and counters(cluster) == (1, 0, 0)
        assert outcomes(cluster) == [(FIRST, "Succeeded")] and held_jobs(cluster) == []
    run(scenario)


def test_a_refused_first_create_is_recorded_failed_in_its_own_pass() -> None:
    """A create the API server refuses is not taken: the pass writes at once (listing the run, then
    recording it failed), as before the deferred listing write."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        cluster.refuse_creates = Rejected("Job.batch is invalid: spec.template.spec.containers[0].image: Required")
        clock.now = at(seconds=1)
        before = len(cluster.calls)
        await a.step()
        assert [m for m, _ in cluster.calls[before:]] == ["create_job", "patch_trigger_status", "patch_trigger_status"]
        assert counters(cluster) == (0, 1, 1) and cluster.created == []
        assert cluster.status(*KEY)["nextScheduledAt"] == format_time(at(hours=1))
    run(scenario)


def test_two_replicas_one_paused_across_the_moment_with_its_create_decided_sends_none_too_late() -> None:
    """B's pass begins 5 s after the moment and stops (SIGSTOP) before its create's check; A makes,
    counts and deletes the Job. An announced run's create goes out within create_within of its
    moment, not of the pass: B wakes 1 s past that and sends nothing."""
    async def scenario() -> None:
        cluster, clock = new_cluster(successfulJobsHistoryLimit=0)
        a, b = boot(cluster, clock), boot(cluster, clock)
        await b.step()  # B's write announces 10:00: its own answer, so it may create first
        await a.step()
        clock.now = at(seconds=5)
        b.watch.deliver(b.scheduler)
        gate = cluster.pause_at("create_job:deciding")
        paused = asyncio.create_task(b.scheduler.sync(KEY))
        for _ in range(1000):
            if "create_job:deciding" not in cluster.gates:
                break
            await asyncio.sleep(0)
        a.watch.deliver(a.scheduler)
        await a.scheduler.sync(KEY)
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(seconds=WITHIN + 1)
        await a.settle()
        gate.set()
        await paused
        assert cluster.called("create_job") == 1  # A's; B's was too late to send
        clock.now = at(minutes=2)
        await a.settle()
        await b.settle()
        assert cluster.created == [FIRST] and counters(cluster) == (1, 0, 0) and held_jobs(cluster) == []
    run(scenario)


def test_a_young_job_is_released_when_the_name_hold_ends_and_a_setting_too_short_is_refused() -> None:
    async def scenario() -> None:
        config = OperatorConfig(scheduler=SchedulerSettings(name_hold_seconds=30, create_within_seconds=5))
        cluster, clock, a = await first_run_started(config, successfulJobsHistoryLimit=0)
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(seconds=5)
        await a.settle()
        clock.now = at(seconds=30.9)
        await a.settle()
        assert held_jobs(cluster) == [FIRST]  # counted and deleted (history limit 0); 29.9 s old
        clock.now = at(seconds=31)
        await a.settle()
        assert cluster.jobs == {} and cluster.called("get_trigger") == 0
    run(scenario)
    with pytest.raises(ValueError, match=r"CREATE_WITHIN_SECONDS=60 must be less than \S+NAME_HOLD_SECONDS=60"):
        SchedulerSettings(create_within_seconds=60)


def test_a_crash_after_the_create_then_a_ttl_delete_cannot_run_the_moment_twice() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        cluster.calls_before_crash = 2  # the write-ahead and the create go through ...
        await a.settle()
        cluster.finish_job(NAMESPACE, FIRST)
        cluster.remove_job(NAMESPACE, FIRST)  # ttlSecondsAfterFinished: 0
        with pytest.raises(Crash):
            await a.settle()  # ... and the process dies before it writes the result
        clock.now = at(seconds=40)
        restarted = boot(cluster, clock)
        await restarted.settle()
        assert cluster.created == [FIRST]
        assert outcomes(cluster) == [(FIRST, "Succeeded")] and counters(cluster) == (1, 0, 0)
        assert held_jobs(cluster) == [FIRST]  # counted; its name held until it is a minute old
        clock.now = at(seconds=61)
        await restarted.settle()
        assert cluster.jobs == {}  # released: the TTL's delete completed
    run(scenario)


# --- crashes between any two calls ------------------------------------------------------------------

async def _one_run_with_a_crash_before_call(k: int, *, ttl: bool) -> tuple[FakeCluster, bool]:
    """The 10:00 moment end to end (fire, run, succeed, count, prune by TTL or history), the
    operator dying before its k-th API call and starting afresh from a full list."""
    cluster, clock = new_cluster(successfulJobsHistoryLimit=0)
    cluster.calls_before_crash = k
    crashed = False
    replica = boot(cluster, clock)

    async def settle() -> None:
        nonlocal replica, crashed
        for _ in range(6):
            try:
                await replica.settle()
                return
            except Crash:
                crashed = True
                replica = boot(cluster, clock)
        raise AssertionError("did not settle")

    for moment, action in [(at(minutes=-20), None), (at(seconds=1), None), (at(seconds=20), "finish"),
                           (at(seconds=21), "ttl" if ttl else None), (at(minutes=6), None), (at(minutes=30), None)]:
        clock.now = moment
        if action == "finish":
            cluster.finish_job(NAMESPACE, FIRST)
        if action == "ttl" and (NAMESPACE, FIRST) in cluster.jobs:
            cluster.remove_job(NAMESPACE, FIRST)
        await settle()
    return cluster, crashed


@pytest.mark.parametrize("ttl", [pytest.param(False, id="pruned-by-history"), pytest.param(True, id="ttl-delete")])
def test_a_crash_between_any_two_calls_never_runs_a_moment_twice_or_miscounts(ttl: bool) -> None:
    async def scenario() -> None:
        for k in range(60):
            cluster, crashed = await _one_run_with_a_crash_before_call(k, ttl=ttl)
            assert cluster.created == [FIRST], f"crash before call {k}"
            assert outcomes(cluster) == [(FIRST, "Succeeded")], f"crash before call {k}"
            assert counters(cluster) == (1, 0, 0), f"crash before call {k}"
            assert cluster.status(*KEY)["active"] == [] and held_jobs(cluster) == [], f"crash before call {k}"
            if not crashed:  # the position past the run's last call: every one before it was tried
                break
        else:
            pytest.fail("a crash at each of 60 positions: the run makes more calls than were tried")
        assert k >= 5, f"the run made only {k} calls; the scenario no longer exercises a whole run"
    run(scenario)


# --- scenarios 2 and 3: watch gaps -------------------------------------------------------------------

def test_a_job_that_finished_and_was_ttl_deleted_in_a_watch_gap_counts_as_a_success() -> None:
    async def scenario() -> None:
        cluster, clock, a = await first_run_started()
        cluster.finish_job(NAMESPACE, FIRST)
        cluster.remove_job(NAMESPACE, FIRST)  # ttlSecondsAfterFinished: 0
        a.watch.drop()  # the gap: neither the completion nor the deletion is heard of
        clock.now = at(seconds=STALE_JOB_SECONDS + 5)
        await a.settle()  # the silent running Job is read again: Complete, held by our finalizer
        assert outcomes(cluster) == [(FIRST, "Succeeded")] and counters(cluster) == (1, 0, 0)
        assert cluster.jobs == {}
    run(scenario)


def test_a_job_without_our_finalizer_gone_in_a_gap_is_lost_not_failed() -> None:
    async def scenario() -> None:
        cluster, clock, a = await first_run_started()
        cluster.jobs[NAMESPACE, FIRST]["metadata"]["finalizers"] = []  # stripped by hand
        cluster.finish_job(NAMESPACE, FIRST)
        cluster.remove_job(NAMESPACE, FIRST)
        a.watch.drop()
        clock.now = at(seconds=STALE_JOB_SECONDS + 5)
        await a.settle()
        assert outcomes(cluster) == [(FIRST, "Lost")] and counters(cluster) == (0, 0, 0)
        assert cluster.created == [FIRST]
    run(scenario)


def test_the_echo_of_our_release_does_not_bring_a_deleted_job_back_for_a_second_delete() -> None:
    async def scenario() -> None:
        cluster, clock, a = await first_run_started(successfulJobsHistoryLimit=0)
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=2)
        cluster.put_job({**cluster.jobs[NAMESPACE, FIRST], "metadata": {  # a GC finalizer, as Foreground adds
            **cluster.jobs[NAMESPACE, FIRST]["metadata"],
            "finalizers": [FINALIZER, "foregroundDeletion"]}})
        a.watch.deliver(a.scheduler)
        await a.scheduler.sync(KEY)  # counted, released, deleted (held by the GC until its pods are gone)
        assert cluster.called("delete_job", FIRST) == 1
        release_echo = next(e for e in a.watch.pending if e[0] == "Job")
        a.watch.pending = [release_echo]  # the release's echo comes before the deletion's
        await a.step()
        assert cluster.called("delete_job", FIRST) == 1
    run(scenario)


def test_a_ghost_job_deleted_in_a_gap_draws_one_delete_and_is_forgotten() -> None:
    async def scenario() -> None:
        cluster, clock, a = await first_run_started(successfulJobsHistoryLimit=1)
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=2)  # older than the name hold
        await a.settle()  # counted and released; kept as history (limit 1)
        cluster.remove_job(NAMESPACE, FIRST)  # deleted by hand ...
        a.watch.drop()  # ... in a watch gap
        clock.now = at(hours=1, seconds=1)
        await a.settle()
        cluster.finish_job(NAMESPACE, SECOND)
        clock.now = at(hours=1, seconds=30)
        await a.settle()
        clock.now = at(hours=1, minutes=10)
        await a.settle()
        assert cluster.called("delete_job", FIRST) == 1  # the 404 marked it gone
        assert FIRST not in a.scheduler.store.jobs[KEY]
        assert counters(cluster) == (2, 0, 0)
    run(scenario)


def test_a_ghost_in_a_history_slot_is_found_by_the_periodic_list() -> None:
    async def scenario() -> None:
        cluster, clock, a = await first_run_started(successfulJobsHistoryLimit=3)
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(minutes=2)  # counted and released: older than the name hold
        await a.settle()
        cluster.remove_job(NAMESPACE, FIRST)
        a.watch.drop()
        assert FIRST in a.scheduler.store.jobs_of(KEY)  # a ghost, within the history limit
        await a.scheduler.store.resync_jobs()
        await a.settle()
        assert FIRST not in a.scheduler.store.jobs_of(KEY)
        assert cluster.called("delete_job") == 0
    run(scenario)


def test_the_periodic_list_keeps_a_job_created_after_it_was_taken() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        items, version = await cluster.list_jobs(NAMESPACE)  # the list is taken before the create ...
        clock.now = at(seconds=1)
        await a.settle()
        a.scheduler.store.resync_namespace(NAMESPACE, items, version)  # ... and answered after it
        assert a.scheduler.store.jobs[KEY][FIRST].exists
    run(scenario)


# --- scenario 6: a stranger holding the name ----------------------------------------------------------

@pytest.mark.parametrize("owner", [pytest.param("uid-of-the-deleted-namesake", id="previous-trigger"),
                                   pytest.param(None, id="orphan-with-our-label")])
def test_a_stranger_holding_the_name_fails_the_run_at_once_and_is_left_alone(owner: str | None) -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock, ROUTINE_EVENTS)  # so that a JobCreated would be posted if it were made
        await a.settle()
        stranger = {"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"namespace": NAMESPACE, "name": FIRST,
                                 "labels": {"trigger-operator.io/trigger": TRIGGER_NAME},
                                 "ownerReferences": [{"uid": owner, "controller": True}] if owner else []},
                    "spec": {}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
        cluster.put_job(stranger)
        a.watch.drop()  # not seen yet: the create's 409 is how the operator learns of it
        clock.now = at(seconds=1)
        await a.settle()
        [execution] = cluster.status(*KEY)["recentExecutions"]
        assert execution["outcome"] == "Failed" and "does not belong to this Trigger" in execution["error"]
        assert counters(cluster) == (0, 1, 1)
        assert cluster.created == [] and cluster.called("delete_job") == 0 and cluster.called("release_job") == 0
        assert [n.reason for n in cluster.events].count("JobCreated") == 0
    run(scenario)


# --- scenario 7: unreadable status ------------------------------------------------------------------------

def test_an_unreadable_status_stops_the_trigger_and_keeps_what_it_holds() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        broken = {"executionCount": 7, "lastScheduleTime": "yesterday", "phase": "Active"}
        cluster.edit_trigger(*KEY, status=broken)
        a = boot(cluster, clock)
        clock.now = at(seconds=1)
        await a.settle()
        status = cluster.status(*KEY)
        assert status["executionCount"] == 7 and status["lastScheduleTime"] == "yesterday"
        [ready] = status["conditions"]
        assert (ready["status"], ready["reason"]) == ("False", "StatusUnreadable")
        assert ready["message"].startswith("status.lastScheduleTime: ") and "--subresource=status" in ready["message"]
        assert cluster.created == []
        writes = cluster.called("patch_trigger_status")
        await a.settle()
        assert cluster.called("patch_trigger_status") == writes  # said once, not on every pass
    run(scenario)


# --- scenario 8: refusals and Events -------------------------------------------------------------------

def test_a_refused_job_posts_create_failed_and_never_job_created() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        cluster.refuse_creates = Rejected("Job.batch is invalid: spec.template.spec.containers[0].image: Required")
        a = boot(cluster, clock, ROUTINE_EVENTS)
        clock.now = at(seconds=1)
        await a.settle()
        reasons = [n.reason for n in cluster.events]
        assert "JobCreateFailed" in reasons and "JobCreated" not in reasons
        assert counters(cluster) == (0, 1, 1)
    run(scenario)


async def refused_and_unrecordable() -> tuple[FakeCluster, Clock, Replica]:
    """The API server refuses the first run's Job, then the status write recording that refusal (it
    quotes the API server's long message, past the patch size the cluster takes): one worker pass."""
    cluster, clock = new_cluster()
    cluster.refuse_creates = Rejected("Job.batch is invalid: " + "x" * 5000, 422)
    cluster.max_patch_bytes = 1500  # the run's active entry fits; its failure record does not (HTTP 413)
    a = boot(cluster, clock)
    await a.settle()
    clock.now = at(seconds=1)
    a.watch.deliver(a.scheduler)
    a.scheduler.queue.forget(KEY)
    a.scheduler.queue.add(KEY)
    await asyncio.wait_for(a.scheduler.worker.step(), 1)
    return cluster, clock, a


def test_a_refused_create_whose_failure_cannot_be_recorded_is_a_terminal_error_not_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    """The API server refuses the Job, then the status write recording that refusal (it quotes the
    API server's long message): every retry would create, be refused and be refused again. The
    worker logs it once and leaves the key off the queue until something changes (here the catalog),
    or until the create grace has passed (the next test)."""
    async def scenario() -> None:
        cluster, _, a = await refused_and_unrecordable()
        queue = a.scheduler.queue
        assert cluster.called("create_job") == 1 and counters(cluster) == (0, 0, 0)
        # Not retried (an ordinary error would be back in 5 s), only when the core decides otherwise.
        assert queue.next_due() == at(seconds=1) + CREATE_GRACE + TERMINAL_MARGIN
        lines = [r for r in caplog.records if "not retried" in r.getMessage()]
        assert len(lines) == 1 and "HTTP 413" in lines[0].getMessage() and lines[0].exc_info is None
        assert "xxxx" not in lines[0].getMessage()
        cluster.max_patch_bytes = None
        a.scheduler.on_catalog(CATALOG_DATA)  # a change brings it back
        await asyncio.wait_for(a.scheduler.worker.step(), 1)
        assert cluster.called("create_job") == 2 and counters(cluster) == (0, 1, 1)
    run(scenario)


def test_a_terminal_refusal_ends_when_the_create_grace_has_passed_with_the_run_lost() -> None:
    """With nothing changed, the terminal pass comes back once CREATE_GRACE has passed: the core then
    records the run Lost with a short message, which lands, and the schedule goes on (the review of
    issue 20 found the Trigger stuck for good with a phantom active run)."""
    async def scenario() -> None:
        cluster, clock, a = await refused_and_unrecordable()
        queue = a.scheduler.queue
        due = queue.next_due()
        assert due == at(seconds=1) + CREATE_GRACE + TERMINAL_MARGIN and cluster.status(*KEY)["active"]
        clock.now = due
        await asyncio.wait_for(a.scheduler.worker.step(), 1)
        assert cluster.status(*KEY).get("active", []) == [] and outcomes(cluster) == [(FIRST, "Lost")]
        assert queue.next_due() is not None  # the schedule goes on
    run(scenario)


def test_a_forbidden_failure_record_is_retried_not_terminal() -> None:
    """A 403 on that write is RBAC an admin may fix without changing any object: retried."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        cluster.refuse_creates = Rejected("Job.batch is invalid", 422)
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        a.watch.deliver(a.scheduler)
        real_patch = cluster.patch_trigger_status

        async def forbidden(namespace: str, name: str, resource_version: str, patch: Mapping[str, Any]) -> Any:
            if patch.get("failedExecutionCount"):  # the record of the refused create
                raise Rejected("triggers/status is forbidden", 403)
            return await real_patch(namespace, name, resource_version, patch)
        cluster.patch_trigger_status = forbidden  # type: ignore[method-assign]
        queue = a.scheduler.queue
        queue.forget(KEY)
        queue.add(KEY)
        await asyncio.wait_for(a.scheduler.worker.step(), 1)
        due = queue.next_due()
        assert due is not None and due <= clock.now + dt.timedelta(seconds=5)  # retried, as any error
    run(scenario)


def test_a_create_failing_through_a_three_minute_outage_is_made_after_it() -> None:
    """Ordinary API errors on create for 3 minutes: the worker's backoff stays under the create
    grace, so the run is created once the API server answers (with a 300 s bound it was Lost)."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        queue = a.scheduler.queue

        async def until(end: dt.datetime) -> None:
            while (due := queue.next_due()) is not None and due <= end:
                clock.now = max(clock.now, due)
                await asyncio.wait_for(a.scheduler.worker.step(), 1)
                a.watch.deliver(a.scheduler)
        a.watch.deliver(a.scheduler)
        await until(at(seconds=-1))
        cluster.refuse_creates = RuntimeError("HTTP 500: etcdserver: request timed out")
        await until(at(minutes=3))
        assert cluster.created == []
        cluster.refuse_creates = None
        await until(at(minutes=4, seconds=59))
        assert cluster.created == [FIRST] and outcomes(cluster) == []
    run(scenario)


def test_an_exhausted_quota_delays_the_run_without_failing_it() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        cluster.refuse_creates = RetryLater('jobs "x" is forbidden: exceeded quota: jobs, requested: count/jobs=1')
        a = boot(cluster, clock)
        clock.now = at(seconds=1)
        await a.settle()
        assert counters(cluster) == (0, 0, 0) and [r["name"] for r in cluster.status(*KEY)["active"]] == [FIRST]
        assert "JobCreateDelayed" in [n.reason for n in cluster.events]
        cluster.refuse_creates = None
        clock.now = at(seconds=40)
        await a.settle()
        assert cluster.created == [FIRST]
    run(scenario)


def test_the_catalog_is_read_not_watched_and_keeps_its_last_good_templates() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        a.scheduler.catalog = {}
        cluster.config_map = {"metadata": {"resourceVersion": "1"}, "data": CATALOG_DATA}
        await a.scheduler.load_catalog()
        assert list(a.scheduler.catalog) == ["cluster"]
        cluster.config_map = {"metadata": {"resourceVersion": "2"}, "data": {}}  # a bad edit
        await a.scheduler.load_catalog()
        assert list(a.scheduler.catalog) == ["cluster"]
        clock.now = at(seconds=1)
        await a.settle()
        assert cluster.created == [FIRST]
    run(scenario)


# --- two schedulers at once, lagging and lost watch events --------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_two_schedulers_with_lagging_watches_make_one_job_per_moment_and_count_each_once(seed: int) -> None:
    async def scenario() -> None:
        rnd = random.Random(seed)
        clock = Clock(at(minutes=-2))
        cluster = FakeCluster(clock)
        spec = cron_spec("* * * * *", successfulJobsHistoryLimit=rnd.choice([0, 1, 3]), concurrencyPolicy="Allow",
                         jobTemplate=job_template())
        cluster.apply_trigger(NAMESPACE, TRIGGER_NAME, spec)
        replicas = [boot(cluster, clock), boot(cluster, clock)]
        finished: dict[str, bool] = {}
        for _ in range(150):
            action = rnd.random()
            replica = rnd.choice(replicas)
            running = [n for (_, n), b in cluster.jobs.items() if n not in finished]
            if action < 0.35:
                await replica.scheduler.sync(KEY)
            elif action < 0.6:
                replica.watch.deliver(replica.scheduler, only=rnd.choice([None, None, "Trigger", "Job"]))
            elif action < 0.65:
                replica.watch.drop()
            elif action < 0.8 and running:
                name = rnd.choice(running)
                finished[name] = rnd.random() < 0.8
                cluster.finish_job(NAMESPACE, name, succeeded=finished[name])
            elif action < 0.85 and finished:
                cluster.remove_job(NAMESPACE, rnd.choice(sorted(finished)))  # a TTL or a person
            else:
                clock.now += dt.timedelta(seconds=rnd.randint(1, 30))
        for name in [n for (_, n) in list(cluster.jobs) if n not in finished]:
            finished[name] = True
            cluster.finish_job(NAMESPACE, name)
        clock.now += dt.timedelta(seconds=STALE_JOB_SECONDS + 1)
        cluster.edit_spec(*KEY, state="paused")  # no more runs: the test is over
        for replica in replicas:
            await replica.scheduler.store.resync_jobs()
            await replica.settle()
        assert len(cluster.created) == len(set(cluster.created)), "a moment ran twice"
        counted = {e["name"]: e["outcome"] for e in cluster.status(*KEY).get("recentExecutions") or []}
        executed, failed, _ = counters(cluster)
        made = [n for n in cluster.created if n in finished]
        assert executed == sum(finished[n] for n in made)
        assert failed == sum(not finished[n] for n in made)
        assert "Lost" not in counted.values()
        assert cluster.status(*KEY)["active"] == [] and held_jobs(cluster) == [], cluster.status(*KEY)
    run(scenario)


# --- conditional Triggers: checks in the one scheduler ---------------------------------------------------

DRIFT_SPEC: dict[str, Any] = {
    "actionType": "cluster", "triggerType": "conditional", "jobTemplate": job_template(),
    "scheduleConfig": {"conditionType": "drift", "metric": "absolute_drift", "threshold": 0.3,
                       "checkIntervalSeconds": 60, "source": {"configMap": {"name": "stats", "key": "shift"}}}}


def drifty(clock: Clock) -> tuple[FakeCluster, tuple[str, str]]:
    """A cluster with the approved conditional Trigger ``drifty`` and its ConfigMap at 1.0."""
    cluster = FakeCluster(clock)
    cluster.config_map = {"metadata": {"name": "stats"}, "data": {"shift": "1.0"}}
    cluster.apply_trigger(NAMESPACE, "drifty", DRIFT_SPEC, annotations=approved("drifty", DRIFT_SPEC))
    return cluster, (NAMESPACE, "drifty")


def test_a_conditional_trigger_reads_its_configmap_and_fires_past_the_threshold() -> None:
    async def scenario() -> None:
        clock = Clock(at())
        cluster, key = drifty(clock)
        replica = boot(cluster, clock)
        replica.watch.deliver(replica.scheduler)
        assert cluster.config_map is not None
        for moment, value in [(at(), "1.0"), (at(minutes=1), "1.2"), (at(minutes=2), "1.5")]:
            clock.now = moment
            cluster.config_map["data"]["shift"] = value
            await replica.scheduler.sync(key)
            for _ in range(3):
                await replica.scheduler.background_done()
                replica.watch.deliver(replica.scheduler)
                await replica.scheduler.sync(key)
        status = cluster.status(*key)
        assert status["baselineSnapshot"]["value"] == 1.0
        assert status["lastDriftMeasurement"]["drift"] == pytest.approx(0.5)
        assert cluster.created == ["drifty-c1"]
    run(scenario)


def test_a_slow_source_holds_up_no_other_trigger() -> None:
    async def scenario() -> None:
        clock = Clock(at())
        cluster = FakeCluster(clock)
        release = asyncio.Event()

        class Slow:
            async def read(self, namespace: str, source: Any) -> Any:
                await release.wait()
                return "1.0"

        cluster.apply_trigger(NAMESPACE, "drifty", DRIFT_SPEC, annotations=approved("drifty", DRIFT_SPEC))
        cluster.apply_trigger(NAMESPACE, TRIGGER_NAME, cron_spec())
        scheduler = Scheduler(cluster, OperatorConfig(), clock=clock, reader=Slow(),  # type: ignore[arg-type]
                              approval_key=APPROVAL_KEY)
        scheduler.on_catalog(CATALOG_DATA)
        cluster.watch().deliver(scheduler)
        await scheduler.sync((NAMESPACE, "drifty"))  # starts a check that does not answer
        clock.now = at(seconds=1)
        await scheduler.sync(KEY)  # the cron Trigger's moment runs meanwhile
        assert cluster.created == [FIRST]
        release.set()
        await scheduler.background_done()
        assert (NAMESPACE, "drifty") in scheduler.checks.readings
    run(scenario)


def test_metrics_count_each_run_once_with_bounded_labels() -> None:
    from prometheus_client import generate_latest

    from trigger_operator.metrics import Metrics

    async def scenario() -> None:
        cluster, clock = new_cluster()
        metrics = Metrics()
        scheduler = Scheduler(cluster, OperatorConfig(), clock=clock, monotonic=lambda: clock.now.timestamp(),
                              metrics=metrics)
        scheduler.on_catalog(CATALOG_DATA)
        metrics.watch(triggers=scheduler.store.all_triggers, queue_depth=lambda: len(scheduler.queue),
                      next_due=scheduler.next_due, leading=scheduler.leading)
        replica = Replica(scheduler, cluster.watch())
        await replica.settle()
        clock.now = at(seconds=3)
        await replica.settle()
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(seconds=30)
        await replica.settle()
        await replica.settle()  # echoes of our own writes count nothing again
        text = generate_latest(metrics.registry).decode()
        kinds = {"action_type": "cluster", "trigger_type": "cron"}
        assert sample(text, "trigger_operator_executions_started_total", **kinds, run_kind="scheduled") == 1
        assert sample(text, "trigger_operator_executions_finished_total", **kinds, outcome="Succeeded") == 1
        assert sample(text, "trigger_operator_schedule_lateness_seconds_count", trigger_type="cron") == 1
        assert sample(text, "trigger_operator_schedule_lateness_seconds_bucket", trigger_type="cron", le="5.0") == 1
        assert sample(text, "trigger_operator_schedule_lateness_seconds_bucket", trigger_type="cron", le="1.0") == 0
        assert sample(text, "trigger_operator_triggers", phase="Active") == 1
        assert TRIGGER_NAME not in text  # no Trigger or Job name is a label
    run(scenario)


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


def test_the_namespace_index_follows_every_change_of_memory() -> None:
    cluster, clock = new_cluster()
    scheduler = Scheduler(cluster, OperatorConfig(), clock=clock)
    triggers = scheduler.store.triggers
    triggers[("a", "x")] = {"v": 1}
    triggers[("a", "y")] = {"v": 1}
    triggers[("b", "x")] = {"v": 1}
    triggers[("a", "x")] = {"v": 2}  # a newer body replaces the old one in the index too
    assert scheduler.store.triggers_in("a") == [{"v": 2}, {"v": 1}] and scheduler.store.triggers_in("b") == [{"v": 1}]
    triggers.forget(("a", "x"))
    triggers.forget(("a", "x"))  # forgetting twice is harmless
    del triggers[("b", "x")]
    assert scheduler.store.triggers_in("a") == [{"v": 1}] and scheduler.store.triggers_in("b") == []
    assert set(triggers.by_namespace) == {"a"} and list(triggers) == [("a", "y")]


@pytest.mark.parametrize(("config", "expected"), [
    pytest.param(OperatorConfig(), [], id="default-routine-runs-post-nothing"),
    pytest.param(ROUTINE_EVENTS, ["JobCreated", "JobSucceeded"], id="routine-events-on"),
])
def test_routine_runs_post_events_only_when_asked(config: OperatorConfig, expected: list[str]) -> None:
    async def scenario() -> None:
        cluster, clock, a = await first_run_started(config)
        cluster.finish_job(NAMESPACE, FIRST)
        clock.now = at(seconds=30)
        await a.settle()
        assert counters(cluster)[0] == 1
        assert [n.reason for n in cluster.events if n.reason.startswith("Job")] == expected
    run(scenario)


def test_watch_events_that_change_nothing_the_decision_reads_make_no_pass() -> None:
    cluster, clock = new_cluster()
    scheduler = Scheduler(cluster, OperatorConfig(), clock=clock)
    def job(version: str, status: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"namespace": NAMESPACE, "name": FIRST, "uid": "j1", "resourceVersion": version,
                             "labels": {"trigger-operator.io/trigger": TRIGGER_NAME}}, "spec": {}, "status": status}

    scheduler.store.on_job("ADDED", job("10", {"active": 1}))
    assert len(scheduler.queue) == 1
    scheduler.queue.forget(KEY)
    scheduler.store.on_job("MODIFIED", job("11", {"active": 1, "ready": 1}))  # its pod became ready
    assert len(scheduler.queue) == 0
    assert scheduler.store.jobs[KEY][FIRST].resource_version == 11  # memory still moves on
    ended = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    scheduler.store.on_job("MODIFIED", job("12", ended))
    assert len(scheduler.queue) == 1  # it ended: that the decision reads

    def trigger(version: str) -> dict[str, Any]:
        return {"metadata": {"namespace": NAMESPACE, "name": TRIGGER_NAME, "uid": "t1", "resourceVersion": version},
                "spec": {}}

    scheduler.queue.forget(KEY)
    scheduler.store.on_trigger("MODIFIED", trigger("5"))
    scheduler.queue.forget(KEY)
    scheduler.store.on_trigger("MODIFIED", trigger("5"))  # the echo of a write whose answer we already hold
    assert len(scheduler.queue) == 0
    scheduler.store.on_trigger("MODIFIED", trigger("6"))
    assert len(scheduler.queue) == 1


# --- a check that died with its process; refused status writes; the namespaces know() keeps ---------

class Hangs:
    """A source read that never ends (the process dies during it); notes what status said at its start."""

    def __init__(self, cluster: FakeCluster, key: tuple[str, str]) -> None:
        self.cluster, self.key = cluster, key
        self.started_with: list[dict[str, Any]] = []

    async def read(self, namespace: str, source: Any) -> Any:
        self.started_with.append(self.cluster.status(*self.key))
        await asyncio.Event().wait()


class Counts:
    def __init__(self, value: Any) -> None:
        self.value, self.reads = value, 0

    async def read(self, namespace: str, source: Any) -> Any:
        self.reads += 1
        return self.value


def conditional_process(cluster: FakeCluster, clock: Clock, reader: Any) -> Replica:
    scheduler = Scheduler(cluster, OperatorConfig(), clock=clock, reader=reader, approval_key=APPROVAL_KEY)
    scheduler.on_catalog(CATALOG_DATA)
    replica = Replica(scheduler, cluster.watch())
    replica.watch.deliver(scheduler)
    return replica


async def checked_once(replica: Replica, key: tuple[str, str]) -> None:
    """One pass, the check it starts, and the pass that writes the reading."""
    await replica.scheduler.sync(key)
    await replica.scheduler.background_done()
    replica.watch.deliver(replica.scheduler)
    await replica.scheduler.sync(key)


def test_a_process_that_dies_during_a_check_leaves_a_failed_check_and_the_next_does_not_check_at_once() -> None:
    async def scenario() -> None:
        clock = Clock(at())
        cluster, key = drifty(clock)
        fine = Counts("1.0")
        first = conditional_process(cluster, clock, fine)
        await checked_once(first, key)  # a first check that ends well: announced, then written
        assert cluster.status(*key)["conditionCheckStartedAt"] == format_time(at())
        clock.now = at(minutes=1)
        writes = cluster.called("patch_trigger_status")
        await first.scheduler.sync(key)  # its second check is not announced: no write before the read
        await first.scheduler.background_done()
        assert fine.reads == 2 and cluster.called("patch_trigger_status") == writes

        hangs = Hangs(cluster, key)
        dying = conditional_process(cluster, clock, hangs)  # a restart; this process dies in its check
        clock.now = at(minutes=2)
        await dying.scheduler.sync(key)
        for _ in range(5):
            await asyncio.sleep(0)  # the read starts
        assert [s["conditionCheckStartedAt"] for s in hangs.started_with] == [format_time(at(minutes=2))]

        clock.now = at(minutes=3)
        counts = Counts("1.0")
        after = conditional_process(cluster, clock, counts)  # the process after the crash
        await after.scheduler.sync(key)
        await after.scheduler.background_done()
        status = cluster.status(*key)
        assert status["sourceErrors"] == 1 and counts.reads == 0
        assert status["lastDriftMeasurement"]["error"].startswith("the operator stopped while this source was "
                                                                  "being checked (started 2026-03-02T10:02:00Z)")
        clock.now = at(minutes=3, seconds=59)
        after.watch.deliver(after.scheduler)
        await after.scheduler.sync(key)
        await after.scheduler.background_done()
        assert counts.reads == 0  # not checked again before the (backed-off) interval
        clock.now = at(minutes=4)
        await checked_once(after, key)
        assert counts.reads == 1 and cluster.status(*key)["sourceErrors"] == 0
    run(scenario)


def test_checks_that_change_nothing_write_nothing_but_the_heartbeat_and_keep_their_cadence() -> None:
    """Issue 21: 1,000 Triggers every 10 s must not cost 100 status writes a second. A check every
    minute (heartbeat 6 min) of a value that stays: one write for its first check's announcement
    and one for its baseline, one when the note of the first value goes, then one per heartbeat;
    every check still made on time; a change (past the threshold) written and fired at once."""
    async def scenario() -> None:
        clock = Clock(at())
        cluster, key = drifty(clock)
        counts = Counts("1.0")
        replica = conditional_process(cluster, clock, counts)
        await checked_once(replica, key)  # the first check: announced, then its baseline
        assert cluster.called("patch_trigger_status") == 2
        writes = []
        for minute in range(1, 14):
            clock.now = at(minutes=minute)
            before = cluster.called("patch_trigger_status")
            await checked_once(replica, key)
            writes.append(cluster.called("patch_trigger_status") - before)
            clock.now = at(minutes=minute, seconds=59)  # not due yet: the memory of the unwritten check says so
            await replica.scheduler.sync(key)
            await replica.scheduler.background_done()
        assert counts.reads == 14  # one check a minute, written or not
        assert writes == [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]  # the note goes at 10:01; heartbeats 10:07, 10:13
        assert cluster.status(*key)["lastConditionCheckAt"] == format_time(at(minutes=13))
        counts.value = "1.5"  # drift 0.5: past the threshold
        clock.now = at(minutes=14)
        before = cluster.called("patch_trigger_status")
        await checked_once(replica, key)
        assert cluster.called("patch_trigger_status") - before == 1 and cluster.created == ["drifty-c1"]
        assert cluster.status(*key)["lastDriftMeasurement"]["exceeded"] is True
    run(scenario)


OTHER_SOURCE = {**DRIFT_SPEC, "scheduleConfig": {**DRIFT_SPEC["scheduleConfig"],
                                                  "source": {"configMap": {"name": "secrets-of-b", "key": "k"}}}}


@pytest.mark.parametrize(("annotations", "approval", "read"), [
    pytest.param({}, "required", False, id="never-approved"),
    pytest.param(approved("other", DRIFT_SPEC), "required", False, id="approval-copied-from-another-trigger"),
    pytest.param(approved("drifty", DRIFT_SPEC, namespace="team-b"), "required", False,
                 id="approval-copied-from-another-namespace"),
    pytest.param(approved("drifty", OTHER_SOURCE), "required", False, id="approval-of-another-source"),
    pytest.param({ANNOTATION_SOURCE_APPROVAL: "v1.0000"}, "required", False, id="forged"),
    pytest.param(approved("drifty", DRIFT_SPEC), "required", True, id="approved"),
    pytest.param({}, "off", True, id="approvals-off"),
])
def test_a_source_read_with_our_rights_is_read_only_when_its_approval_verifies(
        annotations: dict[str, str], approval: str, read: bool) -> None:
    """The webhook can be down or bypassed: the controller checks the approval before every read,
    and a Trigger whose approval does not verify for exactly this source is told so, unread."""
    async def scenario() -> None:
        clock = Clock(at())
        cluster = FakeCluster(clock)
        cluster.apply_trigger(NAMESPACE, "drifty", DRIFT_SPEC, annotations=annotations)
        key = (NAMESPACE, "drifty")
        counts = Counts("1.0")
        reader: Any = counts
        scheduler = Scheduler(cluster, OperatorConfig(sources=SourcesSettings(approval=approval)), clock=clock,
                              reader=reader, approval_key=APPROVAL_KEY)
        scheduler.on_catalog(CATALOG_DATA)
        replica = Replica(scheduler, cluster.watch())
        replica.watch.deliver(scheduler)
        await checked_once(replica, key)
        status = cluster.status(*key)
        assert counts.reads == (1 if read else 0)
        if read:
            assert status["sourceErrors"] == 0 and status["baselineSnapshot"]["value"] == 1.0
        else:
            assert status["sourceErrors"] == 1 and "baselineSnapshot" not in status
            assert status["lastDriftMeasurement"]["error"].startswith(
                "spec.scheduleConfig.source.configMap: not approved: the operator reads ConfigMap stats only for "
                "an author who may get it")
    run(scenario)


def test_without_an_approval_key_no_source_needing_approval_is_read() -> None:
    async def scenario() -> None:
        clock = Clock(at())
        cluster = FakeCluster(clock)
        cluster.apply_trigger(NAMESPACE, "drifty", DRIFT_SPEC, annotations=approved("drifty", DRIFT_SPEC))
        counts = Counts("1.0")
        reader: Any = counts
        replica = Replica(Scheduler(cluster, OperatorConfig(), clock=clock, reader=reader), cluster.watch())
        replica.scheduler.on_catalog(CATALOG_DATA)
        replica.watch.deliver(replica.scheduler)
        await checked_once(replica, (NAMESPACE, "drifty"))
        assert counts.reads == 0
        error = cluster.status(NAMESPACE, "drifty")["lastDriftMeasurement"]["error"]
        assert "the operator has no approval key" in error
    run(scenario)


class Raises:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def read(self, namespace: str, source: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(("error", "recorded"), [
    pytest.param(SourceError("GET http://x/: HTTP 404"), "GET http://x/: HTTP 404", id="ours"),
    pytest.param(ValueError("Expecting value: AKIAEXAMPLE SECRET=xyz"), "ValueError", id="a-parser-quoting"),
    pytest.param(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"), "UnicodeEncodeError", id="a-codec"),
])
def test_a_failed_check_records_only_the_failures_we_worded(error: Exception, recorded: str) -> None:
    """Another library's message may quote what the source answered: only its kind is recorded."""
    async def scenario() -> None:
        clock = Clock(at())
        cluster = FakeCluster(clock)
        cluster.apply_trigger(NAMESPACE, "drifty", DRIFT_SPEC, annotations=approved("drifty", DRIFT_SPEC))
        replica = conditional_process(cluster, clock, Raises(error))
        await checked_once(replica, (NAMESPACE, "drifty"))
        assert cluster.status(NAMESPACE, "drifty")["lastDriftMeasurement"]["error"] == recorded
    run(scenario)


def test_a_namespace_whose_sources_never_answer_holds_only_its_share_of_the_checks() -> None:
    """70 checks of one tenant that never answer would hold every slot (64): another tenant's check
    starts at once all the same, and the first tenant holds no more than its share."""
    async def scenario() -> None:
        clock = Clock(at())
        cluster = FakeCluster(clock)
        names = [f"slow-{i}" for i in range(70)]
        for name in names:
            approval = approved(name, DRIFT_SPEC, namespace="team-a")
            cluster.apply_trigger("team-a", name, DRIFT_SPEC, annotations=approval)
        cluster.apply_trigger("team-b", "drifty", DRIFT_SPEC, annotations=approved("drifty", DRIFT_SPEC,
                                                                                   namespace="team-b"))
        started: list[str] = []
        answered = asyncio.Event()

        class Reader:
            async def read(self, namespace: str, source: Any) -> Any:
                started.append(namespace)
                if namespace == "team-a":
                    await asyncio.Event().wait()  # never answers
                answered.set()
                return "1.0"

        replica = conditional_process(cluster, clock, Reader())
        for name in names:
            await replica.scheduler.sync(("team-a", name))
        await replica.scheduler.sync(("team-b", "drifty"))
        await asyncio.wait_for(answered.wait(), 2)
        assert started.count("team-a") == CHECKS_PER_NAMESPACE and "team-b" in started
        replica.scheduler.cancel_background()
    run(scenario)


def vector_spec() -> dict[str, Any]:
    return {**DRIFT_SPEC, "scheduleConfig": {**DRIFT_SPEC["scheduleConfig"], "checkIntervalSeconds": 10}}


def test_a_refused_status_write_drops_the_reading_and_then_backs_off_with_one_line_per_step(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        clock = Clock(at())
        cluster = FakeCluster(clock)
        cluster.apply_trigger(NAMESPACE, "drifty", vector_spec(), annotations=approved("drifty", vector_spec()))
        key = (NAMESPACE, "drifty")
        vector = [0.5 + i for i in range(500)]  # a baseline of ~4 KB
        cluster.max_patch_bytes = 3000
        replica = conditional_process(cluster, clock, Counts(vector))
        await checked_once(replica, key)
        status = cluster.status(*key)
        assert status["lastDriftMeasurement"]["error"] == ("the status write was refused by the API server "
                                                           "(HTTP 413): the reading was dropped")
        assert status["sourceErrors"] == 1 and "baselineSnapshot" not in status
        assert key not in replica.scheduler.checks.readings and "0.5" not in str(status)
        assert status["lastConditionCheckAt"] == format_time(at())  # the next check after the interval

        cluster.max_patch_bytes = 10  # now even the failed check cannot be written
        delays = []
        clock.now = at(seconds=10)
        for _ in range(8):
            before = cluster.called("patch_trigger_status")
            await replica.scheduler.sync(key)  # starts a check (its status is still due for one)
            await replica.scheduler.background_done()
            replica.scheduler.queue.forget(key)  # (what the worker took off the queue)
            # its reading cannot be written, nor can the failed check; the worker applies the result
            replica.scheduler.apply(key, await replica.scheduler.sync(key))
            assert cluster.called("patch_trigger_status") - before == 2
            due = replica.scheduler.queue.next_due()
            assert due is not None
            delays.append((due - clock.now).total_seconds())
            clock.now = due
        assert delays[:7] == [5, 10, 20, 40, 60, 60, 60] and delays[7] == 60
        refusals = [r for r in caplog.records if "refused the status write" in r.getMessage()]
        assert len(refusals) == 8 and all(r.exc_info is None for r in refusals)
        cluster.max_patch_bytes = None
        await checked_once(replica, key)
        assert key not in replica.scheduler.reconciler._refusals  # written again: the backoff starts afresh
        assert cluster.status(*key)["baselineSnapshot"]["value"] == vector
    run(scenario)


def test_know_remembers_a_bounded_number_of_namespaces_and_drops_its_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    from trigger_operator.controller import store

    monkeypatch.setattr(store, "KNOWN_NAMESPACES_KEPT", 3)

    async def scenario() -> None:
        cluster, clock = new_cluster()
        scheduler = Scheduler(cluster, OperatorConfig(), clock=clock)
        await asyncio.gather(*(scheduler.store.know("ns-0") for _ in range(5)))  # callers at once: one LIST
        assert cluster.called("list_triggers", "ns-0") == 1
        for i in range(1, 6):
            await scheduler.store.know(f"ns-{i}")
        assert list(scheduler.store._known) == ["ns-3", "ns-4", "ns-5"] and scheduler.store._knowing == {}
        await scheduler.store.know("ns-3")  # remembered: no LIST, and it is the most recent now
        assert cluster.called("list_triggers", "ns-3") == 1
        await scheduler.store.know("ns-0")  # forgotten: read once more
        assert cluster.called("list_triggers", "ns-0") == 2
        assert list(scheduler.store._known) == ["ns-5", "ns-3", "ns-0"] and scheduler.store._knowing == {}
    run(scenario)


def test_a_pass_that_keeps_failing_backs_off_exponentially_to_a_bound_with_one_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    cluster, clock = new_cluster()
    scheduler = Scheduler(cluster, OperatorConfig(), clock=clock)  # retry_seconds 5
    scheduler.requeues.again(KEY, clock.now + dt.timedelta(seconds=7))  # what the failed pass had asked for
    delays = [(scheduler.failed(KEY, RuntimeError("boom")).requeue_at - clock.now).total_seconds()  # type: ignore[operator]
              for _ in range(9)]
    assert delays == [5, 10, 20, 40, 60, 60, 60, 60, 60]
    scheduler.requeues.again(KEY)  # a pass that asked to come back at once still does, failing or not
    assert scheduler.failed(KEY, RuntimeError("boom")).requeue_at == clock.now
    lines = [r for r in caplog.records if "reconcile of" in r.getMessage()]
    assert len(lines) == 10 and [bool(r.exc_info) for r in lines] == [True] + [False] * 9
    assert "10 time(s) in a row" in lines[-1].getMessage()


# --- the gap between a create sent first and its deferred write (review of the deferral) -------------

def deliver_triggers_only(replica: Replica) -> None:
    """The Trigger watch is in; the Job watch lags (its events stay pending, not lost)."""
    jobs = [e for e in replica.watch.pending if e[0] == "Job"]
    replica.watch.pending = [e for e in replica.watch.pending if e[0] != "Job"]
    replica.watch.deliver(replica.scheduler)
    replica.watch.pending = jobs + replica.watch.pending


def test_recreated_under_its_name_watch_catches_up_in_the_gap_the_old_job_is_withdrawn() -> None:
    """Deleted and re-created under its name before 10:00, the watch lagging at the create first;
    the watch catches up in the gap before the deferred write (seconds under a burst): the old uid's
    Job is withdrawn by the deferred pass, and the new Trigger's 10:00 does not fail on it."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()  # announces 10:00 (our own write)
        clock.now = at(seconds=-10)
        cluster.delete_trigger(*KEY)
        cluster.apply_trigger(NAMESPACE, TRIGGER_NAME, cron_spec())
        new_uid = cluster.triggers[KEY]["metadata"]["uid"]
        clock.now = at(seconds=1)
        await a.scheduler.sync(KEY)  # the watch lagging: the old copy, create first, write deferred
        assert cluster.created == [FIRST]
        clock.now = at(seconds=2)
        await a.settle()  # the watch catches up before the deferred pass runs
        old = cluster.jobs.get((NAMESPACE, FIRST))
        owners = [r["uid"] for r in old["metadata"]["ownerReferences"]] if old else []
        assert owners == [new_uid] or (old and old["metadata"].get("deletionTimestamp")), \
            f"the old uid's Job is left running, not withdrawn; outcomes {outcomes(cluster)}"
        for s in (3, 5, 30):
            clock.now = at(seconds=s)
            await a.settle()
        assert outcomes(cluster) == [] or outcomes(cluster)[0][1] != "Failed", \
            f"the new Trigger's 10:00 failed on the deleted namesake's Job: {outcomes(cluster)}"
    run(scenario)


def test_deleted_watch_catches_up_in_the_gap_the_old_job_is_withdrawn() -> None:
    """Deleted just before 10:00, the watch lagging at the create first, caught up before the
    deferred pass: that pass finds no Trigger and withdraws the Job made for the deleted one."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=-5)
        cluster.delete_trigger(*KEY)
        clock.now = at(seconds=1)
        await a.scheduler.sync(KEY)
        assert cluster.created == [FIRST]
        await a.settle()
        job = cluster.jobs.get((NAMESPACE, FIRST))
        assert job is None or job["metadata"].get("deletionTimestamp"), "the deleted Trigger's Job runs on"
    run(scenario)


def test_a_job_gone_in_the_gap_is_not_created_again() -> None:
    """The Job created first is deleted with our finalizer stripped (by hand) before the deferred
    pass: that pass adopts the gone Job (counted Lost) and does not create 10:00 again."""
    async def scenario() -> None:
        cluster, clock = new_cluster()
        a = boot(cluster, clock)
        await a.settle()
        clock.now = at(seconds=1)
        await a.scheduler.sync(KEY)
        assert cluster.created == [FIRST]
        cluster.jobs[NAMESPACE, FIRST]["metadata"]["finalizers"] = []
        cluster.remove_job(NAMESPACE, FIRST)
        clock.now = at(seconds=2)
        await a.settle()
        assert cluster.created == [FIRST], "a moment ran twice"
    run(scenario)


def test_a_lease_lapse_in_the_gap_and_a_lagging_job_watch_past_the_deadline() -> None:
    """A creates 10:00 first and defers its write; its lease lapses in the gap. B (Job watch lagging)
    takes over 20 s after the moment, past startingDeadlineSeconds=10: on a copy not its own it reads
    the announced Job before deciding, so the run that ran is listed and counted, not missed."""
    async def scenario() -> None:
        cluster, clock = new_cluster(startingDeadlineSeconds=10)
        owned = [True]
        a = boot(cluster, clock, owns=lambda ns, name: owned[0])
        await a.settle()
        b = boot(cluster, clock)
        deliver_triggers_only(b)
        clock.now = at(seconds=1)
        await a.step()
        assert cluster.created == [FIRST] and cluster.status(*KEY).get("active", []) == []
        owned[0] = False
        clock.now = at(seconds=20)
        deliver_triggers_only(b)
        await b.scheduler.sync(KEY)
        await b.settle()  # the Job watch caught up now
        cluster.finish_job(NAMESPACE, FIRST)
        for s in (30, 120, 300):
            clock.now = at(seconds=s)
            await b.settle()
        status = cluster.status(*KEY)
        assert cluster.created == [FIRST]
        assert counters(cluster) == (1, 0, 0) and status.get("missedRuns", 0) == 0, \
            f"the run that ran is counted {counters(cluster)}, missed {status.get('missedRuns')}, " \
            f"outcomes {outcomes(cluster)}, held {held_jobs(cluster)}"
    run(scenario)


def test_a_crash_after_the_first_create_and_a_lagging_job_watch_past_the_deadline_counts_the_run() -> None:
    """The same without the deferral: A dies between its create and its listing write; B, its Job
    watch lagging, past the starting deadline, reads the announced Job and counts the run once."""
    async def scenario() -> None:
        cluster, clock = new_cluster(startingDeadlineSeconds=10)
        a = boot(cluster, clock)
        await a.settle()
        b = boot(cluster, clock)
        deliver_triggers_only(b)
        clock.now = at(seconds=1)
        cluster.calls_before_crash = 1  # the create goes through, the next call dies
        with contextlib.suppress(Crash):
            await a.step()
        cluster.calls_before_crash = None
        assert cluster.created == [FIRST] and cluster.status(*KEY).get("active", []) == []
        clock.now = at(seconds=20)
        deliver_triggers_only(b)
        await b.scheduler.sync(KEY)
        await b.settle()
        cluster.finish_job(NAMESPACE, FIRST)
        for s in (30, 120, 300):
            clock.now = at(seconds=s)
            await b.settle()
        status = cluster.status(*KEY)
        assert counters(cluster) == (1, 0, 0) and status.get("missedRuns", 0) == 0, \
            f"counted {counters(cluster)}, missed {status.get('missedRuns')}, outcomes {outcomes(cluster)}"
    run(scenario)

"""Backfill (core/firing/backfill.py): the request, which moments run, exactly once, at a bounded
parallelism, through whole reconcile passes as the controller carries them out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.unit.conftest import at, cron_spec, interval_spec, job_view, trigger_view
from tests.unit.fake_cluster import FakeCluster
from trigger_operator.api import ANNOTATION_BACKFILL
from trigger_operator.core.firing.backfill import (
    MAX_MOMENTS,
    Refusal,
    already_ran,
    merged,
    parse_request,
    request_annotation,
)
from trigger_operator.core.plan import Plan
from trigger_operator.core.reconcile import reconcile
from trigger_operator.jobs.observe import JobPhase, JobView
from trigger_operator.jobs.render import scheduled_job_name
from trigger_operator.kube.interface import Identity
from trigger_operator.model.spec import ConcurrencyPolicy
from trigger_operator.model.status import (
    ActiveRun,
    Backfill,
    BackfillState,
    Outcome,
    Phase,
    RunKind,
    TriggerStatus,
    format_time,
)
from trigger_operator.model.trigger import TriggerView
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.seed_routes import add_seed_routes

NAME = "nightly"
MINUTELY = cron_spec("* * * * *", successfulJobsHistoryLimit=1)
PAST_HOUR = (at(hours=-1), at(minutes=-1))  # 09:00 .. 09:59, 60 moments
NOW = at()


def minute(n: int) -> dt.datetime:
    """The moment n minutes after 09:00."""
    return at(hours=-1, minutes=n)


def request(request_id: str = "b1", start: dt.datetime = PAST_HOUR[0], end: dt.datetime = PAST_HOUR[1],
            parallelism: int = 3, **extra: Any) -> dict[str, str]:
    body = json.loads(request_annotation(request_id, start, end, parallelism))
    return {ANNOTATION_BACKFILL: json.dumps({**body, **extra})}


def live_status(since: dt.datetime = NOW, cursor: dt.datetime | None = None, **more: Any) -> TriggerStatus:
    """A live cron Trigger, Active since ``since``, whose schedule has handled moments up to ``cursor``."""
    more.setdefault("handled_moments", ((since, cursor or since),))
    return TriggerStatus(phase=Phase.ACTIVE, active_since=since, last_schedule_time=cursor or since,
                         observed_generation=1, **more)


def new_trigger(annotations: Mapping[str, str], spec: Mapping[str, Any] = MINUTELY,
                status: TriggerStatus | None = None) -> TriggerView:
    return trigger_view(spec=spec, annotations=annotations, created_at=at(seconds=-1),
                        status=status if status is not None else live_status())


class Cluster:
    """Carries plans out as the controller does (status write, then creates), and runs Jobs: each
    Job created finishes (Succeeded) after ``lasts`` passes. Records every Job ever created."""

    def __init__(self, trigger: TriggerView, lasts: int = 1) -> None:
        self.trigger, self.lasts = trigger, lasts
        self.jobs: dict[str, JobView] = {}
        self.age: dict[str, int] = {}
        self.created: list[str] = []
        self.peak = 0

    def step(self, now: dt.datetime = NOW, *, create: bool = True) -> Plan:
        for name in list(self.age):
            self.age[name] += 1
            if self.age[name] >= self.lasts and not self.jobs[name].finished:
                self.jobs[name] = dataclasses.replace(self.jobs[name], phase=JobPhase.SUCCEEDED,
                                                      finished_at=now)
        plan = reconcile(self.trigger, self.jobs, {}, now)
        self.trigger = dataclasses.replace(self.trigger, status=plan.status)
        for name in plan.delete:
            self.jobs.pop(name, None)
            self.age.pop(name, None)
        if create:
            for new in plan.create:
                if new.run.name not in self.jobs:
                    self.created.append(new.run.name)
                    self.jobs[new.run.name] = job_view(new.run.name, created_at=now)
                    self.age[new.run.name] = 0
        self.peak = max(self.peak, sum(1 for r in plan.status.active if r.kind is RunKind.BACKFILL))
        return plan

    def until_settled(self, passes: int = 200) -> Backfill:
        for _ in range(passes):
            self.step()
            block = self.trigger.status.backfill
            if block is None or block.state is not BackfillState.RUNNING:
                break
        block = self.trigger.status.backfill
        assert block is not None
        return block

    def annotate(self, annotations: Mapping[str, str]) -> None:
        self.trigger = dataclasses.replace(self.trigger, annotations=dict(annotations))


def names(*moments: dt.datetime) -> list[str]:
    return [scheduled_job_name(NAME, m) for m in moments]


# --- the request ------------------------------------------------------------------------------------

FIELD = f'metadata.annotations["{ANNOTATION_BACKFILL}"]'


@pytest.mark.parametrize(("text", "error"), [
    pytest.param("{nope", f"{FIELD}: not JSON", id="not-json"),
    pytest.param("[1]", f"{FIELD}: must be a JSON object", id="not-an-object"),
    pytest.param('{"from": "2026-03-02T09:00:00Z"}', f"{FIELD}.id: required", id="no-id"),
    pytest.param('{"id": "b", "from": "2026-03-02T09:00:00", "to": "2026-03-02T09:10:00Z"}',
                 f"{FIELD}.from: required, an RFC 3339 time with an offset", id="no-offset"),
    pytest.param('{"id": "b", "from": "yesterday", "to": "2026-03-02T09:10:00Z"}', f"{FIELD}.from:", id="not-a-time"),
    pytest.param('{"id": "b", "from": "2026-03-02T09:00:00Z"}', f"{FIELD}.to: required", id="no-to"),
    pytest.param('{"id": "b", "from": "2026-03-02T09:10:00Z", "to": "2026-03-02T09:00:00Z"}',
                 f"{FIELD}.to: must not be before from", id="reversed"),
    pytest.param('{"id": "b", "from": "2026-03-02T09:00:00Z", "to": "2026-03-02T09:10:00Z", "parallelism": 0}',
                 f"{FIELD}.parallelism: must be an integer from 1 to 20", id="parallelism-0"),
    pytest.param('{"id": "b", "from": "2026-03-02T09:00:00Z", "to": "2026-03-02T09:10:00Z", "parallelism": 21}',
                 f"{FIELD}.parallelism", id="parallelism-21"),
    pytest.param('{"id": "b", "from": "2026-03-02T09:00:00Z", "to": "2026-03-02T09:10:00Z", "parallelism": true}',
                 f"{FIELD}.parallelism", id="parallelism-bool"),
    pytest.param('{"id": "b", "from": "2026-03-02T09:00:00Z", "to": "2026-03-02T09:10:00Z", "paralelism": 2}',
                 f"{FIELD}.paralelism: unknown key", id="typo"),
    pytest.param('{"id": "b", "from": "2026-03-02T09:00:00Z", "to": "2026-03-02T09:10:00Z", "cancel": "yes"}',
                 f"{FIELD}.cancel: must be true or false", id="cancel-not-bool"),
])
def test_a_bad_request_is_refused_naming_the_field(text: str, error: str) -> None:
    with pytest.raises(Refusal, match=None) as refused:
        parse_request(text)
    assert str(refused.value).startswith(error)


def test_a_request_reads_its_times_in_utc_and_defaults_parallelism_to_one() -> None:
    r = parse_request('{"id": "b", "from": "2026-03-02T10:00:00+01:00", "to": "2026-03-02T09:10:00Z"}')
    assert (r.id, r.start, r.end, r.parallelism, r.cancel) == ("b", at(hours=-1), at(minutes=-50), 1, False)


# --- the rules on their own -------------------------------------------------------------------------

@pytest.mark.parametrize(("ranges", "new", "merges", "expected"), [
    pytest.param([], (minute(0), minute(5)), True, [(minute(0), minute(5))], id="first"),
    pytest.param([(minute(0), minute(5))], (minute(3), minute(9)), True, [(minute(0), minute(9))], id="overlap"),
    pytest.param([(minute(0), minute(5))], (minute(5), minute(5)), True, [(minute(0), minute(5))], id="inside"),
    pytest.param([(minute(10), minute(12))], (minute(0), minute(5)), True,
                 [(minute(0), minute(5)), (minute(10), minute(12))], id="apart-sorted"),
])
def test_ranges_merge(ranges: list[tuple[dt.datetime, dt.datetime]], new: tuple[dt.datetime, dt.datetime],
                      merges: bool, expected: list[tuple[dt.datetime, dt.datetime]]) -> None:
    assert list(merged(ranges, new, overflow_merges=merges)) == expected


def test_past_the_bound_backfilled_ranges_merge_the_closest_and_missed_ranges_drop_the_oldest() -> None:
    ranges = [(minute(0), minute(0)), (minute(10), minute(10)), (minute(12), minute(12))]
    new = (minute(30), minute(30))
    # Merging errs towards "already ran" (never twice): minutes 10..12 count as backfilled.
    assert merged(ranges, new, keep=3, overflow_merges=True) == (
        (minute(0), minute(0)), (minute(10), minute(12)), (minute(30), minute(30)))
    # Dropping a missed range errs the same way: minute 0 is no longer offered to a backfill.
    assert merged(ranges, new, keep=3, overflow_merges=False) == (*ranges[1:], new)


# Two active spells of the live schedule: 09:00..09:20, then (paused in between) 09:40..09:50.
SPELLS = ((minute(0), minute(20)), (minute(40), minute(50)))


@pytest.mark.parametrize(("moment", "status", "reason"), [
    pytest.param(minute(5), TriggerStatus(), None, id="never-live"),
    pytest.param(minute(5), TriggerStatus(backfilled_moments=((minute(0), minute(9)),)), "an earlier backfill",
                 id="backfilled-before"),
    pytest.param(minute(0), TriggerStatus(handled_moments=SPELLS), "the live schedule handled it",
                 id="handled-inclusive"),
    pytest.param(minute(50), TriggerStatus(handled_moments=SPELLS), "the live schedule handled it",
                 id="handled-to-inclusive"),
    pytest.param(minute(30), TriggerStatus(handled_moments=SPELLS, active_since=minute(40)), None,
                 id="between-spells-paused"),
    pytest.param(minute(55), TriggerStatus(handled_moments=SPELLS, active_since=minute(40)), None,
                 id="after-the-cursor-no-matter-activeSince"),
    pytest.param(minute(5), TriggerStatus(handled_moments=SPELLS, missed_moments=((minute(3), minute(6)),)), None,
                 id="missed-by-the-live-schedule"),
    pytest.param(minute(5), TriggerStatus(handled_moments=SPELLS, missed_moments=((minute(3), minute(6)),),
                                          backfilled_moments=((minute(5), minute(5)),)),
                 "an earlier backfill", id="missed-then-backfilled"),
])
def test_which_moments_already_ran(moment: dt.datetime, status: TriggerStatus, reason: str | None) -> None:
    found = already_ran(status, moment)
    assert (found is None) if reason is None else (found is not None and found.startswith(reason))


# --- whole passes -----------------------------------------------------------------------------------

def test_a_past_hour_at_parallelism_3_runs_each_minute_once_never_more_than_3_at_once() -> None:
    cluster = Cluster(new_trigger(request()), lasts=2)
    block = cluster.until_settled()
    assert block.state is BackfillState.COMPLETE
    assert sorted(cluster.created) == sorted(names(*(minute(n) for n in range(60))))
    assert cluster.peak == 3
    assert (block.total, block.started, block.succeeded, block.failed, block.skipped) == (60, 60, 60, 0, 0)
    status = cluster.trigger.status
    assert status.execution_count == 60 and status.active == ()
    assert status.backfilled_moments == ((minute(0), minute(59)),)
    assert {e.kind for e in status.recent_executions} == {RunKind.BACKFILL}


def test_the_first_pass_lists_the_runs_it_starts_in_the_write_that_moves_the_cursor() -> None:
    plan = reconcile(new_trigger(request()), {}, {}, at())
    started = [r.name for r in plan.status.active]
    assert started == [new.run.name for new in plan.create] == names(minute(0), minute(1), minute(2))
    assert plan.status.backfill is not None and plan.status.backfill.cursor == minute(2)
    assert plan.patch["active"] and plan.patch["backfill"]["cursor"] == format_time(minute(2))
    assert {n.reason for n in plan.notices} == {"BackfillStarted"}


def test_the_same_request_again_same_id_or_new_id_runs_nothing_new_even_with_the_jobs_pruned() -> None:
    cluster = Cluster(new_trigger(request()))
    cluster.until_settled()
    cluster.jobs.clear()  # pruned by the history limits (and released)
    cluster.age.clear()
    first = list(cluster.created)
    for again in (request(), request("b2"), request("b3", parallelism=1)):
        cluster.annotate(again)
        block = cluster.until_settled()
        assert block.state is BackfillState.COMPLETE
    assert cluster.created == first
    assert (block.id, block.started, block.skipped) == ("b3", 0, 60)


def test_a_backfill_overlapping_the_live_schedule_runs_only_what_it_missed() -> None:
    # Live since 09:30, its cursor at 10:00; 09:40..09:44 were missed (an outage past the deadline).
    status = live_status(since=minute(30), cursor=at(), missed_moments=((minute(40), minute(44)),))
    cluster = Cluster(new_trigger(request(end=at()), status=status))
    block = cluster.until_settled()
    expected = [minute(n) for n in range(30)] + [minute(n) for n in range(40, 45)]
    assert sorted(cluster.created) == sorted(names(*expected))
    assert (block.total, block.started, block.skipped) == (61, 35, 26)


def test_the_live_schedule_records_missed_moments_for_a_backfill_to_run() -> None:
    spec = cron_spec("* * * * *", startingDeadlineSeconds=60)
    # Live since 09:00, cursor at 09:20; the operator comes back at 09:50: catchUpPolicy Latest runs
    # 09:50 alone, 09:21..09:49 are missed.
    status = live_status(since=minute(0), cursor=minute(20))
    plan = reconcile(new_trigger({}, spec=spec, status=status), {}, {}, minute(50))
    assert plan.status.missed_moments == ((minute(21), minute(49)),)
    assert [new.run.name for new in plan.create] == names(minute(50))
    # The backfill of the whole past hour then runs exactly the missed ones (and nothing before 09:00).
    trigger = dataclasses.replace(new_trigger(request(end=minute(50), parallelism=20), spec=spec),
                                  status=plan.status)
    cluster = Cluster(trigger)
    for _ in range(10):
        cluster.step(minute(50))
    assert sorted(cluster.created) == sorted(names(*(minute(n) for n in range(21, 51))))


def test_cancel_starts_nothing_new_and_the_runs_going_finish_and_are_counted() -> None:
    cluster = Cluster(new_trigger(request()), lasts=3)
    cluster.step()
    assert len(cluster.created) == 3
    cluster.annotate(request(cancel=True))
    plan = cluster.step()
    assert plan.create == () and {n.reason for n in plan.notices} >= {"BackfillCancelled"}
    for _ in range(5):
        cluster.step()
    block = cluster.trigger.status.backfill
    assert block is not None and block.state is BackfillState.CANCELLED
    assert len(cluster.created) == 3 and (block.started, block.succeeded) == (3, 3)
    assert cluster.trigger.status.execution_count == 3


def test_removing_the_annotation_cancels() -> None:
    cluster = Cluster(new_trigger(request()), lasts=3)
    cluster.step()
    cluster.annotate({})
    block = cluster.until_settled()
    assert block.state is BackfillState.CANCELLED and len(cluster.created) == 3


def test_a_new_id_replaces_a_running_backfill_and_the_old_runs_count_toward_the_bound() -> None:
    cluster = Cluster(new_trigger(request()), lasts=3)
    cluster.step()  # 09:00..09:02 running
    cluster.annotate(request("b2", start=minute(30), end=minute(39), parallelism=4))
    plan = cluster.step()
    assert "BackfillReplaced" in {n.reason for n in plan.notices}
    assert [new.run.name for new in plan.create] == names(minute(30))  # 3 old + 1 new = 4
    block = cluster.until_settled()
    assert (block.id, block.started, block.succeeded) == ("b2", 10, 10)  # the old runs are not this block's
    assert cluster.trigger.status.execution_count == 13  # but they are the Trigger's


def test_a_crash_between_the_status_write_and_the_create_makes_the_same_jobs_later_and_no_more() -> None:
    cluster = Cluster(new_trigger(request()))
    cluster.step(create=False)  # the status write went in; the process died before the creates
    plan = cluster.step()
    assert [new.run.name for new in plan.create] == names(minute(0), minute(1), minute(2))
    assert plan.status.backfill is not None and plan.status.backfill.cursor == minute(2)
    block = cluster.until_settled()
    assert block.state is BackfillState.COMPLETE and len(cluster.created) == len(set(cluster.created)) == 60


def test_an_excluded_moment_is_no_moment_of_the_backfill() -> None:
    spec = cron_spec("*/10 * * * *")
    spec["scheduleConfig"]["excludeCron"] = ["20 9 * * *"]
    cluster = Cluster(new_trigger(request(), spec=spec))
    block = cluster.until_settled()
    assert sorted(cluster.created) == sorted(names(minute(0), minute(10), minute(30), minute(40), minute(50)))
    assert block.total == 5


def test_an_interval_backfill_keeps_the_live_lattice() -> None:
    spec = interval_spec(600)
    status = live_status(since=at(minutes=-5), cursor=at(minutes=5))  # lattice ..., 09:55, 10:05
    cluster = Cluster(new_trigger(request(), spec=spec, status=status))
    cluster.until_settled()
    assert sorted(cluster.created) == sorted(names(*(minute(n) for n in (5, 15, 25, 35, 45))))


@pytest.mark.parametrize(("spec", "annotations", "error"), [
    pytest.param(MINUTELY, request(end=at(minutes=1)), f"{FIELD}.to: ", id="to-after-now"),
    pytest.param(cron_spec("* * * * *"), request(start=at(days=-7), end=at(minutes=-1)),
                 f"{FIELD}: the range holds more than {MAX_MOMENTS}", id="too-many-moments"),
    pytest.param({**MINUTELY, "triggerType": "event", "scheduleConfig": {"eventType": "deploy", "eventThreshold": 1}},
                 request(), f"{FIELD}: only cron and interval Triggers", id="event-trigger"),
    pytest.param(MINUTELY, {ANNOTATION_BACKFILL: "not json"}, f"{FIELD}: not JSON", id="unreadable"),
])
def test_a_refused_backfill_says_why_and_runs_nothing(spec: dict[str, Any], annotations: dict[str, str],
                                                      error: str) -> None:
    plan = reconcile(new_trigger(annotations, spec=spec), {}, {}, at())
    block = plan.status.backfill
    assert block is not None and block.state is BackfillState.REFUSED
    assert block.message is not None and block.message.startswith(error)
    assert not [new for new in plan.create if new.run.kind is RunKind.BACKFILL]
    assert "BackfillRefused" in {n.reason for n in plan.notices}
    again = reconcile(dataclasses.replace(new_trigger(annotations, spec=spec), status=plan.status), {}, {}, at())
    assert "BackfillRefused" not in {n.reason for n in again.notices}  # said once


def test_a_paused_trigger_holds_the_backfill_until_it_is_active() -> None:
    cluster = Cluster(new_trigger(request(), spec={**MINUTELY, "state": "paused"}))
    plan = cluster.step()
    assert plan.create == ()
    block = plan.status.backfill
    assert block is not None and block.state is BackfillState.RUNNING
    assert block.message == "waiting: the Trigger is Paused"


@pytest.mark.parametrize("policy", [ConcurrencyPolicy.FORBID, ConcurrencyPolicy.REPLACE])
def test_backfill_runs_are_outside_the_live_concurrency_policy(policy: ConcurrencyPolicy) -> None:
    spec = cron_spec("* * * * *", concurrencyPolicy=policy.value)
    backfill_run = ActiveRun(name=scheduled_job_name(NAME, minute(0)), kind=RunKind.BACKFILL,
                             scheduled_time=minute(0), fired_at=at(seconds=-30))
    status = live_status(since=at(minutes=-5), cursor=at(minutes=-1), active=(backfill_run,))
    jobs = {backfill_run.name: job_view(backfill_run.name, created_at=at(seconds=-30))}
    plan = reconcile(new_trigger({}, spec=spec, status=status), jobs, {}, at())
    assert [new.run.name for new in plan.create] == names(at())  # the live moment starts
    assert backfill_run in plan.status.active and backfill_run.name not in plan.delete
    assert plan.status.skipped_runs == 0


def test_status_keeps_the_backfill_block_and_ranges_through_the_api_form() -> None:
    block = Backfill(id="b1", state=BackfillState.RUNNING, start=minute(0), end=minute(59), parallelism=3,
                     total=60, started=4, cursor=minute(3), accepted_at=at(), message="1 running")
    status = TriggerStatus(backfill=block, backfilled_moments=((minute(0), minute(3)),),
                           missed_moments=((minute(40), minute(44)),), handled_moments=SPELLS)
    raw = status.to_dict()
    assert raw["backfill"]["from"] == format_time(minute(0)) and raw["missedMoments"] == [
        {"from": format_time(minute(40)), "to": format_time(minute(44))}]
    assert raw["handledMoments"][1] == {"from": format_time(minute(40)), "to": format_time(minute(50))}
    assert TriggerStatus.from_dict(json.loads(json.dumps(raw))) == status


def test_a_backfill_run_counts_in_its_block_once() -> None:
    block = Backfill(id="b1", state=BackfillState.RUNNING, start=minute(0), end=minute(59), accepted_at=at())
    mine = ActiveRun(name="x", kind=RunKind.BACKFILL, scheduled_time=minute(1), fired_at=at())
    older = dataclasses.replace(mine, fired_at=at(seconds=-1))  # a replaced request's run
    assert block.counted(mine, Outcome.SUCCEEDED).succeeded == 1
    assert block.counted(mine, Outcome.LOST).failed == 1
    assert block.counted(older, Outcome.SUCCEEDED) == block


# --- kubectl trigger backfill and describe ----------------------------------------------------------

class RecordingCluster:
    """Stands in for the plugin's `client.Cluster`: one Trigger, and the patches sent to it."""

    namespace = "team-a"
    annotations: ClassVar[dict[str, str]] = {}
    backfill_state: str | None = None
    patches: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        pass

    def trigger(self, namespace: str, name: str) -> dict[str, Any]:
        status = {"backfill": {"state": self.backfill_state}} if self.backfill_state else {}
        return {"metadata": {"name": name, "namespace": namespace, "annotations": self.annotations},
                "status": status}

    def patch_trigger(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(patch)
        return {"metadata": {"name": name, "namespace": namespace}}


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> type[RecordingCluster]:
    from trigger_operator.plugin import main
    RecordingCluster.patches = []
    RecordingCluster.annotations, RecordingCluster.backfill_state = {}, None
    monkeypatch.setattr(main, "Cluster", RecordingCluster)
    return RecordingCluster


def test_the_plugin_writes_a_new_request_with_its_parallelism(plugin: type[RecordingCluster],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from trigger_operator.plugin.main import main
    argv = ["backfill", NAME, "--from", "2026-03-02T09:00:00Z", "--to", "2026-03-02T09:59:00Z", "--parallel", "3"]
    assert main(argv) == 0 and main(argv) == 0
    first, second = (parse_request(p["metadata"]["annotations"][ANNOTATION_BACKFILL]) for p in plugin.patches)
    assert (first.start, first.end, first.parallelism, first.cancel) == (minute(0), minute(59), 3, False)
    assert first.id != second.id  # each command is a new backfill
    assert "describe" in capsys.readouterr().out


def test_the_plugin_cancels_the_running_request_under_its_id(plugin: type[RecordingCluster]) -> None:
    from trigger_operator.plugin.main import main
    plugin.annotations = request("b7")
    plugin.backfill_state = "Running"
    assert main(["backfill", NAME, "--cancel"]) == 0
    sent = parse_request(plugin.patches[0]["metadata"]["annotations"][ANNOTATION_BACKFILL])
    assert (sent.id, sent.cancel, sent.start) == ("b7", True, PAST_HOUR[0])
    plugin.backfill_state = "Complete"
    assert main(["backfill", NAME, "--cancel"]) == 1 and len(plugin.patches) == 1


@pytest.mark.parametrize("argv", [
    pytest.param(["backfill", NAME, "--from", "2026-03-02T09:00:00Z"], id="no-to"),
    pytest.param(["backfill", NAME, "--cancel", "--from", "2026-03-02T09:00:00Z"], id="cancel-and-range"),
    pytest.param(["backfill", NAME, "--from", "2026-03-02T09:00:00Z", "--to", "2999-01-01T00:00:00Z"], id="future"),
    pytest.param(["backfill", NAME, "--from", "2026-03-02T10:00:00Z", "--to", "2026-03-02T09:00:00Z"], id="reversed"),
    pytest.param(["backfill", NAME, "--from", "monday", "--to", "2026-03-02T09:00:00Z"], id="not-a-time"),
    pytest.param(["backfill", NAME, "--from", "2026-03-02T09:00:00Z", "--to", "2026-03-02T09:10:00Z",
                  "--parallel", "21"], id="parallel-21"),
])
def test_plugin_usage_errors_exit_2_and_write_nothing(argv: list[str], plugin: type[RecordingCluster]) -> None:
    from trigger_operator.plugin.main import main
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code == 2 and plugin.patches == []


def test_describe_shows_the_backfills_progress_and_the_missed_moments() -> None:
    from trigger_operator.plugin.views import backfill_lines
    block = Backfill(id="b1", state=BackfillState.RUNNING, start=minute(0), end=minute(59), parallelism=3,
                     total=60, started=20, skipped=2, succeeded=16, failed=1, cursor=minute(21), accepted_at=at())
    text = "\n".join(backfill_lines(TriggerStatus(backfill=block, missed_moments=((minute(40), minute(44)),))))
    assert "State:" in text and "Running" in text
    assert "17/58 finished (16 succeeded, 1 failed), 20 started, 2 had already run" in text
    assert f"{format_time(minute(40))} .. {format_time(minute(44))}" in text
    assert backfill_lines(TriggerStatus()) == []


def test_a_finished_trigger_still_backfills_the_moments_of_its_window() -> None:
    spec = cron_spec("*/10 * * * *")
    spec["scheduleConfig"]["endAt"] = format_time(minute(30))  # the window ended at 09:30
    cluster = Cluster(new_trigger(request(), spec=spec, status=live_status(since=at(hours=-2), cursor=at(hours=-2))))
    block = cluster.until_settled()
    assert cluster.trigger.status.phase is Phase.FINISHED
    assert block.state is BackfillState.COMPLETE
    # Its last pass ran 09:20 live (catchUpPolicy Latest) and recorded 08:10..09:10 as missed: the
    # backfill runs the missed 09:00 and 09:10 and passes over 09:20.
    assert sorted(cluster.created) == sorted(names(minute(0), minute(10), minute(20)))
    assert (block.total, block.started, block.skipped) == (3, 2, 1)


# --- what the live schedule handled (status.handledMoments) ------------------------------------------

def live_for(spec: Mapping[str, Any], created_minutes_ago: int) -> Cluster:
    """A Trigger created ``created_minutes_ago`` minutes before 10:00, with nothing run yet."""
    return Cluster(trigger_view(spec=spec, created_at=at(minutes=-created_minutes_ago), status=TriggerStatus()))


def live_minutes(cluster: Cluster, first: int, last: int, spec: Mapping[str, Any] | None = None) -> None:
    """Passes one second after each minute first..last (minutes before 10:00, negative), under ``spec``."""
    if spec is not None:
        cluster.trigger = dataclasses.replace(cluster.trigger, spec=dict(spec),
                                              generation=cluster.trigger.generation + 1)
    for n in range(first, last + 1):
        cluster.step(at(minutes=n, seconds=1))


def minutes(first: int, last: int) -> set[str]:
    """The Job names of the minutes first..last before 10:00."""
    return set(names(*(at(minutes=n) for n in range(first, last + 1))))


@pytest.mark.parametrize("interruption", [{"state": "paused"}, {"state": "disabled"}], ids=["pause", "disable"])
def test_a_backfill_after_a_pause_runs_no_moment_the_live_schedule_ran(interruption: dict[str, str]) -> None:
    # Created 08:30; live 08:31..09:30, interrupted 09:31..09:40 (activeSince moves at the resume),
    # live again 09:41..09:59; every Job pruned but the last.
    cluster = live_for(MINUTELY, 90)
    live_minutes(cluster, -89, -30)
    live_minutes(cluster, -29, -20, spec={**MINUTELY, **interruption})
    live_minutes(cluster, -19, -1, spec=MINUTELY)
    live = set(cluster.created)
    assert live == minutes(-89, -30) | minutes(-18, -1)
    status = cluster.trigger.status
    # Each spell from its first moment to its cursor (08:30 was missed: catchUpPolicy Latest).
    assert status.handled_moments == ((at(minutes=-90), at(minutes=-30)), (at(minutes=-18), at(minutes=-1)))
    assert status.missed_moments == ((at(minutes=-90), at(minutes=-90)),)
    cluster.annotate(request("b1", at(minutes=-90), at(minutes=-1), parallelism=20))
    block = cluster.until_settled()
    backfilled = [n for n in cluster.created[len(live):] if n not in names(at())]  # 10:00 is live
    assert not live & set(backfilled)
    # The missed 08:30 and what never ran live: 09:31..09:41 (09:41 came before the resume at 09:41:01).
    assert sorted(backfilled) == sorted(minutes(-90, -90) | minutes(-29, -19))
    assert (block.total, block.started, block.skipped) == (90, 12, 78)


def test_a_backfill_after_the_budget_runs_the_moments_that_never_ran() -> None:
    spec = cron_spec("* * * * *", successfulJobsHistoryLimit=1)
    spec["scheduleConfig"]["maxRuns"] = 1
    cluster = live_for(spec, 31)  # created 09:29
    live_minutes(cluster, -30, -21)  # 09:30 runs, then Finished
    assert cluster.trigger.status.phase is Phase.FINISHED and cluster.created == names(at(minutes=-30))
    cluster.annotate(request("b1", at(minutes=-31), at(minutes=-11), parallelism=5))
    block = cluster.until_settled()
    # 09:29 came before creation and 09:31..09:49 after the budget: none ran; 09:30 ran live.
    assert sorted(cluster.created[1:]) == sorted(minutes(-31, -31) | minutes(-29, -11))
    assert (block.started, block.skipped) == (20, 1)
    assert block.message is not None and "20 started, 1 had already run" in block.message


def test_moments_the_budget_passed_over_in_a_catch_up_are_not_handled() -> None:
    spec = cron_spec("* * * * *", catchUpPolicy="All", concurrencyPolicy="Allow")
    spec["scheduleConfig"]["maxRuns"] = 2
    status = live_status(since=minute(0), cursor=minute(0))
    plan = reconcile(new_trigger({}, spec=spec, status=status), {}, {}, minute(5))  # 09:01..09:05 due
    assert [new.run.name for new in plan.create] == names(minute(1), minute(2))
    assert plan.status.last_schedule_time == minute(5)
    assert plan.status.handled_moments == ((minute(0), minute(2)),)  # 09:03..09:05 never ran


def test_a_status_from_before_handled_moments_counts_its_spell_from_active_since() -> None:
    # As the operator left it before status.handledMoments existed: the rule then trusted activeSince.
    status = dataclasses.replace(live_status(since=minute(10), cursor=minute(30)), handled_moments=())
    plan = reconcile(new_trigger({}, status=status), {}, {}, minute(31))
    assert plan.status.handled_moments == ((minute(10), minute(31)),)


def test_handled_ranges_are_bounded_and_merge_towards_never_twice() -> None:
    cluster = live_for(MINUTELY, 200)
    for n in range(-199, -1, 4):  # 50 spells of two minutes, each paused for two
        live_minutes(cluster, n, n + 1, spec=MINUTELY)
        live_minutes(cluster, n + 2, n + 3, spec={**MINUTELY, "state": "paused"})
    handled = cluster.trigger.status.handled_moments
    assert len(handled) == 32
    live = set(cluster.created)
    assert all(within_any(m, handled) for m in (at(minutes=n) for n in range(-199, -1)) if names(m)[0] in live)


def within_any(moment: dt.datetime, ranges: tuple[tuple[dt.datetime, dt.datetime], ...]) -> bool:
    return any(a <= moment <= b for a, b in ranges)


# --- a malformed request never stops the live schedule ----------------------------------------------

BAD_REQUESTS = {
    "deep-json": ("[" * 100_000, f"{FIELD}: longer than 4096 bytes"),
    "deep-json-small": ("[" * 4_000, f"{FIELD}: not JSON (RecursionError)"),
    "year-1-offset": (json.dumps({"id": "b", "from": "0001-01-01T00:00:00+01:00", "to": "2026-03-02T09:00:00Z"}),
                      f"{FIELD}.from: must lie from 1970-01-01T00:00:00Z to before 9999-01-01T00:00:00Z"),
    "year-1-utc": (json.dumps({"id": "b", "from": "0001-01-01T00:00:00Z", "to": "2026-03-02T09:00:00Z"}),
                   f"{FIELD}.from: must lie from 1970"),
    "year-9999": (json.dumps({"id": "b", "from": "2026-03-02T09:00:00Z", "to": "9999-12-31T23:59:59-05:00"}),
                  f"{FIELD}.to: must lie from 1970"),
    "before-1970": (json.dumps({"id": "b", "from": "1969-12-31T23:00:00Z", "to": "2026-03-02T09:00:00Z"}),
                    f"{FIELD}.from: must lie from 1970"),
}


@pytest.mark.parametrize("spec", [MINUTELY, interval_spec(60)], ids=["cron", "interval"])
@pytest.mark.parametrize(("text", "error"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_malformed_request_is_refused_and_the_live_schedule_goes_on(spec: dict[str, Any], text: str,
                                                                       error: str) -> None:
    status = live_status(since=at(minutes=-10), cursor=at(minutes=-1))
    plan = reconcile(new_trigger({ANNOTATION_BACKFILL: text}, spec=spec, status=status), {}, {}, at(seconds=1))
    block = plan.status.backfill
    assert block is not None and block.state is BackfillState.REFUSED
    assert block.message is not None and block.message.startswith(error), block.message
    assert [new.run.kind for new in plan.create] == [RunKind.SCHEDULED]  # the live moment due now runs


def test_a_backfill_that_raises_is_refused_once_and_the_live_schedule_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for any defect the backfill's code may have: its part of the pass raises.
    from trigger_operator.core.firing import backfill

    def broken(*args: Any, **kwargs: Any) -> int:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(backfill, "count_moments", broken)
    status = live_status(since=at(minutes=-10), cursor=at(minutes=-1))
    trigger = new_trigger(request("b9"), status=status)
    plan = reconcile(trigger, {}, {}, at(seconds=1))
    assert [new.run.name for new in plan.create] == names(at())  # the live moment runs
    block = plan.status.backfill
    assert block is not None and (block.id, block.state) == ("b9", BackfillState.REFUSED)
    assert block.message == (f"{FIELD}: this backfill cannot run (OverflowError: date value out of range)")
    assert [n.reason for n in plan.notices if n.type == "Warning"] == ["BackfillRefused"]
    assert "BackfillStarted" not in {n.reason for n in plan.notices}  # put back with the rest of its draft
    again = reconcile(dataclasses.replace(trigger, status=plan.status), {}, {}, at(seconds=2))
    assert "BackfillRefused" not in {n.reason for n in again.notices}  # said once


# --- the REST API and the plugin answer a malformed request clearly ---------------------------------

class _Caller:
    """The Kubernetes API as the REST API's caller reaches it: one Trigger, read and merge-patched."""

    def __init__(self, annotations: dict[str, str], status: dict[str, Any] | None = None) -> None:
        self.trigger: dict[str, Any] = {"metadata": {"name": NAME, "namespace": "team-a", "annotations": annotations},
                                        "spec": MINUTELY, "status": status or {}}
        self.patches: list[Any] = []

    async def request(self, token: str, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                      params: Mapping[str, str] | None = None) -> Any:
        if method == "PATCH":
            self.patches.append(body)
            self.trigger["metadata"]["annotations"].update(body["metadata"]["annotations"])
        return self.trigger


def rest(caller: _Caller) -> TestClient:
    cluster = FakeCluster(clock=lambda: NOW)
    cluster.tokens["t0ken"] = Identity("alice")
    app = FastAPI()
    add_seed_routes(app, caller=caller, authorizer=Authorizer(cluster, ttl_seconds=60))
    return TestClient(app, raise_server_exceptions=False, headers={"Authorization": "Bearer t0ken",
                                                                   "X-Namespace": "team-a"})


@pytest.mark.parametrize(("text", "error"), [
    pytest.param(text, error, id=key) for key, (text, error) in BAD_REQUESTS.items()])
def test_rest_get_answers_a_malformed_request_as_refused_naming_the_field(text: str, error: str) -> None:
    answer = rest(_Caller({ANNOTATION_BACKFILL: text})).get(f"/v1/triggers/{NAME}/backfill")
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "refused" and answer.json()["message"].startswith(error)


def test_rest_get_answers_a_malformed_request_at_once_then_as_the_operator_took_it_in() -> None:
    text = json.dumps({"id": "b", "from": "0001-01-01T00:00:00Z", "to": "2026-03-02T09:00:00Z"})
    before = rest(_Caller({ANNOTATION_BACKFILL: text}, {"backfill": {"id": "a", "state": "Complete"}}))
    assert before.get(f"/v1/triggers/{NAME}/backfill").json() == {
        **before.get(f"/v1/triggers/{NAME}/backfill").json(), "backfill_id": "b", "state": "refused",
        "message": f"{FIELD}.from: must lie from 1970-01-01T00:00:00Z to before 9999-01-01T00:00:00Z"}
    status = {"backfill": {"id": "b", "state": "Refused", "message": f"{FIELD}: this backfill cannot run (x)"}}
    taken = rest(_Caller({ANNOTATION_BACKFILL: text}, status)).get(f"/v1/triggers/{NAME}/backfill")
    assert taken.json()["message"] == f"{FIELD}: this backfill cannot run (x)"


@pytest.mark.parametrize(("start", "end", "field"), [
    pytest.param("0001-01-01T00:00:00+01:00", "2026-03-02T09:00:00Z", "start_time", id="year-1-offset"),
    pytest.param("0001-01-01T00:00:00Z", "2026-03-02T09:00:00Z", "start_time", id="year-1-utc"),
    pytest.param("2026-03-02T09:00:00Z", "9999-12-31T23:59:59-05:00", "end_time", id="year-9999"),
])
def test_rest_post_refuses_a_time_out_of_range_with_a_422_naming_it(start: str, end: str, field: str) -> None:
    caller = _Caller({})
    answer = rest(caller).post(f"/v1/triggers/{NAME}/backfill", json={"start_time": start, "end_time": end})
    assert answer.status_code == 422, answer.text
    errors = answer.json()["error"]["details"]["errors"]
    assert errors[0]["loc"] == ["body", field] and errors[0]["msg"].startswith("must lie from 1970")
    assert caller.patches == []


@pytest.mark.parametrize("start", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "1969-12-31T00:00:00Z"])
def test_plugin_refuses_a_time_out_of_range_as_a_usage_error(start: str, plugin: type[RecordingCluster],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from trigger_operator.plugin.main import main
    assert main(["backfill", NAME, "--from", start, "--to", "2026-03-02T09:00:00Z"]) == 2
    assert "--from: must lie from 1970" in capsys.readouterr().err and plugin.patches == []


def test_plugin_cancel_of_a_malformed_request_says_why(plugin: type[RecordingCluster],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from trigger_operator.plugin.main import main
    plugin.annotations = {ANNOTATION_BACKFILL: "[" * 100_000}
    assert main(["backfill", NAME, "--cancel"]) == 1
    assert f"{FIELD}: longer than 4096 bytes" in capsys.readouterr().err and plugin.patches == []

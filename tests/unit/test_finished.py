"""The active window and the run budget (issue 22): a cron or interval Trigger whose budget
(``maxRuns``) is spent or whose window (``endAt``) ended is Finished, says which, and runs no
scheduled moment more; an edit that raises the budget or moves the window makes it Active again.

The Trigger is an hourly cron Trigger ("0 * * * *") created at 09:40 unless a test says otherwise,
so its first moment is 10:00, the anchor (as in test_reconcile.py).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import NAMESPACE, TRIGGER_NAME, at, cron_spec, interval_spec, job_view
from tests.unit.fake_cluster import Crash, FakeCluster
from tests.unit.test_controller import KEY, Clock, boot, counters, run
from tests.unit.test_reconcile import (
    CREATED,
    FIRST,
    SECOND,
    created,
    jobs,
    new_trigger,
    next_pass,
    ready,
    reasons,
)
from tests.unit.test_reconcile import run as active_run
from trigger_operator.api import ANNOTATION_RUN_NOW
from trigger_operator.cli import main as cli_main
from trigger_operator.core.plan import Plan
from trigger_operator.core.ready import budget_allows
from trigger_operator.core.reconcile import reconcile
from trigger_operator.jobs.observe import JobPhase
from trigger_operator.model.spec import parse_spec
from trigger_operator.model.status import Phase, RunKind, TriggerStatus, format_time
from trigger_operator.plugin import views
from trigger_operator.seed.mapping import seed_status
from trigger_operator.seed.models import SeedStatus


def budget(max_runs: int, expression: str = "0 * * * *", **fields: Any) -> dict[str, Any]:
    spec = cron_spec(expression, **fields)
    spec["scheduleConfig"]["maxRuns"] = max_runs
    return spec


def window(end: dt.datetime | None = None, start: dt.datetime | None = None, **fields: Any) -> dict[str, Any]:
    spec = cron_spec(**fields)
    if end is not None:
        spec["scheduleConfig"]["endAt"] = end.isoformat()
    if start is not None:
        spec["scheduleConfig"]["startAt"] = start.isoformat()
    return spec


def message(plan: Plan) -> str:
    [condition] = [c for c in plan.status.conditions if c.type == "Ready"]
    return condition.message


# --- the budget ----------------------------------------------------------------------------------


def test_the_last_run_of_the_budget_finishes_the_trigger_while_it_runs_and_is_counted_after() -> None:
    plan = reconcile(new_trigger(budget(1)), {}, {}, at(seconds=1))
    assert created(plan) == [FIRST] and plan.status.scheduled_runs == 1
    assert (plan.status.phase, plan.status.next_scheduled_at) == (Phase.FINISHED, None)
    assert ready(plan) == ("False", "Finished")
    assert message(plan) == "the run budget of 1 is spent (1 scheduled runs)"
    assert reasons(plan).count("Finished") == 1 and "PhaseChanged" not in reasons(plan)
    # The run goes on while Finished, and its result is counted; no Finished Event again.
    going = reconcile(next_pass(new_trigger(budget(1)), plan), jobs(job_view(FIRST)), {}, at(minutes=5))
    assert going.status.phase is Phase.FINISHED and [r.name for r in going.status.active] == [FIRST]
    assert "Finished" not in reasons(going) and going.create == ()
    done = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=6))
    counted = reconcile(next_pass(new_trigger(budget(1)), going), jobs(done), {}, at(minutes=7))
    assert (counted.status.execution_count, counted.status.active, counted.status.phase) == (1, (), Phase.FINISHED)
    later = reconcile(next_pass(new_trigger(budget(1)), counted), jobs(done), {}, at(hours=1, seconds=1))
    assert later.create == () and later.status.phase is Phase.FINISHED and later.status.scheduled_runs == 1


def test_a_catch_up_runs_only_what_the_budget_allows_and_the_rest_is_neither_run_nor_missed() -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=at(days=-1), last_schedule_time=at(hours=-3),
                           scheduled_runs=3)
    spec = budget(5, catchUpPolicy="All", concurrencyPolicy="Allow")
    plan = reconcile(new_trigger(spec, status=status), {}, {}, at(minutes=5))
    assert [r.scheduled_time for r in plan.status.active] == [at(hours=-2), at(hours=-1)]
    assert (plan.status.scheduled_runs, plan.status.missed_runs, plan.status.skipped_runs) == (5, 0, 0)
    assert plan.status.last_schedule_time == at()  # the third moment is passed over, not caught up later
    assert plan.status.phase is Phase.FINISHED and "MissedSchedule" not in reasons(plan)


def test_runs_that_are_not_the_schedules_own_are_not_counted() -> None:
    finished = TriggerStatus(phase=Phase.FINISHED, active_since=CREATED, last_schedule_time=at(), scheduled_runs=1)
    plan = reconcile(new_trigger(budget(1), status=finished, annotations={ANNOTATION_RUN_NOW: "t1"}), {}, {},
                     at(minutes=5))
    assert [r.kind for r in plan.status.active] == [RunKind.MANUAL]  # run-now still works
    assert plan.status.scheduled_runs == 1 and plan.status.phase is Phase.FINISHED


def test_a_moment_skipped_by_forbid_is_not_counted() -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at(),
                           active=(active_run(),), scheduled_runs=1)
    plan = reconcile(new_trigger(budget(2), status=status), jobs(job_view(FIRST)), {}, at(hours=1, seconds=1))
    assert plan.status.skipped_runs == 1 and plan.status.scheduled_runs == 1
    assert plan.status.phase is Phase.ACTIVE and plan.status.next_scheduled_at == at(hours=2)


def test_raising_the_budget_makes_it_active_from_then_without_resetting_the_count() -> None:
    finished = TriggerStatus(phase=Phase.FINISHED, active_since=CREATED, last_schedule_time=at(hours=1),
                             scheduled_runs=2, observed_generation=1)
    plan = reconcile(new_trigger(budget(3), status=finished, generation=2), {}, {}, at(hours=2, minutes=30))
    assert (plan.status.phase, plan.status.scheduled_runs) == (Phase.ACTIVE, 2)
    assert plan.create == ()  # 12:00 passed while it was finished: not caught up
    assert plan.status.next_scheduled_at == at(hours=3) and ready(plan) == ("True", "Scheduled")
    assert "PhaseChanged" in reasons(plan)


def test_a_new_schedule_does_not_reset_the_count() -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at(), scheduled_runs=2,
                           observed_schedule="cron 0 * * * * UTC")
    plan = reconcile(new_trigger(budget(3, "30 * * * *"), status=status, generation=2), {}, {}, at(minutes=31))
    assert "ScheduleChanged" in reasons(plan) and plan.status.scheduled_runs == 2


# --- the window ----------------------------------------------------------------------------------


def test_a_run_listed_before_the_window_ended_gets_its_job_after_it() -> None:
    # The 10:00 run was listed in status.active, then the operator stopped before the create.
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at(),
                           active=(active_run(),), scheduled_runs=1)
    plan = reconcile(new_trigger(window(end=at(seconds=30)), status=status), {}, {}, at(minutes=1))
    assert created(plan) == [FIRST]
    assert plan.status.phase is Phase.FINISHED and ready(plan) == ("False", "Finished")
    assert message(plan) == "the active window ended at 2026-03-02T10:00:30Z"


def test_a_moment_before_the_end_still_runs_when_the_pass_comes_after_it() -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at(hours=-1))
    plan = reconcile(new_trigger(window(end=at(seconds=30)), status=status), {}, {}, at(seconds=45))
    assert created(plan) == [FIRST] and plan.status.phase is Phase.FINISHED


def test_the_window_finishes_once_at_its_end_and_says_so_once() -> None:
    spec = window(end=at(minutes=30))
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at())
    before = reconcile(new_trigger(spec, status=status), {}, {}, at(minutes=5))
    assert before.status.phase is Phase.ACTIVE and ready(before) == ("True", "Scheduled")
    assert "finishes when it ends at 2026-03-02T10:30:00Z" in message(before)
    assert before.wake_at == at(minutes=30)
    ended = reconcile(next_pass(new_trigger(spec), before), {}, {}, at(minutes=30))
    assert ended.status.phase is Phase.FINISHED and reasons(ended) == ["Finished"]
    again = reconcile(next_pass(new_trigger(spec), ended), {}, {}, at(hours=1))
    assert again.status.phase is Phase.FINISHED and reasons(again) == [] and again.create == ()
    assert again.patch == {}  # nothing changes from pass to pass


def test_moving_the_end_later_makes_it_active_again_from_the_edit() -> None:
    ended = reconcile(new_trigger(window(end=at(minutes=30)), status=TriggerStatus(
        phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at())), {}, {}, at(hours=1, minutes=10))
    assert ended.status.phase is Phase.FINISHED
    extended = reconcile(next_pass(new_trigger(window(end=at(hours=5))), ended, generation=2), {}, {},
                         at(hours=1, minutes=20))
    assert extended.status.phase is Phase.ACTIVE and extended.create == ()  # 11:00 is not caught up
    assert extended.status.next_scheduled_at == at(hours=2) and "PhaseChanged" in reasons(extended)


def test_before_its_start_it_is_active_and_says_it_waits() -> None:
    plan = reconcile(new_trigger(window(start=at(hours=2, minutes=30))), {}, {}, at(minutes=-10))
    assert (plan.status.phase, plan.status.next_scheduled_at) == (Phase.ACTIVE, at(hours=3))
    assert ready(plan) == ("True", "Scheduled")
    assert message(plan) == "waits for startAt 2026-03-02T12:30:00Z: the first moment is 2026-03-02T13:00:00Z"


def test_a_trigger_applied_after_its_window_is_finished_at_once() -> None:
    plan = reconcile(new_trigger(window(end=at(minutes=-30))), {}, {}, at())
    assert plan.create == () and plan.status.phase is Phase.FINISHED
    assert message(plan) == "the active window ended at 2026-03-02T09:30:00Z"


def test_an_interval_trigger_with_a_budget() -> None:
    spec = interval_spec(60, concurrencyPolicy="Allow")
    spec["scheduleConfig"]["maxRuns"] = 2
    trigger = new_trigger(spec)
    plan = reconcile(trigger, {}, {}, CREATED + dt.timedelta(seconds=60))
    assert plan.status.scheduled_runs == 1 and plan.status.phase is Phase.ACTIVE
    for seconds, phase in [(120, Phase.FINISHED), (180, Phase.FINISHED)]:
        going = jobs(*(job_view(r.name) for r in plan.status.active))
        plan = reconcile(next_pass(trigger, plan), going, {}, CREATED + dt.timedelta(seconds=seconds))
        assert plan.status.phase is phase and plan.status.scheduled_runs == 2
    assert plan.create == () and len(plan.status.active) == 2


# --- the previews and the other views ------------------------------------------------------------


@pytest.mark.parametrize(("spec", "status", "found", "expected", "why"), [
    pytest.param(budget(5), TriggerStatus(scheduled_runs=3), [at(), at(hours=1), at(hours=2)],
                 [at(), at(hours=1)], "the run budget of 5 allows 2 more scheduled run(s) (3 started)", id="cut"),
    pytest.param(budget(5), TriggerStatus(scheduled_runs=1), [at(), at(hours=1)],
                 [at(), at(hours=1)], None, id="room-left"),
    pytest.param(budget(3), TriggerStatus(scheduled_runs=3), [at()], [],
                 "finished: the run budget of 3 is spent (3 scheduled runs); no moment will run", id="spent"),
    pytest.param(window(end=at(minutes=-1)), TriggerStatus(), [], [],
                 "finished: the active window ended at 2026-03-02T09:59:00Z; no moment will run", id="ended"),
    pytest.param(cron_spec(), TriggerStatus(scheduled_runs=99), [at()], [at()], None, id="no-budget"),
])
def test_the_previews_show_only_what_the_budget_allows(spec: dict[str, Any], status: TriggerStatus,
                                                       found: list[dt.datetime], expected: list[dt.datetime],
                                                       why: str | None) -> None:
    assert budget_allows(parse_spec(spec), status, found, at()) == (expected, why)


@pytest.mark.parametrize(("phase", "expected"), [
    (Phase.FINISHED, SeedStatus.DISABLED), (Phase.FAILED, SeedStatus.FAILED), (Phase.ACTIVE, SeedStatus.ACTIVE)])
def test_the_seed_api_reads_finished_as_disabled(phase: Phase, expected: SeedStatus) -> None:
    assert seed_status({"spec": {"state": "active"}, "status": {"phase": phase.value}}) is expected


# --- a crash between the status write and the create ---------------------------------------------


def test_a_crash_between_the_write_and_the_create_makes_one_job_counted_once() -> None:
    async def scenario() -> None:
        crashed_at = []
        for k in range(0, 12):
            clock = Clock(at(minutes=-20))
            cluster = FakeCluster(clock)
            cluster.apply_trigger(NAMESPACE, TRIGGER_NAME, budget(1))
            replica = boot(cluster, clock)
            await replica.settle()
            clock.now = at(seconds=1)
            cluster.calls_before_crash = k
            try:
                await replica.settle()
            except Crash:
                crashed_at.append(k)
                replica = boot(cluster, clock)
                await replica.settle()
            cluster.calls_before_crash = None
            clock.now = at(hours=1, seconds=1)
            await replica.settle()
            status = cluster.status(*KEY)
            assert cluster.created == [FIRST], f"crash before call {k}"
            assert (status["scheduledRuns"], status["phase"]) == (1, "Finished"), f"crash before call {k}"
            assert SECOND not in cluster.created and counters(cluster) == (0, 0, 0)
        assert len(crashed_at) >= 2, crashed_at  # the write-ahead and the create were both crashed before
    run(scenario)


def _object(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger",
            "metadata": {"name": TRIGGER_NAME, "namespace": NAMESPACE, "uid": "u1",
                         "creationTimestamp": format_time(CREATED)},
            "spec": spec, "status": status}


def test_kubectl_trigger_next_shows_what_the_budget_allows_and_nothing_when_finished() -> None:
    active = _object(budget(5), {"phase": "Active", "scheduledRuns": 3, "nextScheduledAt": format_time(at())})
    upcoming = views.upcoming(active, at(minutes=-5), 5)
    assert upcoming.moments == [at(), at(hours=1)]
    assert upcoming.limit == "the run budget of 5 allows 2 more scheduled run(s) (3 started)"
    finished = _object(budget(3), {"phase": "Finished", "scheduledRuns": 3})
    upcoming = views.upcoming(finished, at(minutes=-5), 5)
    assert (upcoming.moments, upcoming.note) == ([], None)
    assert upcoming.limit == "finished: the run budget of 3 is spent (3 scheduled runs); no moment will run"


def test_kubectl_trigger_describe_shows_the_budget() -> None:
    text = views.describe(_object(budget(30), {"phase": "Active", "scheduledRuns": 12}), [], [], at())
    assert "scheduled runs 12 of 30" in text
    assert "scheduled runs" not in views.describe(_object(cron_spec(), {"phase": "Active"}), [], [], at())


@pytest.mark.parametrize(("spec", "status", "out", "err"), [
    pytest.param(budget(3), {"scheduledRuns": 1}, ["2026-03-02T10:00:00+00:00", "2026-03-02T11:00:00+00:00"],
                 "note: the run budget of 3 allows 2 more scheduled run(s) (1 started)", id="cut"),
    pytest.param(budget(3), {"scheduledRuns": 3}, [],
                 "note: finished: the run budget of 3 is spent (3 scheduled runs); no moment will run", id="spent"),
    pytest.param(window(end=at(minutes=-30)), {}, [],
                 "note: finished: the active window ended at 2026-03-02T09:30:00Z; no moment will run", id="ended"),
])
def test_trigger_operator_next_of_a_manifest_applies_its_budget(
        spec: dict[str, Any], status: dict[str, Any], out: list[str], err: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "trigger.yaml"
    manifest.write_text(json.dumps(_object(spec, status)))
    assert cli_main(["next", "-f", str(manifest), "--after", format_time(at(minutes=-5)) or ""]) == 0
    printed, said = capsys.readouterr()
    assert printed.split() == out and said.strip() == err

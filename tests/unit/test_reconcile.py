"""The reconcile decision: given a Trigger, its Jobs and the time, what to write, create and delete.

Unless a test says otherwise the Trigger is an hourly cron Trigger ("0 * * * *") created at 09:40,
so its first moment is 10:00, the anchor.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import pytest

from tests.unit.conftest import (
    NAMESPACE,
    TRIGGER_NAME,
    at,
    cron_spec,
    interval_spec,
    job_template,
    job_view,
    trigger_view,
)
from trigger_operator.api import ANNOTATION_RESUME, ANNOTATION_RUN_NOW
from trigger_operator.conditions.evaluate import NO_CHECKS, OwnChecks, UnwrittenCheck, heartbeat, last_check
from trigger_operator.conditions.measure import Reading
from trigger_operator.core.plan import Plan
from trigger_operator.core.reconcile import reconcile
from trigger_operator.core.runs import CREATE_GRACE, announced_job
from trigger_operator.jobs.catalog import parse_sources
from trigger_operator.jobs.observe import JobPhase, JobView, Presence
from trigger_operator.jobs.render import manual_job_name, scheduled_job_name
from trigger_operator.model.notice import Notice
from trigger_operator.model.spec import ConditionSource, parse_spec, schedule_fingerprint
from trigger_operator.model.status import (
    CUT_MARKER,
    MESSAGE_MAX_CHARS,
    RECORDED_NUMBERS_MAX,
    STATUS_MAX_BYTES,
    ActiveRun,
    Execution,
    Outcome,
    Phase,
    RunKind,
    TriggerStatus,
    format_time,
    token_hash,
)
from trigger_operator.model.trigger import TriggerView

CREATED = at(minutes=-20)
FIRST = scheduled_job_name(TRIGGER_NAME, at())  # the run for the 10:00 moment
SECOND = scheduled_job_name(TRIGGER_NAME, at(hours=1))


def new_trigger(spec: Mapping[str, Any] | None = None, **view: Any) -> TriggerView:
    return trigger_view(spec=spec, created_at=CREATED, **view)


def run(name: str = FIRST, moment: dt.datetime | None = None, fired_at: dt.datetime | None = None,
        kind: RunKind = RunKind.SCHEDULED) -> ActiveRun:
    moment = at() if moment is None else moment
    return ActiveRun(name=name, kind=kind, scheduled_time=moment,
                     fired_at=moment if fired_at is None else fired_at)


def running_first(**status: Any) -> TriggerStatus:
    """The status after the 10:00 run was started: its Job is listed in status.active."""
    started = dict(active=(run(),), last_execution_task_id=FIRST, last_execution_status="Running")
    return TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at(), **{**started, **status})


def next_pass(trigger: TriggerView, plan: Plan, **changes: Any) -> TriggerView:
    """The Trigger as the next pass sees it: with the status the plan wrote."""
    return dataclasses.replace(trigger, status=plan.status, **changes)


def reasons(plan: Plan) -> list[str]:
    """The Events of a pass: its notices, then one JobCreated per Job it creates (posted once created)."""
    return [n.reason for n in plan.notices] + [new.notice.reason for new in plan.create]


def created(plan: Plan) -> list[str]:
    return [new.run.name for new in plan.create]


def ready(plan: Plan) -> tuple[str, str]:
    [condition] = [c for c in plan.status.conditions if c.type == "Ready"]
    return condition.status, condition.reason


def counters(plan: Plan) -> tuple[int, int, int]:
    """executionCount, failedExecutionCount and consecutiveFailures."""
    s = plan.status
    return s.execution_count, s.failed_execution_count, s.consecutive_failures


def jobs(*views: JobView) -> dict[str, JobView]:
    return {v.name: v for v in views}


# --- a new Trigger and its first moment -------------------------------------------------------------


def test_new_cron_trigger_before_its_first_moment_creates_no_job_and_says_when() -> None:
    plan = reconcile(new_trigger(), {}, {}, at(minutes=-10))
    assert plan.create == ()
    assert (plan.status.phase, plan.status.next_scheduled_at, plan.status.active_since) == (
        Phase.ACTIVE, at(), CREATED)
    assert ready(plan) == ("True", "Scheduled")
    assert plan.status.observed_generation == 1
    assert plan.wake_at == at()
    assert plan.notices == ()


@pytest.mark.parametrize("now", [
    pytest.param(at(), id="exactly-at-the-moment"),
    pytest.param(at(seconds=40), id="a-little-late"),
])
def test_at_its_moment_one_job_is_created_and_listed_as_active(now: dt.datetime) -> None:
    plan = reconcile(new_trigger(), {}, {}, now)
    assert created(plan) == [FIRST]
    assert plan.create[0].manifest["metadata"]["name"] == FIRST
    assert plan.status.active == (run(fired_at=now),)
    assert (plan.status.last_schedule_time, plan.status.next_scheduled_at) == (at(), at(hours=1))
    assert (plan.status.last_triggered_at, plan.status.last_execution_task_id) == (now, FIRST)
    assert reasons(plan) == ["JobCreated"]
    assert plan.create[0].notice.routine  # a scheduled run's creation is routine (status says it)
    assert plan.wake_at == at(hours=1)


def test_the_same_moment_is_not_run_twice_once_its_job_exists() -> None:
    trigger = new_trigger()
    first = reconcile(trigger, {}, {}, at())
    plan = reconcile(next_pass(trigger, first), jobs(job_view(FIRST)), {}, at(minutes=1))
    assert plan.create == ()
    assert plan.status.active == first.status.active


def test_a_job_is_made_from_the_catalog_template_when_the_trigger_has_none() -> None:
    spec = {k: v for k, v in cron_spec().items() if k != "jobTemplate"}
    catalog = {"cluster": {"spec": {"template": {"spec": {"containers": [{"name": "from-catalog"}]}}}}}
    plan = reconcile(new_trigger(spec), {}, catalog, at())
    assert [c["name"] for c in plan.create[0].manifest["spec"]["template"]["spec"]["containers"]] == [
        "from-catalog"]


# --- results of runs --------------------------------------------------------------------------------


def test_a_succeeded_job_is_counted_once_and_leaves_active() -> None:
    trigger = new_trigger(status=running_first(consecutive_failures=2))
    done = job_view(FIRST, JobPhase.SUCCEEDED, started_at=at(seconds=2), finished_at=at(minutes=3))
    plan = reconcile(trigger, jobs(done), {}, at(minutes=5))
    assert (plan.status.execution_count, plan.status.consecutive_failures, plan.status.active) == (1, 0, ())
    assert plan.status.last_successful_time == at(minutes=3)
    assert reasons(plan) == ["JobSucceeded"]
    assert not plan.notices[0].routine  # it ends a streak of failures: worth an Event
    again = reconcile(next_pass(trigger, plan), jobs(done), {}, at(minutes=6))
    assert again.status.execution_count == 1
    assert again.notices == ()


def test_a_failed_job_adds_a_consecutive_failure_and_records_the_jobs_message() -> None:
    failed = job_view(FIRST, JobPhase.FAILED, finished_at=at(minutes=3),
                      message="BackoffLimitExceeded: limit")
    trigger = new_trigger(status=running_first(consecutive_failures=1))
    plan = reconcile(trigger, jobs(failed), {}, at(minutes=5))
    assert (plan.status.failed_execution_count, plan.status.consecutive_failures) == (1, 2)
    assert plan.status.last_execution_error == "BackoffLimitExceeded: limit"
    assert plan.status.recent_executions[0].outcome is Outcome.FAILED
    assert reasons(plan) == ["JobFailed"]
    assert plan.status.phase is Phase.ACTIVE


def test_a_job_deleted_before_it_finished_counts_as_failed() -> None:
    deleted = job_view(FIRST, deleted=True)
    plan = reconcile(new_trigger(status=running_first()), jobs(deleted), {}, at(minutes=5))
    assert plan.status.consecutive_failures == 1
    assert plan.status.last_execution_error == f"Job {FIRST} was deleted before it finished"


@pytest.mark.parametrize(("now", "expected_created", "expected_active"), [
    pytest.param(at(minutes=1), [FIRST], [FIRST], id="soon-after-firing"),
    pytest.param(at() + CREATE_GRACE, [FIRST], [FIRST], id="at-the-end-of-the-grace-time"),
    pytest.param(at() + CREATE_GRACE + dt.timedelta(seconds=1), [], [], id="after-the-grace-time"),
])
def test_an_active_run_without_a_job_is_created_again_only_within_the_grace_time(
        now: dt.datetime, expected_created: list[str], expected_active: list[str]) -> None:
    plan = reconcile(new_trigger(status=running_first()), {}, {}, now)
    assert created(plan) == expected_created
    assert [r.name for r in plan.status.active] == expected_active


def test_a_recreated_run_is_looked_at_again_when_its_grace_time_ends() -> None:
    plan = reconcile(new_trigger(status=running_first()), {}, {}, at(minutes=1))
    assert plan.wake_at is not None
    assert at() + CREATE_GRACE < plan.wake_at <= at() + CREATE_GRACE + dt.timedelta(seconds=1)


def test_an_active_run_missing_past_the_grace_time_is_lost_and_changes_no_counter() -> None:
    plan = reconcile(new_trigger(status=running_first(consecutive_failures=1)), {}, {}, at(minutes=30))
    assert plan.create == ()
    assert plan.status.recent_executions[0].outcome is Outcome.LOST
    assert counters(plan) == (0, 0, 1)
    assert reasons(plan) == ["JobLost"]


# --- the failure limit ------------------------------------------------------------------------------

LIMIT_TWO = cron_spec(maxConsecutiveFailures=2)


def failed_second_time() -> Plan:
    failed = job_view(FIRST, JobPhase.FAILED, finished_at=at(minutes=3), message="exit code 1")
    return reconcile(new_trigger(LIMIT_TWO, status=running_first(consecutive_failures=1)), jobs(failed), {},
                     at(minutes=5))


def test_reaching_max_consecutive_failures_stops_the_trigger() -> None:
    plan = failed_second_time()
    assert (plan.status.phase, plan.status.failed_at_generation) == (Phase.FAILED, 1)
    assert plan.status.message == "stopped after 2 consecutive failures"
    assert ready(plan) == ("False", "FailureLimitReached")
    assert reasons(plan) == ["JobFailed", "FailureLimitReached", "PhaseChanged"]
    assert plan.status.next_scheduled_at is None


def test_a_failed_trigger_makes_no_job_at_later_moments() -> None:
    stopped = failed_second_time()
    plan = reconcile(next_pass(new_trigger(LIMIT_TWO), stopped), {}, {}, at(hours=1))
    assert (plan.create, plan.status.phase, plan.status.next_scheduled_at) == ((), Phase.FAILED, None)
    assert plan.notices == ()


@pytest.mark.parametrize(("changes", "phase"), [
    pytest.param({"generation": 2}, Phase.ACTIVE, id="a-spec-edit-resumes"),
    pytest.param({"annotations": {ANNOTATION_RESUME: "please"}}, Phase.ACTIVE,
                 id="a-new-resume-token-resumes"),
    pytest.param({}, Phase.FAILED, id="nothing-new-stays-failed"),
])
def test_a_failed_trigger_resumes_on_a_spec_edit_or_a_new_resume_token(changes: dict[str, Any],
                                                                       phase: Phase) -> None:
    stopped = failed_second_time()
    plan = reconcile(next_pass(new_trigger(LIMIT_TWO), stopped, **changes), {}, {}, at(minutes=30))
    assert plan.status.phase is phase
    assert plan.status.consecutive_failures == (0 if phase is Phase.ACTIVE else 2)


def test_a_resume_token_already_used_does_not_resume_again() -> None:
    status = dataclasses.replace(failed_second_time().status, last_resume_token="please")
    plan = reconcile(new_trigger(LIMIT_TWO, status=status, annotations={ANNOTATION_RESUME: "please"}), {}, {},
                     at(minutes=30))
    assert plan.status.phase is Phase.FAILED


def test_a_resumed_trigger_does_not_catch_up_the_moments_it_was_stopped_for() -> None:
    stopped = failed_second_time()
    resumed = next_pass(new_trigger(LIMIT_TWO), stopped, generation=2)
    plan = reconcile(resumed, {}, {}, at(hours=3, minutes=30))
    assert plan.create == ()
    assert (plan.status.missed_runs, plan.status.next_scheduled_at) == (0, at(hours=4))
    assert plan.status.active_since == at(hours=3, minutes=30)
    assert reasons(plan) == ["PhaseChanged"]


def test_max_consecutive_failures_of_zero_never_stops() -> None:
    failed = job_view(FIRST, JobPhase.FAILED, finished_at=at(minutes=3), message="exit code 1")
    trigger = new_trigger(cron_spec(maxConsecutiveFailures=0), status=running_first(consecutive_failures=99))
    plan = reconcile(trigger, jobs(failed), {}, at(minutes=5))
    assert (plan.status.phase, plan.status.consecutive_failures) == (Phase.ACTIVE, 100)


# --- paused and disabled ----------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "phase", "reason"), [
    pytest.param("paused", Phase.PAUSED, "Paused", id="paused"),
    pytest.param("disabled", Phase.DISABLED, "Disabled", id="disabled"),
])
def test_a_trigger_that_is_not_active_makes_no_job_and_has_no_next_moment(state: str, phase: Phase,
                                                                          reason: str) -> None:
    plan = reconcile(new_trigger(cron_spec(state=state)), {}, {}, at())
    assert (plan.create, plan.status.phase, plan.status.next_scheduled_at) == ((), phase, None)
    assert ready(plan) == ("False", reason)


def test_pausing_still_counts_the_result_of_a_running_job() -> None:
    done = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=3))
    trigger = new_trigger(cron_spec(state="paused"), status=running_first())
    plan = reconcile(trigger, jobs(done), {}, at(minutes=5))
    assert (plan.status.phase, plan.status.execution_count, plan.status.active) == (Phase.PAUSED, 1, ())


def test_resuming_from_paused_does_not_catch_up_moments_from_the_paused_period() -> None:
    paused = TriggerStatus(phase=Phase.PAUSED, active_since=CREATED, last_schedule_time=at())
    plan = reconcile(new_trigger(status=paused, generation=2), {}, {}, at(hours=5, minutes=30))
    assert plan.create == ()
    assert (plan.status.phase, plan.status.missed_runs, plan.status.next_scheduled_at) == (
        Phase.ACTIVE, 0, at(hours=6))
    assert reasons(plan) == ["PhaseChanged"]
    later = reconcile(next_pass(new_trigger(), plan), {}, {}, at(hours=6))
    assert created(later) == [scheduled_job_name(TRIGGER_NAME, at(hours=6))]


# --- concurrency policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "expected_active", "deleted", "skipped"), [
    pytest.param("Forbid", [FIRST], [], 1, id="forbid-skips-the-new-run"),
    pytest.param("Replace", [SECOND], [FIRST], 0, id="replace-deletes-the-running-job-for-the-new-one"),
    pytest.param("Allow", [FIRST, SECOND], [], 0, id="allow-runs-both"),
])
def test_a_moment_while_a_job_still_runs_follows_the_concurrency_policy(
        policy: str, expected_active: list[str], deleted: list[str], skipped: int) -> None:
    trigger = new_trigger(cron_spec(concurrencyPolicy=policy), status=running_first())
    plan = reconcile(trigger, jobs(job_view(FIRST)), {}, at(hours=1))
    assert [r.name for r in plan.status.active] == expected_active
    assert list(plan.delete) == deleted
    assert plan.status.skipped_runs == skipped
    assert plan.status.last_schedule_time == at(hours=1)


def test_forbid_tells_which_job_is_still_running() -> None:
    plan = reconcile(new_trigger(status=running_first()), jobs(job_view(FIRST)), {}, at(hours=1))
    assert plan.create == ()
    assert [(n.reason, FIRST in n.message) for n in plan.notices] == [("RunSkipped", True)]


def test_forbid_also_waits_for_a_running_job_that_status_does_not_list() -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at())
    plan = reconcile(new_trigger(status=status), jobs(job_view(FIRST)), {}, at(hours=1))
    assert (plan.create, plan.status.skipped_runs) == ((), 1)


def test_replace_records_the_old_run_as_replaced_without_counting_it() -> None:
    trigger = new_trigger(cron_spec(concurrencyPolicy="Replace"),
                          status=running_first(consecutive_failures=1))
    plan = reconcile(trigger, jobs(job_view(FIRST)), {}, at(hours=1))
    assert created(plan) == [SECOND]
    assert [(e.name, e.outcome) for e in plan.status.recent_executions] == [(FIRST, Outcome.REPLACED)]
    assert counters(plan) == (0, 0, 1)
    assert reasons(plan) == ["JobReplaced", "JobCreated"]


# --- run now ----------------------------------------------------------------------------------------

# Asked for at 09:50, before the first scheduled moment.
RUN_NOW = {ANNOTATION_RUN_NOW: "2026-03-02T09:50"}
MANUAL = manual_job_name(TRIGGER_NAME, "2026-03-02T09:50")
USED = token_hash("2026-03-02T09:50")
SEEN = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED)  # the operator has written status once


@pytest.mark.parametrize(("state", "expected"), [
    pytest.param("active", [MANUAL], id="active"),
    pytest.param("paused", [MANUAL], id="paused-still-runs-on-request"),
    pytest.param("disabled", [], id="disabled-runs-nothing"),
])
def test_a_run_now_annotation_makes_one_manual_job(state: str, expected: list[str]) -> None:
    plan = reconcile(new_trigger(cron_spec(state=state), annotations=RUN_NOW, status=SEEN), {}, {}, at(minutes=-10))
    assert created(plan) == expected


def test_a_token_a_new_trigger_carries_is_taken_as_used_but_one_given_after_an_edit_runs() -> None:
    """A manifest re-created with its last token runs nothing; a Trigger edited and then asked to run
    before the operator first saw it (the REST API's calls in a row) runs once."""
    fresh = reconcile(new_trigger(cron_spec(), annotations=RUN_NOW), {}, {}, at(minutes=-10))
    assert created(fresh) == [] and fresh.status.run_now_tokens == (USED,)
    edited = reconcile(new_trigger(cron_spec(), annotations=RUN_NOW, generation=4), {}, {}, at(minutes=-10))
    assert len(created(edited)) == 1 and edited.status.run_now_tokens == (USED,)


def test_a_run_now_token_given_while_disabled_is_used_up_without_a_run() -> None:
    trigger = new_trigger(cron_spec(state="disabled"), annotations=RUN_NOW,
                          status=dataclasses.replace(SEEN, phase=Phase.DISABLED))
    disabled = reconcile(trigger, {}, {}, at(minutes=-10))
    assert disabled.status.run_now_tokens == (USED,)
    assert reasons(disabled) == ["RunNowRefused"]
    enabled = reconcile(next_pass(trigger, disabled, spec=cron_spec(), generation=2), {}, {}, at(minutes=-5))
    assert created(enabled) == []  # enabling later does not start a run nobody asks for now


def test_a_manual_run_is_scheduled_for_now_and_labelled_manual() -> None:
    plan = reconcile(new_trigger(annotations=RUN_NOW, status=SEEN), {}, {}, at(minutes=-10))
    assert plan.status.active == (run(MANUAL, at(minutes=-10), kind=RunKind.MANUAL),)
    assert plan.status.run_now_tokens == (USED,)
    assert plan.create[0].manifest["metadata"]["labels"]["trigger-operator.io/run-kind"] == "manual"


def test_the_same_run_now_token_again_makes_no_second_job() -> None:
    trigger = new_trigger(annotations=RUN_NOW, status=SEEN)
    first = reconcile(trigger, {}, {}, at(minutes=-10))
    done = job_view(MANUAL, JobPhase.SUCCEEDED, finished_at=at(minutes=-8))
    plan = reconcile(next_pass(trigger, first), jobs(done), {}, at(minutes=-5))
    assert plan.create == ()
    assert plan.status.execution_count == 1


def test_a_run_now_whose_job_already_exists_only_records_the_token() -> None:
    plan = reconcile(new_trigger(annotations=RUN_NOW, status=SEEN), jobs(job_view(MANUAL)), {}, at(minutes=-10))
    assert (plan.create, plan.status.run_now_tokens) == ((), (USED,))


def test_tokens_used_before_run_nothing_when_they_come_back() -> None:
    # A, then B, then A again (Argo CD self-heal reverting a manual token to the one in Git).
    status = SEEN
    names = []
    for token in ("A", "B", "A", "B", "C"):
        plan = reconcile(new_trigger(annotations={ANNOTATION_RUN_NOW: token}, status=status), {}, {}, at(minutes=-10))
        names += created(plan)
        status = dataclasses.replace(plan.status, active=())
    assert names == [manual_job_name(TRIGGER_NAME, t) for t in ("A", "B", "C")]


def test_a_token_the_trigger_is_created_with_is_taken_as_used() -> None:
    # Re-created from Git with the annotation it had: running now would repeat the last manual run.
    first = reconcile(new_trigger(annotations=RUN_NOW), {}, {}, at(minutes=-10))
    assert created(first) == [] and first.status.run_now_tokens == (USED,)
    again = reconcile(next_pass(new_trigger(annotations=RUN_NOW), first), {}, {}, at(minutes=-9))
    assert created(again) == []


# --- invalid specs ----------------------------------------------------------------------------------

NO_TEMPLATE = {k: v for k, v in cron_spec().items() if k != "jobTemplate"}


@pytest.mark.parametrize(("spec", "field"), [
    pytest.param(cron_spec("61 * * * *"), "spec.scheduleConfig.cronExpression: minute field", id="bad-cron"),
    pytest.param(cron_spec(timezone="Mars/Base"),
                 "spec.scheduleConfig.timezone: unknown time zone 'Mars/Base'", id="unknown-time-zone"),
    pytest.param({**cron_spec(), "jobTemplate": {"spec": {}}}, "spec.jobTemplate: the Job template has no",
                 id="own-template-without-a-pod-spec"),
    pytest.param({**cron_spec(), "scheduleConfig": {}}, "spec.scheduleConfig.cronExpression: is required",
                 id="cron-without-an-expression"),
    pytest.param(interval_spec(0), "spec.scheduleConfig.intervalSeconds", id="interval-of-zero"),
    pytest.param({**cron_spec(), "actionType": "dance"}, "spec.actionType", id="unknown-action-type"),
    pytest.param({**cron_spec(), "concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy",
                 id="unknown-concurrency-policy"),
    pytest.param({**cron_spec(), "schedule": "0 * * * *"}, "spec.schedule: Extra inputs",
                 id="an-unknown-field"),
])
def test_an_invalid_spec_makes_no_job_and_names_the_field(spec: dict[str, Any], field: str) -> None:
    plan = reconcile(new_trigger(spec), {}, {}, at())
    assert plan.create == ()
    assert plan.status.message is not None
    assert plan.status.message.startswith(field)
    assert ready(plan) == ("False", "InvalidSpec")
    assert plan.status.next_scheduled_at is None
    assert reasons(plan) == ["InvalidConfiguration"]


def test_an_unusable_catalog_template_is_blamed_on_the_configmap() -> None:
    plan = reconcile(new_trigger(NO_TEMPLATE), {}, {"cluster": {"metadata": {}}}, at())
    assert plan.status.message == ("spec.actionType: the actions ConfigMap's 'cluster' template has no spec; "
                                   "the schedule keeps its place meanwhile")
    assert ready(plan) == ("False", "ActionTemplateMissing")


def test_a_missing_template_keeps_the_schedule_position_and_the_moment_runs_when_it_returns() -> None:
    # The hourly Trigger ran at 10:00; the catalog loses its key from 10:59 to 11:03.
    ran = dataclasses.replace(running_first(), active=(), observed_schedule="cron 0 * * * * UTC")
    spec = {**NO_TEMPLATE, "startingDeadlineSeconds": 600}
    missing = reconcile(new_trigger(spec, status=ran), {}, {}, at(hours=1, minutes=1))
    assert created(missing) == [] and missing.status.phase is Phase.ACTIVE
    assert ready(missing) == ("False", "ActionTemplateMissing")
    assert (missing.status.last_schedule_time, missing.status.active_since) == (at(), CREATED)
    assert missing.status.next_scheduled_at == at(hours=2)
    back = reconcile(next_pass(new_trigger(spec), missing), {}, {"cluster": job_template()}, at(hours=1, minutes=3))
    assert created(back) == [SECOND]
    assert back.status.missed_runs == 0 and ready(back) == ("True", "Scheduled")


def test_a_moment_past_its_deadline_while_the_template_was_missing_counts_as_missed() -> None:
    ran = dataclasses.replace(running_first(), active=(), observed_schedule="cron 0 * * * * UTC")
    spec = {**NO_TEMPLATE, "startingDeadlineSeconds": 60}
    missing = reconcile(new_trigger(spec, status=ran), {}, {}, at(hours=1, minutes=1))
    back = reconcile(next_pass(new_trigger(spec), missing), {}, {"cluster": job_template()}, at(hours=1, minutes=3))
    assert created(back) == []
    assert back.status.missed_runs == 1 and "MissedSchedule" in reasons(back)


def test_a_tz_prefix_in_the_expression_is_blamed_on_the_expression() -> None:
    plan = reconcile(new_trigger(cron_spec("TZ=Europe/Berlin 0 2 * * *")), {}, {}, at())
    assert plan.status.message is not None
    assert plan.status.message.startswith("spec.scheduleConfig.cronExpression: ")


@pytest.mark.parametrize(("previous_message", "notices"), [
    pytest.param(None, ["InvalidConfiguration"], id="newly-invalid"),
    pytest.param("spec.scheduleConfig.timezone: something else", ["InvalidConfiguration"],
                 id="invalid-for-another-reason"),
    pytest.param("spec.scheduleConfig.cronExpression: minute field: 61 in '61' is above the maximum 59", [],
                 id="the-same-message-again"),
])
def test_invalid_configuration_is_announced_only_when_the_message_changes(previous_message: str | None,
                                                                          notices: list[str]) -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, message=previous_message)
    plan = reconcile(new_trigger(cron_spec("61 * * * *"), status=status), {}, {}, at())
    assert reasons(plan) == notices


def test_a_spec_fixed_later_runs_from_then_on_without_catching_up() -> None:
    broken = new_trigger(cron_spec("61 * * * *"))
    invalid = reconcile(broken, {}, {}, at(minutes=-10))
    fixed = next_pass(broken, invalid, spec=cron_spec("0 * * * *"), generation=2)
    # Fixed at 12:05: the 10:00, 11:00 and 12:00 moments passed while it could not run.
    plan = reconcile(fixed, {}, {}, at(hours=2, minutes=5))
    assert created(plan) == []
    assert plan.status.next_scheduled_at == at(hours=3)
    assert plan.status.missed_runs == 0


def test_an_invalid_spec_still_counts_a_finished_run() -> None:
    done = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=3))
    trigger = new_trigger(cron_spec("61 * * * *"), status=running_first())
    plan = reconcile(trigger, jobs(done), {}, at(minutes=5))
    assert (plan.status.execution_count, plan.status.active) == (1, ())


def test_an_invalid_spec_does_not_recreate_a_missing_job() -> None:
    plan = reconcile(new_trigger(cron_spec("61 * * * *"), status=running_first()), {}, {}, at(minutes=1))
    assert plan.create == ()
    assert plan.status.active == (run(),)


def test_fixing_the_spec_clears_the_message() -> None:
    broken = reconcile(new_trigger(cron_spec("61 * * * *")), {}, {}, at(minutes=-10))
    plan = reconcile(next_pass(new_trigger(), broken, generation=2), {}, {}, at(minutes=-5))
    assert (plan.status.message, ready(plan), plan.status.observed_generation) == (
        None, ("True", "Scheduled"), 2)


# --- interval Triggers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("start_immediately", "now", "expected"), [
    pytest.param(True, CREATED, [scheduled_job_name(TRIGGER_NAME, CREATED)],
                 id="start-immediately-runs-at-creation"),
    pytest.param(False, CREATED, [], id="otherwise-nothing-at-creation"),
    pytest.param(False, CREATED + dt.timedelta(seconds=90),
                 [scheduled_job_name(TRIGGER_NAME, CREATED + dt.timedelta(seconds=90))],
                 id="otherwise-one-period-after-creation"),
])
def test_an_interval_trigger_runs_from_its_creation(start_immediately: bool, now: dt.datetime,
                                                    expected: list[str]) -> None:
    plan = reconcile(new_trigger(interval_spec(90, start_immediately=start_immediately)), {}, {}, now)
    assert created(plan) == expected


def test_an_interval_trigger_stays_on_its_lattice_after_a_late_pass() -> None:
    spec = interval_spec(90, concurrencyPolicy="Allow")
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=CREATED)
    plan = reconcile(new_trigger(spec, status=status), {}, {}, CREATED + dt.timedelta(seconds=100))
    assert [r.scheduled_time for r in plan.status.active] == [CREATED + dt.timedelta(seconds=90)]
    assert plan.status.next_scheduled_at == CREATED + dt.timedelta(seconds=180)


# --- downtime and catching up -----------------------------------------------------------------------

# Active since yesterday; the operator last looked at 07:00 and is back at 10:05.
AFTER_DOWNTIME = TriggerStatus(phase=Phase.ACTIVE, active_since=at(days=-1), last_schedule_time=at(hours=-3))


@pytest.mark.parametrize(("fields", "expected_moments", "missed", "skipped"), [
    pytest.param({}, [at()], 2, 0, id="latest-runs-the-last-moment-and-counts-the-rest-missed"),
    pytest.param({"catchUpPolicy": "All", "concurrencyPolicy": "Allow"},
                 [at(hours=-2), at(hours=-1), at()], 0, 0, id="all-runs-one-job-per-missed-moment"),
    pytest.param({"catchUpPolicy": "All"}, [at(hours=-2)], 0, 2,
                 id="all-with-forbid-runs-the-oldest-and-skips-the-rest"),
    pytest.param({"startingDeadlineSeconds": 60}, [], 3, 0, id="a-deadline-passed-runs-nothing"),
    pytest.param({"startingDeadlineSeconds": 600}, [at()], 2, 0, id="within-the-deadline-runs-the-last"),
])
def test_after_downtime_the_catch_up_policy_decides(fields: dict[str, Any],
                                                    expected_moments: list[dt.datetime],
                                                    missed: int, skipped: int) -> None:
    plan = reconcile(new_trigger(cron_spec(**fields), status=AFTER_DOWNTIME), {}, {}, at(minutes=5))
    assert [r.scheduled_time for r in plan.status.active] == expected_moments
    assert (plan.status.missed_runs, plan.status.skipped_runs) == (missed, skipped)
    assert plan.status.last_schedule_time == at()
    assert ("MissedSchedule" in reasons(plan)) is (missed > 0)


def test_a_backlog_beyond_one_pass_asks_to_come_back_at_once() -> None:
    spec = cron_spec("* * * * *", catchUpPolicy="All", concurrencyPolicy="Allow")
    plan = reconcile(new_trigger(spec, status=AFTER_DOWNTIME), {}, {}, at())
    assert len(plan.create) == 100
    assert plan.status.last_schedule_time == at(hours=-3, minutes=100)
    assert plan.wake_at == at()


# --- history ----------------------------------------------------------------------------------------


def test_finished_jobs_beyond_the_history_limits_are_deleted_oldest_first() -> None:
    finished = jobs(
        *(job_view(f"old-{i}", JobPhase.SUCCEEDED, finished_at=at(hours=-i)) for i in range(1, 6)),
        *(job_view(f"bad-{i}", JobPhase.FAILED, finished_at=at(hours=-i)) for i in range(1, 3)))
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_schedule_time=at())
    plan = reconcile(new_trigger(status=status), finished, {}, at(minutes=5))
    assert list(plan.delete) == ["old-5", "old-4", "bad-2"]


def test_a_finished_job_is_pruned_only_after_it_is_counted() -> None:
    done = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=3))
    spec = cron_spec(successfulJobsHistoryLimit=0)
    plan = reconcile(new_trigger(spec, status=running_first()), jobs(done), {}, at(minutes=5))
    assert (plan.status.execution_count, list(plan.delete)) == (1, [FIRST])


# --- event Triggers ---------------------------------------------------------------------------------

EVENT: dict[str, Any] = {"actionType": "collection_trigger", "triggerType": "event", "jobTemplate": job_template(),
                         "scheduleConfig": {"eventType": "document_added", "eventThreshold": 10}}


CONDITIONAL: dict[str, Any] = {
    "actionType": "cluster", "triggerType": "conditional", "jobTemplate": job_template(),
    "scheduleConfig": {"conditionType": "drift", "metric": "absolute_drift", "threshold": 0.3,
                       "checkIntervalSeconds": 60,
                       "source": {"configMap": {"name": "embedding-stats", "key": "centroid_shift"}}}}


def test_an_event_trigger_below_its_threshold_waits_and_runs_on_request() -> None:
    idle = reconcile(new_trigger(EVENT), {}, {}, at())
    assert (idle.create, idle.status.next_scheduled_at) == ((), None)
    assert ready(idle) == ("True", "Scheduled")
    assert idle.status.conditions[0].message == "0 of 10 document_added events counted"
    asked = reconcile(new_trigger(EVENT, annotations=RUN_NOW, status=idle.status), {}, {}, at())
    assert created(asked) == [MANUAL]


def counted(n: int, **status: Any) -> TriggerStatus:
    return TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, event_counter=n,
                         observed_schedule="event document_added x10", **status)


def event_spec(**config: Any) -> dict[str, Any]:
    return {**EVENT, "scheduleConfig": {**EVENT["scheduleConfig"], **config}}


def test_an_event_trigger_fires_once_at_its_threshold_and_keeps_the_surplus() -> None:
    plan = reconcile(new_trigger(EVENT, status=counted(13)), {}, {}, at())
    assert created(plan) == [f"{TRIGGER_NAME}-e1"]
    assert (plan.status.event_counter, plan.status.event_firings, plan.status.last_cooldown_at) == (3, 1, at())
    assert plan.status.active[0].kind is RunKind.EVENT
    assert plan.create[0].manifest["metadata"]["labels"]["trigger-operator.io/run-kind"] == "event"
    # The counter and the firing are in the same write as the run: the next pass makes nothing more.
    again = reconcile(next_pass(new_trigger(EVENT), plan), {}, {}, at(seconds=1))
    assert created(again) == [f"{TRIGGER_NAME}-e1"]  # the run's Job, created again only as the same name
    assert (again.status.event_counter, again.status.event_firings) == (3, 1)


def test_an_event_trigger_waits_for_its_cooldown_then_fires() -> None:
    status = counted(10, last_cooldown_at=at(minutes=-2), event_firings=4)
    early = reconcile(new_trigger(event_spec(cooldownSeconds=300), status=status), {}, {}, at())
    assert created(early) == [] and early.wake_at == at(minutes=3) and early.status.next_scheduled_at == at(minutes=3)
    late = reconcile(new_trigger(event_spec(cooldownSeconds=300), status=status), {}, {}, at(minutes=3))
    assert created(late) == [f"{TRIGGER_NAME}-e5"]


@pytest.mark.parametrize(("state", "fires"), [pytest.param("paused", False, id="paused-counts-but-waits"),
                                              pytest.param("active", True, id="active")])
def test_a_paused_event_trigger_keeps_its_count_and_fires_when_resumed(state: str, fires: bool) -> None:
    plan = reconcile(new_trigger(event_spec() | {"state": state}, status=counted(12)), {}, {}, at())
    assert bool(plan.create) is fires
    assert plan.status.event_counter == (2 if fires else 12)


def test_under_forbid_a_firing_waits_for_the_running_job_without_spending_events() -> None:
    running = counted(10, active=(run(f"{TRIGGER_NAME}-e1", kind=RunKind.EVENT),), event_firings=1)
    plan = reconcile(new_trigger(EVENT, status=running), jobs(job_view(f"{TRIGGER_NAME}-e1")), {}, at(seconds=5))
    assert created(plan) == [] and plan.status.event_counter == 10
    done = job_view(f"{TRIGGER_NAME}-e1", JobPhase.SUCCEEDED, finished_at=at(seconds=6))
    after = reconcile(new_trigger(EVENT, status=running), jobs(done), {}, at(seconds=7))
    assert created(after) == [f"{TRIGGER_NAME}-e2"] and after.status.execution_count == 1


def test_under_replace_a_firing_records_the_replaced_run_once() -> None:
    """The firing's status must start from the draft make_room left: the run it replaced leaves
    status.active as Replaced, and is not counted again (as a failure) on the next pass."""
    first = f"{TRIGGER_NAME}-e1"
    running = counted(10, active=(run(first, kind=RunKind.EVENT),), event_firings=1)
    trigger = new_trigger(EVENT | {"concurrencyPolicy": "Replace"}, status=running)
    plan = reconcile(trigger, jobs(job_view(first)), {}, at(seconds=5))
    assert created(plan) == [f"{TRIGGER_NAME}-e2"] and plan.delete == (first,)
    assert [r.name for r in plan.status.active] == [f"{TRIGGER_NAME}-e2"]
    assert [(e.name, e.outcome) for e in plan.status.recent_executions] == [(first, Outcome.REPLACED)]
    deleted = job_view(first, JobPhase.FAILED, finished_at=at(seconds=6))
    after = reconcile(next_pass(trigger, plan), jobs(deleted, job_view(f"{TRIGGER_NAME}-e2")), {}, at(seconds=7))
    assert (after.status.failed_execution_count, after.status.consecutive_failures) == (0, 0)
    assert [e.name for e in after.status.recent_executions] == [first]


def test_a_window_drops_old_events_and_wakes_when_the_oldest_leaves() -> None:
    window = event_spec(windowSeconds=600)  # buckets of 10 s
    start = int(at(minutes=-9).timestamp())
    status = counted(9, event_window=((start, 4), (int(at(minutes=-1).timestamp()), 5)))
    plan = reconcile(new_trigger(window, status=status), {}, {}, at())
    assert plan.status.event_counter == 9 and plan.wake_at == at(minutes=1, seconds=10)
    later = reconcile(new_trigger(window, status=status), {}, {}, at(minutes=1, seconds=10))
    assert later.status.event_counter == 5 and later.status.event_window == ((int(at(minutes=-1).timestamp()), 5),)


DRIFT_SCHEDULE = "drift absolute_drift > 0.3 every 60s"  # the observedSchedule of CONDITIONAL


def conditional(**config: Any) -> dict[str, Any]:
    return {**CONDITIONAL, "scheduleConfig": {**CONDITIONAL["scheduleConfig"], **config}}


def checked(trigger: TriggerView, value: Any, at_: dt.datetime, **kw: Any) -> Plan:
    return reconcile(trigger, kw.pop("jobs", {}), {}, at_, Reading(at=at_, raw=value), **kw)


def test_a_conditional_trigger_asks_for_a_check_when_one_is_due_and_wakes_for_the_next() -> None:
    first = reconcile(new_trigger(CONDITIONAL), {}, {}, at())
    assert first.check is not None and first.check.config_map is not None
    assert first.check.config_map.name == "embedding-stats"
    after = checked(next_pass(new_trigger(CONDITIONAL), first), "0.5", at())
    assert after.check is None and after.wake_at == at(minutes=1)
    assert after.status.last_condition_check_at == at()


def test_drift_sets_a_baseline_first_fires_past_the_threshold_and_moves_it_after_success() -> None:
    trigger = new_trigger(CONDITIONAL)
    base = checked(trigger, "[1.0, 2.0]", at())
    assert base.status.baseline_snapshot == {"value": [1.0, 2.0], "capturedAt": "2026-03-02T10:00:00Z"}
    assert created(base) == []
    small = checked(next_pass(trigger, base), "[1.1, 2.0]", at(minutes=1))  # drift 0.1
    assert created(small) == [] and small.status.last_drift_measurement is not None
    assert small.status.last_drift_measurement["exceeded"] is False
    big = checked(next_pass(trigger, small), "[1.0, 2.5]", at(minutes=2))  # drift 0.5 > 0.3
    assert created(big) == [f"{TRIGGER_NAME}-c1"] and big.status.active[0].kind is RunKind.CONDITION
    measured = big.status.last_drift_measurement
    assert measured is not None and measured["exceeded"] is True and measured["drift"] == pytest.approx(0.5)
    assert (big.status.condition_armed, big.status.condition_fired_value) == (False, [1.0, 2.5])
    still = checked(next_pass(trigger, big), "[1.0, 2.6]", at(minutes=3))
    assert [c for c in created(still) if c != f"{TRIGGER_NAME}-c1"] == []  # still exceeded: no second run
    done = job_view(f"{TRIGGER_NAME}-c1", JobPhase.SUCCEEDED, finished_at=at(minutes=3, seconds=30))
    after = reconcile(next_pass(trigger, still), jobs(done), {}, at(minutes=3, seconds=31))
    assert after.status.baseline_snapshot == {"value": [1.0, 2.5], "capturedAt": "2026-03-02T10:03:30Z"}
    assert after.status.execution_count == 1 and after.status.condition_fired_value is None
    rearmed = checked(next_pass(trigger, after), "[1.0, 2.6]", at(minutes=4))  # 0.1 from the new baseline
    assert rearmed.status.condition_armed is True and created(rearmed) == []


def test_a_failed_run_keeps_the_baseline_and_does_not_fire_again_while_the_drift_holds() -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, observed_schedule=DRIFT_SCHEDULE,
                           baseline_snapshot={"value": 1.0}, condition_armed=False, condition_firings=1,
                           condition_fired_value=2.0, last_condition_check_at=at(minutes=-1),
                           active=(run(f"{TRIGGER_NAME}-c1", kind=RunKind.CONDITION),))
    failed = job_view(f"{TRIGGER_NAME}-c1", JobPhase.FAILED, finished_at=at(seconds=-10), message="boom")
    plan = checked(new_trigger(CONDITIONAL, status=status), 2.0, at(), jobs=jobs(failed))
    assert plan.status.baseline_snapshot == {"value": 1.0} and plan.status.failed_execution_count == 1
    assert created(plan) == []


@pytest.mark.parametrize(("values", "runs"), [
    pytest.param(["5", "12", "15", "20"], 1, id="stays-above-one-run"),
    pytest.param(["5", "12", "8", "13"], 2, id="down-and-up-again-two-runs"),
    pytest.param(["12"], 1, id="true-at-the-first-check"),
])
def test_a_threshold_fires_when_it_becomes_true_not_while_it_stays_true(values: list[str], runs: int) -> None:
    spec = conditional(conditionType="threshold", metric="queue_depth", threshold=10, comparison=">")
    trigger, fired, status = new_trigger(spec), [], TriggerStatus()
    for i, value in enumerate(values):
        plan = checked(dataclasses.replace(trigger, status=status), value, at(minutes=i))
        fired += [c for c in created(plan) if c not in fired]
        status = dataclasses.replace(plan.status, active=())  # each run ends at once
    assert len(fired) == runs


def test_a_cooldown_holds_a_firing_back_and_it_fires_at_the_next_check_after() -> None:
    spec = conditional(conditionType="threshold", metric="q", threshold=10, cooldownSeconds=300)
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, last_cooldown_at=at(minutes=-2),
                           condition_armed=True, last_condition_check_at=at(minutes=-1))
    early = checked(new_trigger(spec, status=status), 11, at())
    assert created(early) == [] and early.status.condition_armed is True
    late = checked(next_pass(new_trigger(spec), early), 11, at(minutes=3))
    assert created(late) == [f"{TRIGGER_NAME}-c1"]


def test_a_failing_source_is_recorded_backed_off_and_recovers() -> None:
    trigger = new_trigger(CONDITIONAL)
    plan = reconcile(trigger, {}, {}, at(), Reading(at=at(), error="ConfigMap team-a/embedding-stats does not exist"))
    assert plan.status.source_errors == 1 and ready(plan) == ("False", "SourceFailing")
    assert plan.status.last_drift_measurement is not None
    assert plan.status.last_drift_measurement["error"] == "ConfigMap team-a/embedding-stats does not exist"
    again = reconcile(next_pass(trigger, plan), {}, {}, at(minutes=1), Reading(at=at(minutes=1), error="still"))
    assert again.status.source_errors == 2 and again.wake_at == at(minutes=3)  # 60 s, then 120 s
    back = checked(next_pass(trigger, again), "0.5", at(minutes=3))
    assert back.status.source_errors == 0 and ready(back) == ("True", "Scheduled")


@pytest.mark.parametrize(("value", "says"), [
    pytest.param("high", "neither a number nor a JSON list", id="not-a-number"),
    pytest.param("[]", "a non-empty list of numbers", id="empty-list"),
    pytest.param("[1, 2, 3]", "different shapes", id="vector-against-a-number-baseline"),
])
def test_a_value_that_means_nothing_is_a_recorded_error(value: str, says: str) -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, baseline_snapshot={"value": 1.0})
    plan = checked(new_trigger(CONDITIONAL, status=status), value, at())
    assert plan.status.last_drift_measurement is not None and says in plan.status.last_drift_measurement["error"]
    assert created(plan) == []


def test_a_paused_conditional_trigger_checks_but_fires_once_resumed() -> None:
    spec = conditional(conditionType="threshold", metric="q", threshold=10) | {"state": "paused"}
    paused = checked(new_trigger(spec), 11, at())
    assert created(paused) == [] and paused.status.condition_armed is not False
    resumed = checked(next_pass(new_trigger(conditional(conditionType="threshold", metric="q", threshold=10)),
                                paused, generation=2), 12, at(minutes=1))
    assert created(resumed) == [f"{TRIGGER_NAME}-c1"]


@pytest.mark.parametrize(("config", "field"), [
    pytest.param({"metric": "euclid"}, "spec.scheduleConfig.metric", id="unknown-drift-metric"),
    pytest.param({"source": {}}, "spec.scheduleConfig.source", id="no-source-kind"),
    pytest.param({"source": {"configMap": {"name": "a", "key": "b"}, "http": {"url": "http://x"}}},
                 "spec.scheduleConfig.source", id="two-source-kinds"),
    pytest.param({"source": {"http": {"url": "ftp://x"}}}, "spec.scheduleConfig.source.http.url", id="not-http"),
    pytest.param({"source": {"object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "fieldPath": "a..b"}}},
                 "spec.scheduleConfig.source.object.fieldPath", id="bad-field-path"),
    pytest.param({"comparison": "~"}, "spec.scheduleConfig.comparison", id="unknown-comparison"),
])
def test_a_bad_condition_is_refused_naming_the_field(config: dict[str, Any], field: str) -> None:
    plan = reconcile(new_trigger(conditional(**config)), {}, {}, at())
    assert plan.status.message is not None and plan.status.message.startswith(field), plan.status.message


def test_replace_does_not_create_again_the_job_of_the_run_it_replaces() -> None:
    status = dataclasses.replace(running_first(), active=(run(fired_at=at(minutes=58)),))
    plan = reconcile(new_trigger(cron_spec(concurrencyPolicy="Replace"), status=status), {}, {}, at(hours=1))
    assert list(plan.delete) == [FIRST]
    assert created(plan) == [SECOND]


# --- runs whose Job was seen, schedule edits, Replace backlogs -----------------------------------------

def test_seeing_a_runs_job_writes_nothing_and_keeps_its_finalizer() -> None:
    # No write per Job seen: the finalizer, not a recorded uid, keeps the Job from vanishing unseen.
    trigger = new_trigger(status=running_first())
    settled = reconcile(trigger, {}, {}, at(seconds=1))
    plan = reconcile(next_pass(trigger, settled), jobs(job_view(FIRST)), {}, at(seconds=5))
    assert (plan.patch, plan.create, plan.release, plan.delete) == ({}, (), (), ())


def test_a_finished_run_is_counted_and_its_job_released_in_the_same_pass() -> None:
    done = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=1))
    plan = reconcile(new_trigger(status=running_first()), jobs(done), {}, at(minutes=2))
    assert plan.status.execution_count == 1 and plan.status.active == ()
    assert plan.release == (FIRST,)
    assert plan.patch["executionCount"] == 1 and plan.patch["active"] == []


@pytest.mark.parametrize(("presence", "outcome"), [
    pytest.param(Presence.DELETING, Outcome.SUCCEEDED, id="held-by-our-finalizer"),
    pytest.param(Presence.DELETED, Outcome.SUCCEEDED, id="deletion-seen-by-the-watch"),
    pytest.param(Presence.VANISHED, Outcome.SUCCEEDED, id="end-seen-then-gone"),
])
def test_a_job_deleted_after_it_finished_counts_as_what_it_was(presence: Presence, outcome: Outcome) -> None:
    # Deleted by its TTL right after it succeeded, during a watch gap: the success stands.
    done = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=1), presence=presence)
    plan = reconcile(new_trigger(status=running_first()), jobs(done), {}, at(minutes=6))
    assert [e.outcome for e in plan.status.recent_executions] == [outcome]
    assert counters(plan) == (1, 0, 0)


def test_a_running_job_that_vanished_unseen_is_lost_not_failed() -> None:
    vanished = job_view(FIRST, presence=Presence.VANISHED)
    plan = reconcile(new_trigger(status=running_first()), jobs(vanished), {}, at(minutes=6))
    assert [e.outcome for e in plan.status.recent_executions] == [Outcome.LOST]
    assert counters(plan) == (0, 0, 0) and "JobLost" in reasons(plan)


def test_a_running_job_deleted_by_hand_failed() -> None:
    deleting = job_view(FIRST, presence=Presence.DELETING)
    plan = reconcile(new_trigger(status=running_first()), jobs(deleting), {}, at(minutes=6))
    assert [e.outcome for e in plan.status.recent_executions] == [Outcome.FAILED]
    assert plan.release == (FIRST,)


HOLD = dt.timedelta(seconds=60)


@pytest.mark.parametrize(("age", "presence", "released", "wake"), [
    pytest.param(30, Presence.EXISTS, False, None, id="young-kept-no-wake-needed"),
    pytest.param(30, Presence.DELETING, False, 60, id="young-deleted-wakes-when-old-enough"),
    pytest.param(60, Presence.DELETING, True, None, id="old-enough-deleted"),
    pytest.param(90, Presence.EXISTS, True, None, id="old-enough-kept"),
])
def test_a_counted_job_keeps_its_name_taken_until_it_is_as_old_as_the_hold(
        age: int, presence: Presence, released: bool, wake: int | None) -> None:
    created = at(seconds=1)
    done = job_view(FIRST, JobPhase.SUCCEEDED, created_at=created, finished_at=at(seconds=5), presence=presence)
    counted = reconcile(new_trigger(status=running_first()), jobs(done), {}, at(seconds=6)).status
    plan = reconcile(new_trigger(status=counted), jobs(done), {}, created + dt.timedelta(seconds=age),
                     name_hold=HOLD)
    assert plan.release == ((FIRST,) if released else ())
    assert plan.release_proven == frozenset(plan.release)  # counted in this copy: no read needed to release
    assert not plan.acts and plan.patch == {}
    assert (plan.wake_at == created + HOLD) if wake else (plan.wake_at is None or plan.wake_at > created + HOLD)


def test_a_young_job_pruned_in_the_counting_pass_is_deleted_now_and_released_later() -> None:
    created = at(seconds=1)
    done = job_view(FIRST, JobPhase.SUCCEEDED, created_at=created, finished_at=at(seconds=3))
    plan = reconcile(new_trigger(cron_spec(successfulJobsHistoryLimit=0), status=running_first()), jobs(done), {},
                     at(seconds=4), name_hold=HOLD)
    assert plan.status.execution_count == 1 and plan.delete == (FIRST,) and plan.release == ()
    assert plan.wake_at == created + HOLD  # nothing else would bring a pass to release it


def test_a_release_this_copy_cannot_prove_counted_needs_a_current_copy() -> None:
    # Ours, not active, not among the counted runs this copy holds: a copy older than the run's
    # start would say the same of a run that is still going, so the shell confirms the copy first.
    unknown = job_view("nightly-1772438400", JobPhase.SUCCEEDED, finished_at=at(hours=-2))
    stranger = job_view("nightly-1772434800", JobPhase.SUCCEEDED, finished_at=at(hours=-3), owner_uid="old")
    plan = reconcile(new_trigger(cron_spec(successfulJobsHistoryLimit=5)), jobs(unknown, stranger), {}, at(minutes=2))
    assert set(plan.release) == {"nightly-1772438400", "nightly-1772434800"}
    assert plan.release_proven == frozenset() and plan.acts


def test_jobs_of_others_holding_our_finalizer_are_released_and_never_pruned() -> None:
    ours = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=1), finalized=False)
    predecessor = job_view("nightly-1772438400", JobPhase.SUCCEEDED, finished_at=at(hours=-2), owner_uid="old")
    orphan = job_view("nightly-1772434800", JobPhase.SUCCEEDED, finished_at=at(hours=-3), owner_uid=None,
                      finalized=False)
    status = dataclasses.replace(running_first(), active=())
    plan = reconcile(new_trigger(cron_spec(successfulJobsHistoryLimit=0), status=status),
                     jobs(ours, predecessor, orphan), {}, at(minutes=2))
    assert plan.delete == (FIRST,)
    assert plan.release == ("nightly-1772438400",)


@pytest.mark.parametrize("owner", [pytest.param("uid-of-a-deleted-namesake", id="previous-trigger"),
                                   pytest.param(None, id="orphan-with-our-label")])
def test_a_job_of_someone_else_holding_the_name_fails_the_run_at_once(owner: str | None) -> None:
    stranger = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=1), owner_uid=owner)
    plan = reconcile(new_trigger(status=running_first()), jobs(stranger), {}, at(seconds=3))
    [execution] = plan.status.recent_executions
    assert execution.outcome is Outcome.FAILED and execution.error is not None
    assert "does not belong to this Trigger" in execution.error
    assert counters(plan) == (0, 1, 1) and plan.create == () and plan.delete == ()


def test_a_known_stranger_on_the_name_fails_the_run_without_a_create() -> None:
    stranger = job_view(FIRST, owner_uid="uid-of-a-deleted-namesake")
    plan = reconcile(new_trigger(), jobs(stranger), {}, at())
    assert plan.create == () and plan.status.active == ()
    assert [e.outcome for e in plan.status.recent_executions] == [Outcome.FAILED]


@pytest.mark.parametrize("new_schedule", [
    pytest.param(cron_spec("* * * * *", catchUpPolicy="All", concurrencyPolicy="Allow"), id="daily-to-every-minute"),
    pytest.param(interval_spec(1, catchUpPolicy="All", concurrencyPolicy="Allow"), id="cron-to-one-second-interval"),
    pytest.param(cron_spec("0 * * * *", timezone="Asia/Kolkata", catchUpPolicy="All"), id="new-time-zone"),
])
def test_a_new_schedule_starts_afresh_and_back_fills_nothing(new_schedule: dict[str, Any]) -> None:
    # An hourly Trigger ran at 10:00; at 12:10 its schedule is edited.
    first = reconcile(new_trigger(), {}, {}, at())
    done = job_view(FIRST, JobPhase.SUCCEEDED, finished_at=at(minutes=1))
    settled = reconcile(next_pass(new_trigger(), first), jobs(done), {}, at(minutes=2))
    edited = next_pass(new_trigger(), settled, spec=new_schedule, generation=2)
    plan = reconcile(edited, jobs(done), {}, at(hours=2, minutes=10))
    assert created(plan) == []
    assert plan.status.missed_runs == 0
    assert plan.status.active_since == at(hours=2, minutes=10)
    assert "ScheduleChanged" in reasons(plan)
    assert plan.status.next_scheduled_at is not None and plan.status.next_scheduled_at > at(hours=2, minutes=10)


def test_replace_with_a_backlog_starts_only_the_last_moment() -> None:
    spec = interval_spec(60, catchUpPolicy="All", concurrencyPolicy="Replace")
    # Created at 09:40; first seen at 10:00: twenty moments are due at once.
    plan = reconcile(new_trigger(spec), {}, {}, at())
    assert created(plan) == [scheduled_job_name(TRIGGER_NAME, at())]
    assert plan.delete == ()
    assert plan.status.skipped_runs == 19


def test_replace_deletes_a_running_job_that_is_no_longer_an_active_run() -> None:
    spec = cron_spec(concurrencyPolicy="Replace")
    leftover = job_view("nightly-1772438400")  # replaced earlier, but its delete was lost
    plan = reconcile(new_trigger(spec, status=running_first()), jobs(job_view(FIRST), leftover), {},
                     at(minutes=5))
    assert plan.delete == ("nightly-1772438400",)


@pytest.mark.parametrize("same", [
    pytest.param(cron_spec("0  *  * * *"), id="extra-spaces"),
    pytest.param(cron_spec("0 * * * 0-6"), id="every-weekday-written-out"),
    pytest.param(cron_spec("0 */1 * * *"), id="every-hour-as-a-step"),
    pytest.param(cron_spec("0 * * * *", timezone="Etc/UTC"), id="UTC-as-Etc/UTC"),
    pytest.param(cron_spec("0 * * * *", timezone="Zulu"), id="UTC-as-Zulu"),
])
def test_a_cosmetic_schedule_edit_keeps_the_cursor_and_the_due_moment(same: dict[str, Any]) -> None:
    # The hourly Trigger ran at 10:00; the expression is rewritten at 10:59 and the operator looks at 11:00.
    ran = dataclasses.replace(running_first(), active=(), observed_schedule="cron 0 * * * * UTC")
    edited = new_trigger(same, status=ran, generation=2)
    plan = reconcile(edited, {}, {}, at(hours=1))
    assert created(plan) == [SECOND]
    assert plan.status.active_since == CREATED and "ScheduleChanged" not in reasons(plan)


def test_the_same_meaning_in_another_zone_is_a_new_schedule() -> None:
    ran = dataclasses.replace(running_first(), active=(), observed_schedule="cron 0 * * * * UTC")
    plan = reconcile(new_trigger(cron_spec(timezone="Asia/Kathmandu"), status=ran, generation=2), {}, {},
                     at(hours=1))
    assert "ScheduleChanged" in reasons(plan) and plan.status.active_since == at(hours=1)


def test_a_links_zone_is_the_zone_it_links_to() -> None:
    ran = dataclasses.replace(running_first(), active=(), observed_schedule="cron 0 2 * * * US/Eastern")
    plan = reconcile(new_trigger(cron_spec("0 2 * * *", timezone="America/New_York"), status=ran, generation=2),
                     {}, {}, at(minutes=30))
    assert "ScheduleChanged" not in reasons(plan)


@pytest.mark.parametrize(("spec", "field"), [
    pytest.param(interval_spec(99999999999999), "spec.scheduleConfig.intervalSeconds", id="beyond-the-calendar"),
    pytest.param(cron_spec(startingDeadlineSeconds=10**15), "spec.startingDeadlineSeconds", id="deadline-beyond"),
    pytest.param(cron_spec(actionConfig={"blob": "x" * 70_000}), "spec.actionConfig: is 70011 bytes as JSON",
                 id="action-config-too-large-for-one-environment-variable"),
])
def test_hostile_sizes_are_refused_with_the_field_not_raised(spec: dict[str, Any], field: str) -> None:
    plan = reconcile(new_trigger(spec), {}, {}, at())
    assert plan.create == ()
    assert plan.status.message is not None and plan.status.message.startswith(field)
    assert ready(plan) == ("False", "InvalidSpec") and plan.status.phase is Phase.INVALID


def test_an_interval_at_its_bound_still_has_a_next_moment() -> None:
    plan = reconcile(new_trigger(interval_spec(316224000)), {}, {}, at())
    assert plan.status.next_scheduled_at == CREATED + dt.timedelta(seconds=316224000)


def test_a_cron_that_never_fires_is_not_ready_and_says_why() -> None:
    plan = reconcile(new_trigger(cron_spec("0 0 30 2 *")), {}, {}, at())
    assert plan.status.next_scheduled_at is None
    assert ready(plan) == ("False", "NeverFires")
    assert plan.status.message is not None and "'0 0 30 2 *' has no moment within five years" in plan.status.message


def test_an_invalid_trigger_shows_phase_invalid_and_runs_once_fixed_without_catching_up() -> None:
    broken = reconcile(new_trigger(cron_spec("61 * * * *")), {}, {}, at(minutes=-10))
    assert broken.status.phase is Phase.INVALID
    fixed = reconcile(next_pass(new_trigger(), broken, generation=2), {}, {}, at(hours=1, minutes=5))
    assert fixed.status.phase is Phase.ACTIVE and created(fixed) == []
    assert fixed.status.active_since == at(hours=1, minutes=5)


def test_an_unreadable_status_is_reported_and_nothing_else_is_written() -> None:
    raw = {"executionCount": 4, "active": [{"name": FIRST}]}
    view = dataclasses.replace(new_trigger(), raw_status=raw, status_error="status.active: KeyError: 'scheduledTime'")
    plan = reconcile(view, {}, {}, at())
    assert plan.create == () and set(plan.patch) == {"message", "observedGeneration", "conditions"}
    [condition] = plan.patch["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "StatusUnreadable")
    assert "kubectl patch trigger nightly -n team-a --subresource=status" in condition["message"]
    again = dataclasses.replace(view, raw_status={**raw, **plan.patch})
    assert reconcile(again, {}, {}, at(minutes=1)).patch == {}


def test_a_range_over_every_hour_is_not_a_star_it_keeps_one_run_on_the_repeated_hour() -> None:
    # "0 0-23" is a fixed time for the daylight-saving rule, "0 *" a repeating one: not the same schedule.
    ran = dataclasses.replace(running_first(), active=(), observed_schedule="cron 0 * * * * UTC")
    plan = reconcile(new_trigger(cron_spec("0 0-23 * * *"), status=ran, generation=2), {}, {}, at(hours=1))
    assert "ScheduleChanged" in reasons(plan)


@pytest.mark.parametrize(("spec", "reason"), [
    pytest.param(cron_spec(), "Scheduled", id="scheduled"),
    pytest.param(cron_spec(state="paused"), "Paused", id="paused"),
    pytest.param(cron_spec(state="disabled"), "Disabled", id="disabled"),
    pytest.param(cron_spec("61 * * * *"), "InvalidSpec", id="invalid"),
    pytest.param(cron_spec("0 0 30 2 *"), "NeverFires", id="never-fires"),
    pytest.param(NO_TEMPLATE, "ActionTemplateMissing", id="no-template"),
    pytest.param(CONDITIONAL, "Scheduled", id="conditional"),
])
def test_every_ready_reason_is_distinct(spec: dict[str, Any], reason: str) -> None:
    plan = reconcile(new_trigger(spec), {}, {}, at())
    assert ready(plan) == ("True" if reason == "Scheduled" else "False", reason)
    assert plan.status.observed_generation == 1


def test_an_edit_or_a_resume_re_arms_a_condition_that_fired_and_a_new_condition_gets_a_new_baseline() -> None:
    fired_before = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, observed_schedule=DRIFT_SCHEDULE,
                                 observed_generation=1, baseline_snapshot={"value": 1.0}, condition_armed=False,
                                 last_condition_check_at=at(minutes=-1))
    still = checked(new_trigger(CONDITIONAL, status=fired_before), 2.0, at())
    assert created(still) == []  # disarmed: the drift that fired (and failed) fires no more
    edited = checked(new_trigger(CONDITIONAL, status=fired_before, generation=2), 2.0, at())
    assert created(edited) == [f"{TRIGGER_NAME}-c1"]
    resumed = checked(new_trigger(CONDITIONAL, status=fired_before, annotations={ANNOTATION_RESUME: "r1"}), 2.0,
                      at())
    assert created(resumed) == [f"{TRIGGER_NAME}-c1"]
    new_metric = checked(new_trigger(conditional(metric="relative_drift"), status=fired_before, generation=2),
                         2.0, at())
    assert new_metric.status.baseline_snapshot is not None
    assert new_metric.status.baseline_snapshot["value"] == 2.0 and created(new_metric) == []


@pytest.mark.parametrize(("source", "field"), [
    pytest.param({"object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "../../kube-system/configmaps/x",
                             "fieldPath": ".data.a"}}, "spec.scheduleConfig.source.object.name", id="path-in-a-name"),
    pytest.param({"object": {"apiVersion": "v1", "kind": "Secret", "name": "creds", "fieldPath": ".data.a"}},
                 "spec.scheduleConfig.source.object.kind", id="a-secret"),
    pytest.param({"object": {"apiVersion": "../v1", "kind": "ConfigMap", "name": "a", "fieldPath": ".data.a"}},
                 "spec.scheduleConfig.source.object.apiVersion", id="path-in-an-api-version"),
    pytest.param({"configMap": {"name": "a/b", "key": "k"}}, "spec.scheduleConfig.source.configMap.name",
                 id="slash-in-a-configmap-name"),
])
def test_a_source_can_name_one_object_and_never_a_secret(source: dict[str, Any], field: str) -> None:
    plan = reconcile(new_trigger(conditional(source=source)), {}, {}, at())
    assert plan.status.message is not None and plan.status.message.startswith(field), plan.status.message


def test_a_reading_that_overflows_is_recorded_and_the_trigger_goes_on() -> None:
    status = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, observed_schedule=DRIFT_SCHEDULE,
                           baseline_snapshot={"value": 0.0})
    plan = checked(new_trigger(CONDITIONAL, status=status), "1e200", at())
    assert plan.status.source_errors == 1 and created(plan) == []


def test_under_allow_a_second_excursion_waits_for_the_running_condition_run() -> None:
    spec = conditional(conditionType="threshold", metric="q", threshold=10) | {"concurrencyPolicy": "Allow"}
    running = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, condition_armed=True, condition_firings=1,
                            condition_fired_value=12.0, active=(run(f"{TRIGGER_NAME}-c1", kind=RunKind.CONDITION),),
                            last_condition_check_at=at(minutes=-1))
    plan = checked(new_trigger(spec, status=running), 15, at(), jobs=jobs(job_view(f"{TRIGGER_NAME}-c1")))
    assert created(plan) == [] and plan.status.condition_fired_value == 12.0 and plan.status.condition_armed is True


def test_a_success_after_a_success_is_routine_and_a_failure_never_is() -> None:
    done = job_view(FIRST, JobPhase.SUCCEEDED, started_at=at(seconds=2), finished_at=at(minutes=3))
    plan = reconcile(new_trigger(status=running_first()), jobs(done), {}, at(minutes=5))
    assert [(n.reason, n.routine) for n in plan.notices] == [("JobSucceeded", True)]
    failed = job_view(FIRST, JobPhase.FAILED, finished_at=at(minutes=3), message="boom")
    plan = reconcile(new_trigger(status=running_first()), jobs(failed), {}, at(minutes=5))
    assert [(n.reason, n.routine) for n in plan.notices] == [("JobFailed", False)]


# --- a check that died with its process; the bounds of what status records (issue 17) ----------------

WATCHED = TriggerStatus(phase=Phase.ACTIVE, active_since=CREATED, observed_schedule=DRIFT_SCHEDULE,
                        baseline_snapshot={"value": 1.0}, condition_armed=True)


@pytest.mark.parametrize(("started", "last_check", "own", "failed"), [
    pytest.param(at(seconds=-30), at(minutes=-2), NO_CHECKS, True, id="marker-newer-than-the-last-check"),
    pytest.param(at(seconds=-30), None, NO_CHECKS, True, id="marker-and-no-check-ever"),
    pytest.param(at(seconds=-30), at(minutes=-2), OwnChecks(last_started_at=at(minutes=-5)), True,
                 id="ours-older-than-the-marker-another-process-wrote"),
    pytest.param(at(seconds=-30), at(minutes=-2), OwnChecks(in_flight=True, last_started_at=at(seconds=-30)), False,
                 id="our-check-is-still-running"),
    pytest.param(at(seconds=-30), at(minutes=-2), OwnChecks(last_started_at=at(seconds=-30)), False,
                 id="ours-ended-its-reading-not-written-yet"),
    pytest.param(at(minutes=-3), at(minutes=-2), NO_CHECKS, False, id="marker-older-than-the-last-check"),
    pytest.param(at(minutes=-2), at(minutes=-2), NO_CHECKS, False, id="marker-as-old-as-the-last-check"),
    pytest.param(None, at(minutes=-2), NO_CHECKS, False, id="no-marker"),
])
def test_a_check_that_died_with_its_process_counts_as_failed(
        started: dt.datetime | None, last_check: dt.datetime | None, own: OwnChecks, failed: bool) -> None:
    status = dataclasses.replace(WATCHED, condition_check_started_at=started, last_condition_check_at=last_check)
    plan = reconcile(new_trigger(CONDITIONAL, status=status), {}, {}, at(), own_checks=own)
    measured = plan.status.last_drift_measurement or {}
    if failed:
        assert plan.status.source_errors == 1 and plan.status.last_condition_check_at == at()
        assert measured["error"] == ("the operator stopped while this source was being checked (started "
                                     f"{format_time(started)}); checked again after the backoff")
        assert plan.check is None and plan.wake_at == at(minutes=1)  # not checked again at once
        assert ready(plan) == ("False", "SourceFailing")
    else:
        assert plan.status.source_errors == 0 and "error" not in measured


def test_each_further_crash_doubles_the_backoff() -> None:
    trigger, now = new_trigger(CONDITIONAL), at()
    status = dataclasses.replace(WATCHED, last_condition_check_at=at(hours=-1))
    waits = []
    for _ in range(4):
        due = reconcile(dataclasses.replace(trigger, status=status), {}, {}, now)  # a new process's first check
        assert due.check is not None and due.status.condition_check_started_at == now
        assert due.patch["conditionCheckStartedAt"] == format_time(now)  # announced before the read starts
        # ... which crashes the process; the next one finds the marker:
        after = reconcile(dataclasses.replace(trigger, status=due.status), {}, {}, now + dt.timedelta(seconds=5))
        assert after.check is None and after.wake_at is not None
        waits.append(after.wake_at - (now + dt.timedelta(seconds=5)))
        status, now = after.status, after.wake_at
    assert waits == [dt.timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert status.source_errors == 4


def test_only_the_first_check_of_a_process_writes_status_before_it_starts() -> None:
    ours = OwnChecks(last_started_at=at(minutes=-1))
    status = reconcile(new_trigger(CONDITIONAL, status=dataclasses.replace(
        WATCHED, last_condition_check_at=at(minutes=-1), condition_check_started_at=at(minutes=-30))), {}, {},
        at(), own_checks=ours).status  # as the last pass wrote it
    raw = status.to_dict()
    stored = dataclasses.replace(new_trigger(CONDITIONAL, status=status), raw_status=raw)
    first = reconcile(stored, {}, {}, at())
    assert first.check is not None and set(first.patch) >= {"conditionCheckStartedAt"}
    later = reconcile(stored, {}, {}, at(), own_checks=ours)
    assert later.check is not None and later.patch == {}  # no write per check


def test_recorded_messages_are_cut_and_stay_equal_to_what_status_keeps() -> None:
    long_error = "ConfigMap team-a/x: " + "y" * 5000
    plan = reconcile(new_trigger(CONDITIONAL, status=WATCHED), {}, {}, at(), Reading(at=at(), error=long_error))
    raw = plan.status.to_dict()
    ready_message = next(c for c in raw["conditions"] if c["type"] == "Ready")["message"]
    for text in (raw["lastDriftMeasurement"]["error"], ready_message):
        assert len(text) == MESSAGE_MAX_CHARS and text.endswith(CUT_MARKER)
    stored = dataclasses.replace(new_trigger(CONDITIONAL, status=TriggerStatus.from_dict(raw)), raw_status=raw)
    assert reconcile(stored, {}, {}, at(seconds=1), own_checks=OwnChecks(last_started_at=at())).patch == {}
    invalid = conditional(metric="x" * 5000)
    once = reconcile(new_trigger(invalid), {}, {}, at())
    assert once.status.message is not None and len(once.status.message) <= MESSAGE_MAX_CHARS
    raw = once.status.to_dict()
    again = reconcile(dataclasses.replace(new_trigger(invalid, status=TriggerStatus.from_dict(raw)), raw_status=raw),
                      {}, {}, at(seconds=1))
    assert again.patch == {} and again.notices == ()  # the cut message is the stored one: no write, no Event


def test_a_long_vector_is_recorded_as_its_length_while_the_baseline_keeps_it_whole() -> None:
    vector = [float(i) for i in range(100)]
    plan = checked(new_trigger(CONDITIONAL), vector, at())
    assert plan.status.baseline_snapshot is not None and plan.status.baseline_snapshot["value"] == vector
    recorded = plan.patch["lastDriftMeasurement"]
    assert recorded["value"] == vector[:RECORDED_NUMBERS_MAX] and recorded["valueLength"] == 100
    assert recorded["baseline"] == vector[:RECORDED_NUMBERS_MAX] and recorded["baselineLength"] == 100
    assert plan.patch["baselineSnapshot"]["value"] == vector


def test_a_reading_too_large_for_status_is_dropped_as_a_failed_check() -> None:
    vector = [0.123456789012345 + i for i in range(20_000)]  # ~400 KB as JSON: an admin's long vector bound
    plan = checked(new_trigger(CONDITIONAL), vector, at())  # the first value: it would become the baseline
    assert len(json.dumps(plan.patch)) < STATUS_MAX_BYTES
    assert plan.status.baseline_snapshot is None and plan.status.source_errors == 1
    assert plan.status.last_condition_check_at == at() and created(plan) == []
    error = (plan.status.last_drift_measurement or {})["error"]
    assert error.startswith("the value is too large to keep in status") and "the reading was dropped" in error


# --- a check that changes nothing writes nothing (issue 21) -----------------------------------------

THRESHOLD = conditional(conditionType="threshold", metric="q", threshold=10, comparison=">")  # every 60 s


def written_check() -> TriggerView:
    """A threshold Trigger as stored after its check of 5 at 09:59 was written."""
    first = checked(new_trigger(THRESHOLD), 5, at(minutes=-1))
    assert first.patch["lastConditionCheckAt"] == format_time(at(minutes=-1))
    return next_pass(new_trigger(THRESHOLD), first)


def test_a_check_that_changes_nothing_writes_nothing_and_the_next_is_due_an_interval_after_it() -> None:
    trigger = written_check()
    quiet = checked(trigger, 6, at())  # another value, still below the threshold
    assert quiet.patch == {} and quiet.status.last_condition_check_at == at(minutes=-1)
    assert quiet.unwritten_check == UnwrittenCheck(over=at(minutes=-1), at=at())
    assert quiet.check is None and quiet.wake_at == at(minutes=1)
    own = OwnChecks(last_started_at=at(seconds=-1), unwritten=quiet.unwritten_check)  # the shell's memory
    early = reconcile(trigger, {}, {}, at(seconds=59), own_checks=own)
    assert early.check is None and early.patch == {} and early.wake_at == at(minutes=1)
    assert reconcile(trigger, {}, {}, at(seconds=59)).check is not None  # without the memory: due since 10:00
    due = reconcile(trigger, {}, {}, at(minutes=1), own_checks=own)
    assert due.check is not None and due.patch == {}  # the cadence holds without a write
    stale = checked(trigger, 6, at(seconds=-30), own_checks=own)  # a reading older than the one taken in
    assert stale.patch == {} and stale.unwritten_check is None


def fired_before(status: TriggerStatus) -> TriggerStatus:
    return dataclasses.replace(status, condition_armed=False, condition_firings=1)


@pytest.mark.parametrize(("stored", "reading", "own"), [
    pytest.param(None, Reading(at=at(), raw=11), NO_CHECKS, id="crossing-fires"),
    pytest.param(None, Reading(at=at(), error="ConfigMap team-a/x does not exist"), NO_CHECKS, id="source-fails"),
    pytest.param(lambda s: dataclasses.replace(s, source_errors=2), Reading(at=at(), raw=5), NO_CHECKS,
                 id="source-recovers"),
    pytest.param(fired_before, Reading(at=at(), raw=5), NO_CHECKS, id="seen-false-re-arms"),
    pytest.param(None, Reading(at=at(minutes=5), raw=5), NO_CHECKS, id="heartbeat-6-intervals-after-the-written"),
    # A new process's first check was announced (10:00, after the written 09:59): its end is written,
    # else a later process would count it as a check that died with its process.
    pytest.param(lambda s: dataclasses.replace(s, condition_check_started_at=at()), Reading(at=at(seconds=2), raw=5),
                 OwnChecks(last_started_at=at()), id="announced-check-ends"),
])
def test_a_check_that_changes_something_writes_it(stored: Any, reading: Reading, own: OwnChecks) -> None:
    trigger = written_check()
    if stored is not None:
        trigger = dataclasses.replace(trigger, status=stored(trigger.status))
    plan = reconcile(trigger, {}, {}, reading.at, reading, own_checks=own)
    assert plan.patch["lastConditionCheckAt"] == format_time(reading.at) and plan.unwritten_check is None
    assert plan.patch["lastDriftMeasurement"]["checkedAt"] == format_time(reading.at)


def test_the_heartbeat_writes_a_check_that_changes_nothing_once_the_written_one_is_six_intervals_old() -> None:
    trigger = written_check()  # written at 09:59, every 60 s: the heartbeat is 6 min
    assert checked(trigger, 5, at(minutes=5, seconds=-1)).patch == {}
    beat = checked(trigger, 5, at(minutes=5))
    assert beat.patch["lastConditionCheckAt"] == format_time(at(minutes=5)) and beat.unwritten_check is None


def test_a_check_that_changes_nothing_stays_unwritten_when_the_pass_writes_for_another_reason() -> None:
    """Status keeps showing one check, the last written: its time, its record and the Ready message agree."""
    trigger = written_check()
    name = f"{TRIGGER_NAME}-c1"
    trigger = dataclasses.replace(trigger, status=dataclasses.replace(
        trigger.status, condition_firings=1, active=(run(name, moment=at(minutes=-3), kind=RunKind.CONDITION),)))
    done = job_view(name, JobPhase.SUCCEEDED, finished_at=at(seconds=-10))
    plan = checked(trigger, 6, at(), jobs=jobs(done))
    assert plan.status.execution_count == 1 and plan.patch["executionCount"] == 1
    assert "lastConditionCheckAt" not in plan.patch and "lastDriftMeasurement" not in plan.patch
    assert "last: 5.0 (exceeded: False)" in plan.status.conditions[0].message
    assert plan.unwritten_check == UnwrittenCheck(over=at(minutes=-1), at=at()) and plan.wake_at == at(minutes=1)


@pytest.mark.parametrize(("interval", "beat"), [(1, 60), (10, 60), (60, 360), (3600, 21600)])
def test_the_heartbeat_is_a_minute_or_six_intervals(interval: int, beat: int) -> None:
    spec = parse_spec(conditional(checkIntervalSeconds=interval))
    assert heartbeat(spec) == dt.timedelta(seconds=beat)


@pytest.mark.parametrize(("stored", "unwritten", "last"), [
    pytest.param(at(minutes=-1), None, at(minutes=-1), id="no-memory-status"),
    pytest.param(at(minutes=-1), UnwrittenCheck(over=at(minutes=-1), at=at()), at(), id="our-unwritten-check"),
    pytest.param(at(seconds=30), UnwrittenCheck(over=at(minutes=-1), at=at()), at(seconds=30),
                 id="a-check-written-since"),
    pytest.param(at(hours=-1), UnwrittenCheck(over=at(minutes=-1), at=at()), at(hours=-1),
                 id="set-back-by-a-person-checks-at-once"),
    pytest.param(None, UnwrittenCheck(over=at(minutes=-1), at=at()), None, id="a-new-trigger-of-the-same-name"),
])
def test_the_last_check_is_ours_unwritten_only_while_status_still_says_what_it_said(
        stored: dt.datetime | None, unwritten: UnwrittenCheck | None, last: dt.datetime | None) -> None:
    status = TriggerStatus(last_condition_check_at=stored)
    assert last_check(status, OwnChecks(unwritten=unwritten)) == last


# --- default condition sources from the catalog and volume conditions (issue 18) --------------------

# The seed's conditional body verbatim (schedule_config), as a Trigger with no source of its own.
SEED_CONDITIONAL: dict[str, Any] = {
    "actionType": "cluster", "actionConfig": {"cluster_id": "clust_abc123"}, "triggerType": "conditional",
    "scheduleConfig": {"conditionType": "drift", "metric": "cosine_drift", "threshold": 0.3,
                       "checkIntervalSeconds": 3600}}
CATALOG = {"cluster": job_template()}
DEFAULTS = parse_sources({"cluster.sources": (
    'drift: {configMap: {name: trigger-metrics, key: "{cluster_id}.centroid"}}\n'
    'volume: {http: {url: "http://metrics.example/v1/namespaces/{namespace}/clusters/{cluster_id}", '
    'jsonPath: .documents}}\n')})[0]


def test_the_seeds_conditional_body_reads_its_action_types_default_source_filled_from_action_config() -> None:
    plan = reconcile(new_trigger(SEED_CONDITIONAL), {}, CATALOG, at(), sources=DEFAULTS)
    assert plan.status.phase is Phase.ACTIVE and ready(plan) == ("True", "Scheduled")
    assert plan.check is not None and plan.check.config_map is not None
    assert (plan.check.config_map.name, plan.check.config_map.key) == ("trigger-metrics", "clust_abc123.centroid")
    assert plan.check_is_default is True  # read as the admin's, with no author approval
    base = reconcile(next_pass(new_trigger(SEED_CONDITIONAL), plan), {}, CATALOG, at(),
                     Reading(at=at(), raw="[1.0, 0.0]"), sources=DEFAULTS)
    moved = reconcile(next_pass(new_trigger(SEED_CONDITIONAL), base), {}, CATALOG, at(hours=1),
                      Reading(at=at(hours=1), raw="[0.0, 1.0]"), sources=DEFAULTS)
    assert created(moved) == [f"{TRIGGER_NAME}-c1"]  # cosine drift 1.0 > 0.3
    assert moved.status.last_drift_measurement is not None
    assert moved.status.last_drift_measurement["source"] == "configMap"


def test_a_triggers_own_source_is_read_as_its_own_even_when_the_catalog_has_a_default() -> None:
    own = {**SEED_CONDITIONAL, "scheduleConfig": {**SEED_CONDITIONAL["scheduleConfig"],
                                                  "source": {"configMap": {"name": "mine", "key": "v"}}}}
    plan = reconcile(new_trigger(own), {}, CATALOG, at(), sources=DEFAULTS)
    assert plan.check is not None and plan.check.config_map is not None and plan.check.config_map.name == "mine"
    assert plan.check_is_default is False


@pytest.mark.parametrize(("spec", "sources", "field", "says"), [
    pytest.param(SEED_CONDITIONAL, {}, "spec.scheduleConfig.source", "the cluster admin adds one", id="no-default"),
    pytest.param({**SEED_CONDITIONAL, "actionConfig": {}}, DEFAULTS, "spec.actionConfig.cluster_id", "is required",
                 id="missing-placeholder-key"),
    pytest.param({**SEED_CONDITIONAL, "actionConfig": {"cluster_id": "a/../../other"}}, DEFAULTS,
                 "spec.actionConfig.cluster_id", "one token", id="a-slash-in-a-key"),
    pytest.param({**SEED_CONDITIONAL, "actionConfig": {"cluster_id": {"nested": 1}}}, DEFAULTS,
                 "spec.actionConfig.cluster_id", "a string or number", id="not-a-scalar"),
    pytest.param({**SEED_CONDITIONAL, "scheduleConfig": {**SEED_CONDITIONAL["scheduleConfig"],
                                                         "conditionType": "threshold", "metric": "q"}},
                 DEFAULTS, "spec.scheduleConfig.source", "no default threshold source", id="other-condition-type"),
])
def test_a_conditional_trigger_without_a_usable_default_source_is_invalid_naming_the_field(
        spec: dict[str, Any], sources: Any, field: str, says: str) -> None:
    plan = reconcile(new_trigger(spec), {}, CATALOG, at(), sources=sources)
    assert plan.status.phase is Phase.INVALID and plan.check is None
    assert plan.status.message is not None and plan.status.message.startswith(field + ":"), plan.status.message
    assert says in plan.status.message


VOLUME_DEFAULT: dict[str, Any] = {**SEED_CONDITIONAL, "scheduleConfig": {
    "conditionType": "volume", "metric": "document_count", "threshold": 100, "checkIntervalSeconds": 60}}


@pytest.mark.parametrize("value", [
    pytest.param("x/../../admin", id="slashes-and-dots"),  # was filled as x%2F..%2F..%2Fadmin (second review, M4)
    pytest.param("..", id="dot-dot"),
    pytest.param("a..b", id="dots-inside"),
    pytest.param("a%2F..", id="a-percent"),
])
def test_a_filled_url_cannot_leave_the_admins_host_or_path(value: str) -> None:
    plan = reconcile(new_trigger({**VOLUME_DEFAULT, "actionConfig": {"cluster_id": value}}), {}, CATALOG, at(),
                     sources=DEFAULTS)
    assert plan.status.phase is Phase.INVALID and plan.check is None
    assert plan.status.message is not None and plan.status.message.startswith(
        "spec.actionConfig.cluster_id: "), plan.status.message
    assert "cannot fill a URL path segment" in plan.status.message


def test_a_default_url_is_filled_with_the_triggers_own_namespace_whatever_action_config_says() -> None:
    spec = {**VOLUME_DEFAULT, "actionConfig": {"cluster_id": "team-b-cluster", "namespace": "team-b"}}
    plan = reconcile(new_trigger(spec), {}, CATALOG, at(), sources=DEFAULTS)
    assert plan.check is not None and plan.check.http is not None and plan.check_is_default is True
    assert plan.check.http.url == f"http://metrics.example/v1/namespaces/{NAMESPACE}/clusters/team-b-cluster"


VOLUME: dict[str, Any] = {**CONDITIONAL, "scheduleConfig": {
    "conditionType": "volume", "metric": "document_count", "threshold": 100, "comparison": ">=",
    "checkIntervalSeconds": 60, "source": {"configMap": {"name": "stats", "key": "documents"}}}}


def test_a_volume_condition_fires_once_per_crossing_and_records_last_volume_measurement() -> None:
    trigger, fired, status = new_trigger(VOLUME), [], TriggerStatus()
    for i, count in enumerate(["40", "99", "100", "150", "20", "120"]):
        plan = checked(dataclasses.replace(trigger, status=status), count, at(minutes=i))
        fired += [c for c in created(plan) if c not in fired]
        status = dataclasses.replace(plan.status, active=())
        if i == 2:
            assert plan.status.last_volume_measurement == {
                "checkedAt": format_time(at(minutes=2)), "metric": "document_count", "threshold": 100,
                "source": "configMap", "value": 100.0, "comparison": ">=", "exceeded": True}
    assert fired == [f"{TRIGGER_NAME}-c1", f"{TRIGGER_NAME}-c2"]  # at 100 and at 120, after 20
    assert status.last_drift_measurement is None and status.baseline_snapshot is None
    assert "last: 120.0 (exceeded: True)" in status.conditions[0].message


def test_a_volume_condition_refuses_a_value_that_is_no_count_and_says_so_in_its_measurement() -> None:
    plan = checked(new_trigger(VOLUME), "12.5", at())
    assert plan.status.source_errors == 1 and created(plan) == []
    measured = plan.status.last_volume_measurement
    assert measured is not None and measured["exceeded"] is None and "document count" in measured["error"]
    assert ready(plan) == ("False", "SourceFailing") and "document count" in plan.status.conditions[0].message


# --- the announced moment (core/runs.py): a handled moment's announcement is over ---------------------

WITHIN = dt.timedelta(seconds=10)


@pytest.mark.parametrize("spent", [pytest.param(False, id="forbid-skips-it"), pytest.param(True, id="budget-spent")])
def test_a_moment_handled_without_a_run_announces_the_next_one_at_once(spent: bool) -> None:
    """The pass that handles the announced 11:00 by skipping it (Forbid, 10:00's Job still running)
    moves the cursor to it: nextScheduledAt names 12:00 (or nothing once maxRuns is spent) at once,
    not the past 11:00 kept for the name hold and withdrawn by a second write a minute later."""
    spec = cron_spec(concurrencyPolicy="Forbid")
    if spent:
        spec["scheduleConfig"]["maxRuns"] = 1
    trigger = new_trigger(spec, status=running_first(next_scheduled_at=at(hours=1), scheduled_runs=1))
    plan = reconcile(trigger, jobs(job_view(FIRST)), {}, at(hours=1, seconds=1), name_hold=HOLD, create_within=WITHIN)
    assert plan.status.last_schedule_time == at(hours=1) and plan.create == ()
    assert plan.status.skipped_runs == (0 if spent else 1)
    assert plan.status.next_scheduled_at == (None if spent else at(hours=2))
    assert plan.wake_at is None or plan.wake_at > at(hours=1, minutes=1, seconds=1)


def test_an_event_trigger_past_its_cooldown_announces_no_run() -> None:
    """An event Trigger keeps its cooldown's end in nextScheduledAt: no run is named for it, so the
    pass that fires after the cooldown neither keeps that past time for the name hold nor asks the
    shell to read a Job of that name (`announced_job`)."""
    spec = event_spec(cooldownSeconds=300)
    status = counted(10, last_cooldown_at=at(minutes=-2), event_firings=4)
    early = reconcile(new_trigger(spec, status=status), {}, {}, at(), name_hold=HOLD, create_within=WITHIN)
    assert early.status.next_scheduled_at == at(minutes=3)
    assert announced_job(new_trigger(spec, status=early.status)) is None
    late = reconcile(new_trigger(spec, status=early.status), {}, {}, at(minutes=3, seconds=1), name_hold=HOLD,
                     create_within=WITHIN)
    assert [n.run.kind for n in late.create] == [RunKind.EVENT] and not late.create_first
    assert late.status.next_scheduled_at is None
    # The announcement is read from the stored status (observedSchedule says which type's pass wrote
    # it), not from the live spec: the same status under a spec edited to cron still names no run,
    # and the same times written by a cron Trigger's pass do.
    assert announced_job(new_trigger(cron_spec(), status=early.status)) is None
    by_cron = dataclasses.replace(early.status, observed_schedule=schedule_fingerprint(parse_spec(cron_spec())))
    as_cron = announced_job(new_trigger(spec, status=by_cron))
    assert as_cron == (scheduled_job_name(TRIGGER_NAME, at(minutes=3)), at(minutes=3))


def test_a_type_edit_after_the_moment_keeps_the_announcement_for_the_name_hold() -> None:
    """A cron Trigger's pass announced 10:00; the spec is edited to event and its pass comes at
    10:00:05 with no Job of 10:00 known: a create decided on the announcement may still be on its
    way, so the announcement stands (with the schedule it was recorded under, which is what makes it
    one) until the name hold has passed, and the Job is adopted when it is seen."""
    announcing = reconcile(new_trigger(cron_spec()), {}, {}, at(minutes=-10), name_hold=HOLD, create_within=WITHIN)
    assert announced_job(new_trigger(cron_spec(), status=announcing.status)) == (FIRST, at())
    edited = new_trigger(EVENT, status=announcing.status)
    plan = reconcile(edited, {}, {}, at(seconds=5), name_hold=HOLD, create_within=WITHIN)
    assert plan.create == () and announced_job(new_trigger(EVENT, status=plan.status)) == (FIRST, at())
    seen = reconcile(new_trigger(EVENT, status=plan.status), jobs(job_view(FIRST)), {}, at(seconds=20),
                     name_hold=HOLD, create_within=WITHIN)
    assert [r.name for r in seen.status.active] == [FIRST] and seen.status.last_schedule_time == at()
    assert seen.status.observed_schedule == schedule_fingerprint(parse_spec(EVENT))
    later = reconcile(edited, {}, {}, at(minutes=2), name_hold=HOLD, create_within=WITHIN)
    assert announced_job(new_trigger(EVENT, status=later.status)) is None


def test_the_announced_runs_plan_may_leave_its_write_to_the_next_pass_only_if_it_does_nothing_else() -> None:
    """`Plan.write_may_wait`: a create-first plan whose creates were taken may leave its status write
    to the next pass (controller/reconciler.py) only when that pass loses nothing of it by deciding
    again: releases may wait; deletes, runs counted, Events and checks may not."""
    announcing = reconcile(new_trigger(cron_spec()), {}, {}, at(minutes=-20), name_hold=HOLD, create_within=WITHIN)
    assert announcing.status.next_scheduled_at == at() and not announcing.write_may_wait
    at_moment = reconcile(new_trigger(cron_spec(), status=announcing.status), {}, {}, at(seconds=1), name_hold=HOLD,
                          create_within=WITHIN)
    assert at_moment.create_first and at_moment.patch and at_moment.write_may_wait
    counted_run = Execution(scheduled_job_name(TRIGGER_NAME, at(hours=-1)), RunKind.SCHEDULED, at(hours=-1),
                            Outcome.SUCCEEDED, at(minutes=-59))
    cases = {"releases": (dataclasses.replace(at_moment, release=("old",)), True),
             "write first": (dataclasses.replace(at_moment, create_first=False), False),
             "deletes": (dataclasses.replace(at_moment, delete=("old",)), False),
             "runs counted": (dataclasses.replace(at_moment, finished=(counted_run,)), False),
             "Events": (dataclasses.replace(at_moment, notices=(Notice("Normal", "Pruned", "x"),)), False),
             "a check due": (dataclasses.replace(at_moment, check=ConditionSource.model_construct()), False),
             "an unwritten check": (dataclasses.replace(at_moment, unwritten_check=UnwrittenCheck(at(), at())), False)}
    assert {case: plan.write_may_wait for case, (plan, _) in cases.items()} == \
        {case: expected for case, (_, expected) in cases.items()}

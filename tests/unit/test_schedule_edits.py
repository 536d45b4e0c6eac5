"""Review of issue 22's schedules: an edit of jitterSeconds, startImmediately with a later startAt, the
preview of a Trigger that never ran, and a calendar too costly to search, through a whole pass."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.unit.conftest import at, cron_spec, interval_spec, job_view, trigger_view
from tests.unit.test_reconcile import next_pass
from trigger_operator.core.reconcile import reconcile
from trigger_operator.jobs.observe import JobPhase
from trigger_operator.model.status import EMPTY, Phase
from trigger_operator.plugin import views


def hourly(jitter: int) -> dict[str, Any]:
    spec = cron_spec("0 * * * *")
    spec["scheduleConfig"]["jitterSeconds"] = jitter
    return spec


def test_raising_the_jitter_after_a_moment_ran_does_not_run_it_again_and_keeps_the_next() -> None:
    t = trigger_view(spec=hourly(10), created_at=at(minutes=-30), status=EMPTY)  # offset 3 s
    p1 = reconcile(t, {}, {}, at(seconds=4))  # 10:00 runs at 10:00:03
    made = [n.run.name for n in p1.create]
    assert len(made) == 1
    done = {made[0]: job_view(made[0], JobPhase.SUCCEEDED, finished_at=at(seconds=30))}
    t2 = dataclasses.replace(next_pass(t, p1), spec=hourly(300), generation=2)  # offset 4 min 33 s
    p2 = reconcile(t2, done, {}, at(minutes=1))
    assert "ScheduleChanged" in [n.reason for n in p2.notices]
    p3 = reconcile(next_pass(t2, p2), done, {}, at(minutes=5))
    assert [n.run.name for n in p3.create] == []  # 10:00 ran already
    assert p3.status.next_scheduled_at == at(hours=1, minutes=4, seconds=33)  # 11:00 at its new offset


def test_lowering_the_jitter_before_a_moment_ran_runs_it_at_its_new_offset() -> None:
    t = trigger_view(spec=hourly(300), created_at=at(minutes=-30), status=EMPTY)  # 10:00 due at 10:04:33
    p1 = reconcile(t, {}, {}, at(minutes=1))
    assert p1.create == ()
    t2 = dataclasses.replace(next_pass(t, p1), spec=hourly(10), generation=2)  # now due at 10:00:03
    p2 = reconcile(t2, {}, {}, at(minutes=2))
    assert [n.run.scheduled_time for n in p2.create] == [at(seconds=3)]


def test_start_immediately_with_a_later_start_at_runs_when_the_window_opens() -> None:
    spec = interval_spec(3600, start_immediately=True)
    spec["scheduleConfig"]["startAt"] = at(minutes=30).isoformat()  # created 10:00, the window opens 10:30
    t = trigger_view(spec=spec, created_at=at(), status=EMPTY)
    p1 = reconcile(t, {}, {}, at(seconds=1))
    assert p1.create == () and p1.status.next_scheduled_at == at(minutes=30)
    p2 = reconcile(next_pass(t, p1), {}, {}, at(minutes=30, seconds=1))
    assert [n.run.scheduled_time for n in p2.create] == [at(minutes=30)]


def test_the_preview_of_an_interval_trigger_with_jitter_that_never_ran_is_the_controllers() -> None:
    spec = interval_spec(3600)
    spec["scheduleConfig"]["jitterSeconds"] = 600
    t = trigger_view(spec=spec, created_at=at(minutes=-10), status=EMPTY)
    controller = reconcile(t, {}, {}, at()).status.next_scheduled_at
    raw = {"metadata": {"name": t.name, "namespace": t.namespace, "creationTimestamp": at(minutes=-10).isoformat()},
           "spec": spec, "status": {}}
    preview = views.upcoming(raw, at(), 2).moments
    assert controller is not None and preview[0] == controller
    assert preview[1] == controller + (preview[1] - preview[0]) and preview[1] - preview[0] == at(hours=1) - at()


def test_a_calendar_too_costly_to_search_makes_the_trigger_invalid_naming_the_exclusions() -> None:
    spec = interval_spec(43201)  # every 12 h and 1 s: off minute 59 for 4.8 years
    spec["scheduleConfig"]["excludeCron"] = ["0-58 * * * *"]
    plan = reconcile(trigger_view(spec=spec, created_at=at(hours=-1), status=EMPTY), {}, {}, at())
    assert plan.status.phase is Phase.INVALID and plan.create == ()
    assert plan.status.message is not None
    assert plan.status.message.startswith("spec.scheduleConfig.excludeCron: ")
    assert "too costly to evaluate" in plan.status.message

"""The parts of a reconcile pass on their own (core/plan.py, core/runs.py, core/firing/): the
contracts each part keeps for the others. The whole pass is tested in test_reconcile.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.unit.conftest import at, job_view, trigger_view
from tests.unit.test_reconcile import CONDITIONAL, EVENT
from trigger_operator.core.firing.condition import uses_default_source, with_default_source
from trigger_operator.core.firing.cooldown import cooling_until
from trigger_operator.core.plan import Draft, Observed
from trigger_operator.core.runs import releases
from trigger_operator.jobs.catalog import parse_sources
from trigger_operator.jobs.observe import Presence
from trigger_operator.model.spec import parse_spec
from trigger_operator.model.status import ActiveRun, Execution, Outcome, RunKind, TriggerStatus


@pytest.mark.parametrize(("last", "seconds", "now", "until"), [
    pytest.param(None, 300, at(), None, id="never-fired"),
    pytest.param(at(minutes=-1), 0, at(), None, id="no-cooldown"),
    pytest.param(at(minutes=-1), 300, at(), at(minutes=4), id="cooling"),
    pytest.param(at(minutes=-5), 300, at(), None, id="ends-exactly-now"),
])
def test_cooling_until(last: dt.datetime | None, seconds: int, now: dt.datetime, until: dt.datetime | None) -> None:
    spec = parse_spec({**EVENT, "scheduleConfig": {**EVENT["scheduleConfig"], "cooldownSeconds": seconds}})
    assert cooling_until(TriggerStatus(last_cooldown_at=last), spec, now) == until


SOURCES = parse_sources({"cluster.sources": 'drift: {configMap: {name: stats, key: "{cluster_id}.shift"}}\n'})[0]


@pytest.mark.parametrize(("raw", "default"), [
    pytest.param(CONDITIONAL, False, id="names-its-source"),
    pytest.param({**CONDITIONAL, "actionConfig": {"cluster_id": "c1"},
                  "scheduleConfig": {k: v for k, v in CONDITIONAL["scheduleConfig"].items() if k != "source"}},
                 True, id="catalog-default"),
    pytest.param(EVENT, False, id="not-conditional"),
])
def test_uses_default_source(raw: dict[str, Any], default: bool) -> None:
    spec = with_default_source(parse_spec(raw), SOURCES, "team-a")
    assert uses_default_source(spec, raw) is default


def test_a_draft_wakes_at_the_earliest_time_asked_for() -> None:
    d = Draft(status=TriggerStatus())
    for time in (None, at(minutes=5), at(minutes=2), None, at(minutes=9)):
        d.wake(time)
    assert d.wake_at == at(minutes=2)


def test_the_owner_rule_is_the_controlling_uid() -> None:
    o = Observed(trigger_view(), {}, at())
    assert o.ours(job_view("a")) and not o.ours(job_view("b", owner_uid="other")) \
        and not o.ours(job_view("c", owner_uid=None))


def test_releases_free_others_and_counted_jobs_once_the_name_hold_ends() -> None:
    counted = Execution(name="done", kind=RunKind.SCHEDULED, scheduled_time=at(minutes=-30),
                        outcome=Outcome.SUCCEEDED, finished_at=at(minutes=-29))
    active = ActiveRun(name="going", kind=RunKind.SCHEDULED, scheduled_time=at(), fired_at=at())
    stored = TriggerStatus(recent_executions=(counted,), active=(active,))
    jobs = {j.name: j for j in (
        job_view("done", created_at=at(minutes=-30)),  # counted and old: free, proven by the copy
        job_view("young", created_at=at(seconds=-10)),  # not held back for ever: a later pass releases it
        job_view("young-deleted", created_at=at(seconds=-20), presence=Presence.DELETING),  # no pass would come: wake
        job_view("going", created_at=at(minutes=-1)),  # its run is active: kept
        job_view("stranger", owner_uid="other"),  # not ours: free at once, proves nothing
        job_view("bare", created_at=at(minutes=-30), finalized=False),  # no finalizer to remove
    )}
    o = Observed(trigger_view(status=stored), jobs, at(), name_hold=dt.timedelta(seconds=60))
    free = releases(o, Draft(status=stored))
    assert free.free == ("done", "stranger")
    assert free.proven == frozenset({"done"})
    assert free.hold_ends_at == at(seconds=40)

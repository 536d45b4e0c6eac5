"""The kubectl plugin's pure parts: what it prints from Trigger, Job and Event bodies, how it
follows a run, its arguments and exit codes, and shell completion. No cluster: the few tests of
``main`` stand a fake in for the cluster."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import NAMESPACE, TRIGGER_NAME, TRIGGER_UID, at, cron_spec, interval_spec
from trigger_operator.jobs.render import manual_job_name
from trigger_operator.model.status import (
    ActiveRun,
    Condition,
    Execution,
    Outcome,
    Phase,
    RunKind,
    TriggerStatus,
    format_time,
    token_hash,
)
from trigger_operator.plugin import errors, main, views
from trigger_operator.plugin.client import Cluster
from trigger_operator.plugin.complete import SCRIPTS, candidates
from trigger_operator.plugin.errors import PluginError

NOW = at()
READY = Condition(type="Ready", status="True", reason="Scheduled", message="Scheduled",
                  last_transition_time=at(days=-1))
FAILED_RUN = Execution(name="nightly-1772445600", kind=RunKind.SCHEDULED, scheduled_time=at(hours=-2),
                       outcome=Outcome.FAILED, finished_at=at(hours=-2, seconds=9), started_at=at(hours=-2, seconds=1),
                       error="BackoffLimitExceeded: container work exited with code 3:\nmodel file missing")
GOOD_RUN = Execution(name="nightly-1772449200", kind=RunKind.SCHEDULED, scheduled_time=at(hours=-1),
                     outcome=Outcome.SUCCEEDED, finished_at=at(hours=-1, seconds=5), started_at=at(hours=-1, seconds=1))


def status(**fields: Any) -> dict[str, Any]:
    """A status body as the operator writes it (through the model, so the keys cannot drift)."""
    base: dict[str, Any] = {"phase": Phase.ACTIVE, "observed_generation": 2, "conditions": (READY,),
                            "observed_schedule": "cron 0 * * * * UTC", "next_scheduled_at": at(minutes=30),
                            "last_triggered_at": at(hours=-1), "last_execution_task_id": GOOD_RUN.name,
                            "last_execution_status": "Succeeded", "execution_count": 7,
                            "failed_execution_count": 1, "recent_executions": (GOOD_RUN, FAILED_RUN)}
    return TriggerStatus(**{**base, **fields}).to_dict()


def body(name: str = TRIGGER_NAME, *, spec: Mapping[str, Any] | None = None,
         status_body: Mapping[str, Any] | None = None, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace, "uid": TRIGGER_UID, "generation": 2,
                         "creationTimestamp": format_time(at(days=-3))},
            "spec": dict(spec if spec is not None else cron_spec()),
            "status": dict(status_body if status_body is not None else status())}


def job(name: str, *, condition: str | None = None, active: int = 0, message: str = "") -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "reason": "BackoffLimitExceeded" if condition == "Failed"
                   else "Completed", "message": message, "lastTransitionTime": format_time(NOW)}] if condition else []
    return {"metadata": {"name": name, "namespace": NAMESPACE, "creationTimestamp": format_time(at(seconds=-20)),
                         "labels": {"trigger-operator.io/trigger": TRIGGER_NAME,
                                    "trigger-operator.io/run-kind": "manual"}},
            "status": {"active": active, "conditions": conditions, "startTime": format_time(at(seconds=-19))}}


# --- exit codes and errors ------------------------------------------------------------------------


def test_the_exit_codes_are_the_documented_ones() -> None:
    assert (errors.OK, errors.FAILED, errors.USAGE, errors.NOT_FOUND, errors.FORBIDDEN) == (0, 1, 2, 3, 4)
    doc = main.__doc__ or ""
    for line in ("0  ok", "1  the run failed", "2  usage error", "3  not found", "4  forbidden"):
        assert line in doc


def test_an_unknown_trigger_is_3_with_kubectls_wording() -> None:
    body404 = json.dumps({"kind": "Status", "message": 'triggers.trigger-operator.io "x" not found', "code": 404})
    error = errors.api_error(404, body404, verb="get", resource="triggers.trigger-operator.io", namespace="y", name="x")
    assert (error.code, error.message) == (3, 'trigger "x" not found in namespace "y"')


def test_a_403_is_4_naming_the_verb_and_the_resource() -> None:
    said = ('triggers.trigger-operator.io "x" is forbidden: User "system:serviceaccount:y:reader" cannot patch '
            'resource "triggers" in API group "trigger-operator.io" in the namespace "y"')
    error = errors.api_error(403, json.dumps({"message": said}), verb="patch", resource="triggers.trigger-operator.io",
                             namespace="y", name="x")
    assert error.code == 4
    assert error.message.startswith('forbidden: may not patch triggers.trigger-operator.io in namespace "y": ')
    assert said in error.message


@pytest.mark.parametrize(("status_code", "answer", "code", "said"), [
    pytest.param(401, {"detail": "no Bearer token"}, 4, "unauthorized: the credentials were refused (no Bearer token)",
                 id="401-is-4"),
    pytest.param(503, {"detail": "not stored, send again"}, 1, "(503): not stored, send again", id="503-is-1"),
    pytest.param(422, {"detail": [{"loc": ["body", 0, "count"], "msg": "too big"}]}, 1, "body.0.count: too big",
                 id="validation-list-names-the-field"),
    pytest.param(500, None, 1, "(500)", id="no-body"),
])
def test_other_answers_map_to_one_code_each(status_code: int, answer: Any, code: int, said: str) -> None:
    error = errors.api_error(status_code, json.dumps(answer) if answer else b"", verb="create",
                             resource="triggers/events.trigger-operator.io", namespace="y")
    assert error.code == code
    assert said in error.message


# --- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    pytest.param(["list", "-o", "table"], id="unknown-output"),
    pytest.param(["describe"], id="describe-without-name"),
    pytest.param(["next"], id="next-without-name-or-cron"),
    pytest.param(["next", "nightly", "--cron", "0 * * * *"], id="next-with-both"),
    pytest.param(["next", "--cron", "0 * * * *", "--count", "0"], id="count-below-1"),
    pytest.param(["send-event"], id="send-event-without-name-or-all"),
    pytest.param(["send-event", "nightly", "--all"], id="send-event-with-both"),
    pytest.param(["frobnicate"], id="unknown-command"),
    pytest.param(["completion", "fish"], id="unknown-shell"),
])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.main(argv)
    assert exited.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_global_flags_go_before_or_after_the_command_and_the_later_wins() -> None:
    parser, _ = main.build_parser()
    before = parser.parse_args(["-n", "team-a", "--context", "prod", "list"])
    after = parser.parse_args(["list", "-n", "team-b", "-A", "-o", "wide", "--kubeconfig", "/k"])
    assert (before.namespace, before.context, before.kubeconfig) == ("team-a", "prod", None)
    assert (after.namespace, after.all_namespaces, after.output, after.kubeconfig) == ("team-b", True, "wide", "/k")
    assert parser.parse_args(["-n", "a", "describe", "x", "-n", "b"]).namespace == "b"


def test_help_lists_the_commands_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.main(["--help"])
    out = capsys.readouterr().out
    assert "Exit codes:" in out and "4  forbidden" in out
    for command in ("list", "describe", "run", "pause", "resume", "history", "next", "send-event", "completion"):
        assert f"kubectl trigger {command}" in out


class FailingCluster:
    """Stands in for `client.Cluster`: every call fails as the API server would refuse it."""

    namespace, user = "default", "admin"

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        pass

    def trigger(self, namespace: str, name: str) -> dict[str, Any]:
        raise errors.trigger_not_found(name, namespace)

    def triggers(self, namespace: str | None) -> list[dict[str, Any]]:
        raise errors.api_error(403, b'{"message": "nope"}', verb="list", resource="triggers.trigger-operator.io",
                               namespace=namespace)

    def bearer_token(self) -> str | None:
        return None


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(main, "Cluster", FailingCluster)
    monkeypatch.delenv(main.URL_ENV, raising=False)
    yield


@pytest.mark.parametrize(("argv", "code", "said"), [
    pytest.param(["describe", "ghost"], 3, 'error: trigger "ghost" not found in namespace "default"\n', id="3"),
    pytest.param(["run", "ghost", "-n", "team-a"], 3, 'error: trigger "ghost" not found in namespace "team-a"\n',
                 id="3-in-the-given-namespace"),
    pytest.param(["list", "-A"], 4, "error: forbidden: may not list triggers.trigger-operator.io in any namespace: "
                 "nope\n", id="4"),
    pytest.param(["send-event", "--all"], 2, "error: the operator's URL is needed: --url URL or "
                 "TRIGGER_OPERATOR_URL\n", id="2-without-a-url"),
    pytest.param(["send-event", "--all", "--url", "http://op"], 1, 'error: the kubeconfig\'s user "admin" has no '
                 "bearer token", id="1-without-a-token"),
])
def test_failures_are_one_error_line_and_their_code(argv: list[str], code: int, said: str, failing: None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith(said)
    assert "Traceback" not in err and err.count("\n") == 1


def test_next_previews_a_cron_expression_without_a_cluster(failing: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["next", "--cron", "0 2 * * *", "--timezone", "Europe/Berlin",
                      "--after", "2026-03-28T00:00:00Z", "--count", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2026-03-28T02:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]


@pytest.mark.parametrize(("argv", "code", "said"), [
    pytest.param(["--cron", "61 * * * *"], 2, "minute", id="bad-expression-is-2"),
    pytest.param(["--cron", "0 2 * * *", "--timezone", "Mars/Olympus"], 2, "unknown time zone", id="bad-zone-is-2"),
    pytest.param(["--cron", "0 0 30 2 *"], 1, "never fires", id="never-fires-is-1"),
    pytest.param(["--cron", "0 2 * * *", "--after", "yesterday"], 2, "not an ISO-8601 time", id="bad-after-is-2"),
])
def test_next_preview_errors(argv: list[str], code: int, said: str, failing: None,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["next", *argv]) == code
    assert said in capsys.readouterr().err


# --- list -----------------------------------------------------------------------------------------


def test_list_shows_phase_type_schedule_runs_and_counts() -> None:
    paused = body("weekly", spec=interval_spec(3600), status_body=status(
        phase=Phase.PAUSED, observed_schedule="interval 3600s", next_scheduled_at=None, last_triggered_at=None,
        last_execution_status=None, execution_count=0, failed_execution_count=0, recent_executions=()))
    lines = views.list_table([paused, body()], NOW).splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "TYPE", "SCHEDULE", "LAST", "RUN", "RESULT", "NEXT", "RUN",
                                "SUCCEEDED", "FAILED"]
    assert lines[1].split() == ["nightly", "Active", "cron", "cron", "0", "*", "*", "*", "*", "UTC", "60m", "ago",
                                "Succeeded", "in", "30m", "7", "1"]
    assert lines[2].split() == ["weekly", "Paused", "interval", "interval", "3600s", "-", "-", "-", "0", "0"]


def test_list_wide_and_all_namespaces_add_columns() -> None:
    text = views.list_table([body(namespace="team-b"), body("other", namespace="team-a")], NOW, wide=True,
                            with_namespace=True)
    header, first, second = text.splitlines()
    assert header.startswith("NAMESPACE   NAME")
    assert header.endswith("READY   REASON      ACTION    IN A ROW   LAST JOB")
    assert first.split()[:2] == ["team-a", "other"] and second.split()[:2] == ["team-b", "nightly"]
    assert first.split()[-5:] == ["True", "Scheduled", "cluster", "0", GOOD_RUN.name]


def test_a_trigger_not_seen_yet_or_unreadable_still_lists() -> None:
    unseen = body("new", status_body={})
    broken = body("broken", status_body={"phase": "Active", "lastTriggeredAt": "not a time"})
    lines = views.list_table([unseen, broken], NOW).splitlines()
    assert lines[1].split()[:3] == ["broken", "Unreadable", "cron"]
    assert lines[2].split()[:4] == ["new", "-", "cron", "cron"]  # the schedule comes from the spec


def test_list_as_json_is_a_kubectl_list_and_name_is_kubectls_spelling() -> None:
    assert views.as_list([body()])["kind"] == "List"
    assert views.resource_name(body()) == "trigger.trigger-operator.io/nightly"


# --- history and describe -------------------------------------------------------------------------


def test_history_lists_running_runs_first_then_the_finished_newest_first() -> None:
    running = ActiveRun(name=manual_job_name(TRIGGER_NAME, "t"), kind=RunKind.MANUAL,
                        scheduled_time=at(seconds=-3, microseconds=250), fired_at=at(seconds=-3))
    runs = views.history(body(status_body=status(active=(running,))))
    assert [(r["name"], r["kind"], r["outcome"]) for r in runs] == [
        (running.name, "manual", "Running"), (GOOD_RUN.name, "scheduled", "Succeeded"),
        (FAILED_RUN.name, "scheduled", "Failed")]
    assert runs[2]["durationMs"] == 8000
    assert set(runs[0]) == {"name", "kind", "scheduledTime", "outcome", "startedAt"}  # nothing unset, as in status
    lines = views.history_table(runs).splitlines()
    assert lines[0].split() == ["MOMENT", "KIND", "JOB", "RESULT", "DURATION", "ERROR"]
    assert lines[1].split()[:5] == ["2026-03-02T09:59:57Z", "manual", running.name, "Running", "-"]
    assert lines[3].endswith("8.0s       BackoffLimitExceeded: container work exited with code 3: model file missing")


def test_history_of_an_unreadable_status_is_an_error_naming_the_key() -> None:
    with pytest.raises(PluginError) as raised:
        views.history(body(status_body={"lastTriggeredAt": "soon"}))
    assert raised.value.code == 1 and "status.lastTriggeredAt" in raised.value.message


def test_describe_shows_spec_status_runs_jobs_and_events() -> None:
    failed = status(phase=Phase.FAILED, consecutive_failures=2, last_execution_status="Failed",
                    last_execution_error="exited with code 3", next_scheduled_at=None, message="2 consecutive failures",
                    conditions=(Condition("Ready", "False", "FailureLimitReached", "2 consecutive failures",
                                          at(minutes=-5)),))
    event: dict[str, Any] = {"type": "Warning", "reason": "FailureLimitReached", "message": "2 consecutive failures",
             "lastTimestamp": format_time(at(minutes=-5)), "count": 1, "metadata": {}}
    text = views.describe(body(status_body=failed), [job(GOOD_RUN.name, condition="Complete")], [event], NOW)
    for expected in ("Name:      nightly", "Namespace: team-a", "Spec:", "  Schedule:      cron 0 * * * * UTC",
                     "  Failure limit: 5 in a row", "  Phase:               Failed",
                     "  Ready:               False FailureLimitReached: 2 consecutive failures",
                     "  Last error:          exited with code 3",
                     "  Runs:                7 succeeded, 1 failed (2 in a row)",
                     "  Observed generation: 2 of 2", "Recent executions:",
                     "Jobs:", "Events:", "Warning   FailureLimitReached   5m ago"):
        assert expected in text, expected
    assert "Next run" not in text  # lines without a value are left out
    assert "Message:" not in text  # the Ready condition says it already
    jobs_part = text.split("Jobs:\n")[1].split("Events:")[0]
    assert jobs_part.splitlines()[1].split()[:3] == [GOOD_RUN.name, "manual", "Succeeded"]


def test_describe_shows_event_and_condition_fields_for_those_types() -> None:
    event_spec = {"actionType": "cluster", "triggerType": "event",
                  "scheduleConfig": {"eventType": "documents_added", "eventThreshold": 100}}
    text = views.describe(body(spec=event_spec, status_body=status(event_counter=40, event_firings=2)), [], [], NOW)
    assert "Events counted:      40 of 100" in text and "Event firings:       2" in text
    assert "Jobs:\n  <none>" in text
    volume_spec = {"actionType": "collection_trigger", "triggerType": "conditional",
                   "scheduleConfig": {"conditionType": "volume", "metric": "document_count", "threshold": 100,
                                      "comparison": ">=", "checkIntervalSeconds": 60}}
    measured = {"value": 120, "threshold": 100, "comparison": ">=", "exceeded": True}
    text = views.describe(body(spec=volume_spec, status_body=status(last_volume_measurement=measured,
                                                                     condition_firings=1)), [], [], NOW)
    assert 'Last volume:         {"comparison": ">=", "exceeded": true, "threshold": 100, "value": 120}' in text
    assert "Condition firings:   1" in text


def test_describe_shows_the_top_keys_and_the_last_absence_window() -> None:
    keyed = {"actionType": "cluster", "triggerType": "event",
             "scheduleConfig": {"eventType": "documents_added", "eventThreshold": 5, "groupBy": "collectionid"}}
    summary = {"total": 2, "top": [{"key": "col_a", "counter": 4}, {"key": "col_b", "counter": 1}], "refused": 3,
               "refusedNoticed": 3}
    text = views.describe(body(spec=keyed, status_body=status(event_counter=5, event_keys=summary)), [], [], NOW)
    assert "Events counted:      5 of 5 over 2 collectionid key(s)" in text
    assert "Top keys:            col_a=4, col_b=1" in text and "Refused (maxKeys):   3 event(s)" in text
    silent = {"actionType": "cluster", "triggerType": "event",
              "scheduleConfig": {"eventType": "documents_added", "absence": {"withinSeconds": 3600, "fewerThan": 10}}}
    last = {"windowStart": "2026-03-02T09:00:00Z", "windowEnd": "2026-03-02T10:00:00Z", "count": 2, "fired": True}
    text = views.describe(body(spec=silent, status_body=status(last_absence=last)), [], [], NOW)
    assert "Absence:             fewer than 10 in 3600 s" in text
    assert "Last window:         2026-03-02T09:00:00Z to 2026-03-02T10:00:00Z: 2 event(s), fired" in text


def test_describe_of_an_unreadable_status_says_which_key() -> None:
    text = views.describe(body(status_body={"nextScheduledAt": "later"}), [], [], NOW)
    assert "Status:\n  Unreadable: status.nextScheduledAt" in text


# --- next -----------------------------------------------------------------------------------------


def test_next_of_a_cron_trigger_starts_at_the_operators_next_run_in_its_zone() -> None:
    berlin = body(spec=cron_spec("0 2 * * *", timezone="Europe/Berlin"),
                  status_body=status(next_scheduled_at=dt.datetime(2026, 3, 28, 1, 0, tzinfo=dt.UTC)))
    upcoming = views.upcoming(berlin, NOW, 3)
    assert [m.astimezone(upcoming.zone).isoformat() for m in upcoming.moments] == [
        "2026-03-28T02:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]
    assert upcoming.note is None


def test_next_of_an_interval_trigger_stays_on_its_lattice() -> None:
    hourly = body(spec=interval_spec(3600), status_body=status(next_scheduled_at=at(minutes=20)))
    assert views.upcoming(hourly, NOW, 3).moments == [at(minutes=20), at(minutes=80), at(minutes=140)]


def test_next_of_a_paused_trigger_is_what_a_resume_now_would_give_with_a_note() -> None:
    paused = body(spec=interval_spec(600), status_body=status(phase=Phase.PAUSED, next_scheduled_at=None))
    upcoming = views.upcoming(paused, NOW, 2)
    assert upcoming.moments == [at(minutes=10), at(minutes=20)]
    assert upcoming.note is not None and "is Paused" in upcoming.note


def test_next_of_an_event_trigger_is_an_error() -> None:
    spec = {"actionType": "cluster", "triggerType": "event",
            "scheduleConfig": {"eventType": "documents_added", "eventThreshold": 100}}
    with pytest.raises(PluginError) as raised:
        views.upcoming(body(spec=spec), NOW, 3)
    assert raised.value.code == 1 and "event Trigger" in raised.value.message


# --- run ------------------------------------------------------------------------------------------

TOKEN = "5f0c"
RUN = manual_job_name(TRIGGER_NAME, TOKEN)


def with_token(**fields: Any) -> dict[str, Any]:
    return body(status_body=status(run_now_tokens=(token_hash(TOKEN),), **fields))


@pytest.mark.parametrize(("trigger", "job_body", "state", "outcome", "job_outcome"), [
    pytest.param(body(), None, "waiting for the operator", None, None, id="not-seen-yet"),
    pytest.param(with_token(active=(ActiveRun(RUN, RunKind.MANUAL, NOW, NOW),)), None, "creating the Job", None, None,
                 id="written-ahead-not-created"),
    pytest.param(with_token(active=(ActiveRun(RUN, RunKind.MANUAL, NOW, NOW),)), job(RUN), "Pending", None, None,
                 id="pending"),
    pytest.param(with_token(active=(ActiveRun(RUN, RunKind.MANUAL, NOW, NOW),)), job(RUN, active=1), "Running", None,
                 None, id="running"),
    pytest.param(with_token(active=(ActiveRun(RUN, RunKind.MANUAL, NOW, NOW),)),
                 job(RUN, condition="Failed", message="limit"), "Failed, being counted", None, "Failed",
                 id="job-failed-not-counted"),
    pytest.param(with_token(recent_executions=(Execution(RUN, RunKind.MANUAL, NOW, Outcome.SUCCEEDED, NOW),)),
                 job(RUN, condition="Complete"), "Succeeded", "Succeeded", None, id="counted"),
    pytest.param(with_token(), None, "Refused", "Refused", None, id="token-used-without-a-run"),
])
def test_progress_of_a_run_now_token(trigger: dict[str, Any], job_body: dict[str, Any] | None, state: str,
                                     outcome: str | None, job_outcome: str | None) -> None:
    p = views.progress(trigger, job_body, TOKEN)
    assert (p.job, p.state, p.outcome, p.job_outcome) == (RUN, state, outcome, job_outcome)


def test_a_failed_run_reports_the_operators_error_and_a_replaced_one_why() -> None:
    failed = Execution(RUN, RunKind.MANUAL, NOW, Outcome.FAILED, NOW, error="container work exited with code 3")
    p = views.progress(with_token(recent_executions=(failed,)), None, TOKEN)
    assert (p.succeeded, p.error) == (False, "container work exited with code 3")
    replaced = Execution(RUN, RunKind.MANUAL, NOW, Outcome.REPLACED, NOW)
    assert "replaced by a newer run" in (views.progress(with_token(recent_executions=(replaced,)), None, TOKEN).error
                                         or "")
    assert views.progress_line(p, dt.timedelta(seconds=75)) == f"Job {RUN}: Failed (75s)"


@pytest.mark.parametrize(("trigger", "said"), [
    pytest.param(body(spec=cron_spec(state="disabled")), "is disabled: resume it first", id="disabled"),
    pytest.param(body(status_body={}), "has not seen", id="not-seen-yet"),
    pytest.param(body(status_body={"phase": "Invalid", "message": "spec.x: bad"}), "spec.x: bad", id="invalid"),
])
def test_run_is_refused_where_a_token_would_run_nothing(trigger: dict[str, Any], said: str) -> None:
    assert said in (views.run_refusal(trigger) or "")


def test_run_is_allowed_while_paused_or_failed() -> None:
    assert views.run_refusal(body(status_body=status(phase=Phase.PAUSED))) is None
    assert views.run_refusal(body(status_body=status(phase=Phase.FAILED))) is None


# --- send-event -----------------------------------------------------------------------------------


def test_events_go_one_per_event_type_and_collection_of_the_event_triggers() -> None:
    def event_trigger(name: str, event_type: str, collection: str | None = None) -> dict[str, Any]:
        config = {"eventType": event_type, "eventThreshold": 5, **({"collectionId": collection} if collection else {})}
        return body(name, spec={"actionType": "cluster", "triggerType": "event", "scheduleConfig": config})

    triggers = [event_trigger("a", "docs", "col_1"), event_trigger("b", "docs", "col_1"), event_trigger("c", "docs"),
                event_trigger("d", "deletes"), body("cron")]
    targets = views.event_targets(triggers)
    assert targets == [("deletes", None), ("docs", None), ("docs", "col_1")]
    ids = iter(["i1", "i2", "i3"])
    events = views.cloudevents(targets, source="//me", new_id=lambda: next(ids), count=40, data={"k": 1})
    assert events[2] == {"specversion": "1.0", "id": "i3", "source": "//me", "type": "docs", "count": 40,
                         "collectionid": "col_1", "data": {"k": 1}}
    assert [e["id"] for e in views.cloudevents(targets[:2], source="//me", new_id=lambda: "x", event_id="same")] == [
        "same", "same"]


def test_the_operators_answer_as_a_table() -> None:
    answer = {"namespace": "team-a", "received": 1,
              "triggers": [{"name": "on-docs", "counted": 40, "duplicates": 0, "event_counter": 40}]}
    assert views.tally_table(answer).splitlines()[1].split() == ["on-docs", "40", "0", "40"]


# --- formatting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"),
                                               (172799, "47h"), (172800, "2d")])
def test_spans_read_like_kubectl_ages(seconds: int, text: str) -> None:
    assert views.span(dt.timedelta(seconds=seconds)) == text


def test_relative_times_say_which_way() -> None:
    assert (views.relative(at(minutes=5), NOW), views.relative(at(minutes=-5), NOW), views.relative(None, NOW)) == (
        "in 5m", "5m ago", "-")


# --- completion -----------------------------------------------------------------------------------


class Known:
    """Completion's sources, remembering the scope each was asked in."""

    def __init__(self) -> None:
        self.asked: list[Mapping[str, str]] = []

    def triggers(self, scope: Mapping[str, str]) -> list[str]:
        self.asked.append(dict(scope))
        return ["nightly", "nightly-rerun", "weekly"]

    def namespaces(self, scope: Mapping[str, str]) -> list[str]:
        return ["default", "team-a"]

    def contexts(self, scope: Mapping[str, str]) -> list[str]:
        return ["prod", "staging"]


def complete(*words: str, sources: Known | None = None) -> tuple[list[str], int]:
    parser, commands = main.build_parser()
    return candidates(list(words), parser, commands, sources or Known())


def test_completion_of_commands_names_and_flags() -> None:
    names, directive = complete("")
    assert [n.split("\t")[0] for n in names] == ["list", "describe", "run", "pause", "resume", "history", "backfill",
                                                 "next", "send-event", "completion"]
    assert directive == 4
    assert [n.split("\t")[0] for n in complete("re")[0]] == ["resume"]
    assert complete("describe", "night")[0] == ["nightly", "nightly-rerun"]
    assert complete("describe", "nightly", "")[0] == []  # one NAME only
    assert complete("run", "--no")[0] == ["--no-wait"]
    assert complete("completion", "")[0] == ["bash", "zsh"]


def test_completion_of_flag_values() -> None:
    assert complete("list", "-o", "")[0] == ["json", "yaml", "wide", "name"]
    assert complete("history", "-o", "")[0] == ["json", "yaml"]
    assert complete("list", "-n", "te")[0] == ["team-a"]
    assert complete("--context", "")[0] == ["prod", "staging"]
    assert complete("list", "--kubeconfig", "") == ([], 0)  # the shell completes file names


def test_completion_of_names_asks_in_the_namespace_and_context_typed_so_far() -> None:
    known = Known()
    complete("--context=prod", "pause", "-n", "team-a", "--kubeconfig", "/k", "", sources=known)
    assert known.asked == [{"context": "prod", "namespace": "team-a", "kubeconfig": "/k"}]


def test_completion_scripts_call_the_completion_command() -> None:
    assert set(SCRIPTS) == {"bash", "zsh"}
    assert all("kubectl_complete-trigger" in script for script in SCRIPTS.values())
    assert "complete -F _kubectl_trigger kubectl-trigger" in SCRIPTS["bash"]
    assert "compdef _kubectl_trigger kubectl-trigger" in SCRIPTS["zsh"]


def test_the_completion_command_prints_candidates_then_cobras_directive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.complete_main(["list", "-o", "w"]) == 0
    assert capsys.readouterr().out == "wide\n:4\n"


# --- the kubeconfig -------------------------------------------------------------------------------


def kubeconfig(folder: Path, **user: str) -> Path:
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    contexts = [{"name": "plain", "context": {"cluster": "c", "user": "u"}},
                {"name": "team", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}}]
    path = folder / "kubeconfig"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "contexts": contexts,
                                "users": [{"name": "u", "user": user}], "current-context": "plain"}))
    return path


def test_the_kubeconfig_gives_the_namespace_and_the_bearer_token(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, token="s3cret")
    plain, team = Cluster(str(path)), Cluster(str(path), "team")
    assert (plain.namespace, team.namespace, team.user) == ("default", "team-a", "u")
    assert plain.bearer_token() == "s3cret"


def test_a_kubeconfig_without_a_token_has_none_and_an_unknown_context_is_an_error(tmp_path: Path) -> None:
    assert Cluster(str(kubeconfig(tmp_path, username="basic", password="auth"))).bearer_token() is None
    with pytest.raises(PluginError) as raised:
        Cluster(str(kubeconfig(tmp_path, token="t")), "nowhere")
    assert (raised.value.code, raised.value.message) == (1, 'context "nowhere" does not exist in the kubeconfig')


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_rewrites_one_line_on_a_terminal_and_prints_changes_otherwise() -> None:
    for tty, expected in ((True, "\rJob j: Pending (0s)\x1b[K\rJob j: Pending (1s)\x1b[K\rJob j: Running (2s)\x1b[K\n"),
                          (False, "Job j: Pending (0s)\nJob j: Running (2s)\n")):
        stream = Stream(tty)
        line = main.ProgressLine(stream)
        for text, state in (("Job j: Pending (0s)", "Pending"), ("Job j: Pending (1s)", "Pending"),
                            ("Job j: Running (2s)", "Running")):
            line.show(text, state)
        line.end()
        assert stream.getvalue() == expected


def test_every_commands_help_names_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.main(["run", "--help"])
    assert "3  not found" in capsys.readouterr().out

"""The kubectl plugin on the real control plane, run as users run it: ``kubectl trigger ...`` found
on PATH by kubectl, and the console scripts themselves. Every command, what the operator does in
answer (runs, pauses, resumes, counts events), and the exit codes scripts rely on: 3 for an unknown
Trigger, 4 for a ServiceAccount without the right, 1 for a failed run."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.harness import (
    HOLDS,
    SUCCEEDS,
    Kube,
    Operator,
    fails,
    grant,
    service_account_token,
    token_kubeconfig,
    wait_for,
)
from tests.integration.triggers import parse, trigger

BIN = Path(sys.executable).parent  # the venv's bin: kubectl-trigger and kubectl_complete-trigger
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
YEARLY = "0 0 1 1 *"  # never due during a test: runs come from run-now only
READ = [{"apiGroups": ["trigger-operator.io"], "resources": ["triggers"], "verbs": ["get"]}]
SEND = [{"apiGroups": ["trigger-operator.io"], "resources": ["triggers/events"], "verbs": ["create"]},
        {"apiGroups": ["trigger-operator.io"], "resources": ["triggers"], "verbs": ["get", "list"]}]


def plugin(kube: Kube, *args: str, kubeconfig: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``kubectl-trigger ARGS --kubeconfig=...`` (the flags after the command, where kubectl passes them)."""
    return subprocess.run([str(BIN / "kubectl-trigger"), *args, f"--kubeconfig={kubeconfig or kube.kubeconfig}"],
                          capture_output=True, text=True, timeout=timeout, env={**ENV, **(env or {})})


def through_kubectl(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    """``kubectl trigger ARGS``: kubectl finds the plugin on PATH (and refuses flags before its name)."""
    return subprocess.run(["kubectl", "trigger", *args, f"--kubeconfig={kube.kubeconfig}"], capture_output=True,
                          text=True, timeout=120, env=ENV)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, f"exit {result.returncode} (wanted {code}): {result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: "), result.stderr
    return result.stderr


def phase(kube: Kube, namespace: str, name: str, wanted: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = kube.status(namespace, name)
        return status if status.get("phase") == wanted else None

    return wait_for(f"{name} in phase {wanted}", reached, timeout=60)


def rows(table: str) -> dict[str, list[str]]:
    """A table's rows by their NAME column (the first one)."""
    return {line.split()[0]: line.split() for line in table.splitlines()[1:]}


def test_list_through_kubectl_as_json_wide_name_and_across_namespaces(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("hourly", cron="0 * * * *"), namespace)
    kube.apply(trigger("sleepy", interval=3600, state="paused"), namespace)
    phase(kube, namespace, "hourly", "Active")
    phase(kube, namespace, "sleepy", "Paused")

    out = ok(through_kubectl(kube, "list", "-n", namespace))
    assert out.splitlines()[0].split()[:4] == ["NAME", "PHASE", "TYPE", "SCHEDULE"]
    listed = rows(out)
    assert listed["hourly"][1:6] == ["Active", "cron", "cron", "0", "*"]
    assert listed["sleepy"][1:5] == ["Paused", "interval", "interval", "3600s"]
    assert "in " in out  # hourly's next run

    items = json.loads(ok(plugin(kube, "list", "-n", namespace, "-o", "json")))["items"]
    assert {(i["metadata"]["name"], i["status"]["phase"]) for i in items} == {("hourly", "Active"),
                                                                              ("sleepy", "Paused")}
    assert yaml.safe_load(ok(plugin(kube, "list", "-n", namespace, "-o", "yaml")))["kind"] == "List"
    assert ok(plugin(kube, "list", "-n", namespace, "-o", "name")).splitlines() == [
        "trigger.trigger-operator.io/hourly", "trigger.trigger-operator.io/sleepy"]
    wide = ok(plugin(kube, "list", "-n", namespace, "-o", "wide"))
    assert wide.splitlines()[0].endswith("READY   REASON      ACTION    IN A ROW   LAST JOB")
    assert rows(wide)["sleepy"][-5:] == ["False", "Paused", "cluster", "0", "-"]

    everywhere = ok(plugin(kube, "list", "-A"))
    assert everywhere.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [namespace, "hourly", "Active"] in [line.split()[:3] for line in everywhere.splitlines()]


def test_context_chooses_the_namespace_and_an_unknown_one_is_an_error(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    kube.apply(trigger("hourly", cron="0 * * * *"), namespace)
    config = yaml.safe_load(kube.kubeconfig.read_text())
    base = config["contexts"][0]["context"]
    config["contexts"] = [{"name": "elsewhere", "context": {**base, "namespace": "default"}},
                          {"name": "team", "context": {**base, "namespace": namespace}}]
    config["current-context"] = "elsewhere"
    two = tmp_path / "two-contexts"
    two.write_text(yaml.safe_dump(config))

    assert "hourly" in rows(ok(plugin(kube, "list", "--context", "team", kubeconfig=two)))
    assert "hourly" not in ok(plugin(kube, "list", kubeconfig=two))  # the current context's namespace
    assert "Name:      hourly" in ok(plugin(kube, "describe", "hourly", "--context=team", kubeconfig=two))
    assert 'context "nowhere" does not exist' in refused(plugin(kube, "list", "--context", "nowhere",
                                                                kubeconfig=two), 1)


def test_run_follows_a_succeeding_job_to_0_and_a_failing_one_to_1_with_its_reason(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("works", cron=YEARLY, pod=SUCCEEDS), namespace)
    kube.apply(trigger("broken", cron=YEARLY, pod=fails(3, "model file missing")), namespace)
    phase(kube, namespace, "works", "Active")
    phase(kube, namespace, "broken", "Active")

    done = plugin(kube, "run", "works", "-n", namespace, "--timeout", "180")
    out = ok(done)
    requested, *progress, last = out.splitlines()
    job = requested.split("Job ")[-1]
    assert requested == f"trigger.trigger-operator.io/works run requested: Job {job}"
    assert job.startswith("works-m") and "\r" not in out  # not a terminal: plain lines, one per change
    assert progress and all(line.startswith(f"Job {job}: ") for line in progress)
    assert last.startswith(f"Job {job} succeeded")
    assert [j.metadata.name for j in kube.jobs(namespace, "works")] == [job]
    assert kube.status(namespace, "works")["executionCount"] == 1  # the operator counted it before we said so

    failed = plugin(kube, "run", "broken", "-n", namespace, "--timeout", "180")
    said = refused(failed, 1)
    assert "did not succeed (Failed)" in said and "model file missing" in said and "exited with code 3" in said
    assert kube.status(namespace, "broken")["lastExecutionStatus"] == "Failed"


def test_run_no_wait_returns_at_once_and_timeout_stops_following(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("held", cron=YEARLY, pod=HOLDS, concurrencyPolicy="Allow"), namespace)
    phase(kube, namespace, "held", "Active")
    out = ok(plugin(kube, "run", "held", "-n", namespace, "--no-wait"))
    job = out.split("Job ")[-1].strip()
    assert len(out.splitlines()) == 1
    wait_for(f"the Job {job}", lambda: job in [j.metadata.name for j in kube.jobs(namespace, "held")], timeout=60)

    said = refused(plugin(kube, "run", "held", "-n", namespace, "--timeout", "8"), 1)
    assert "timed out after 8s" in said and "the run goes on" in said

    kube.patch_spec(namespace, "held", {"state": "disabled"})
    phase(kube, namespace, "held", "Disabled")
    assert "is disabled: resume it first" in refused(plugin(kube, "run", "held", "-n", namespace), 1)


def test_describe_shows_status_executions_jobs_and_events(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("nightly", cron=YEARLY, description="Nightly clustering"), namespace)
    phase(kube, namespace, "nightly", "Active")
    job = ok(plugin(kube, "run", "nightly", "-n", namespace, "--timeout", "180")).splitlines()[0].split("Job ")[-1]

    def described() -> str | None:
        text = ok(plugin(kube, "describe", "nightly", "-n", namespace))
        return text if "JobSucceeded" in text else None

    text = wait_for("the JobSucceeded Event in describe", described, timeout=60)
    for expected in ("Name:        nightly", f"Namespace:   {namespace}", "Description: Nightly clustering",
                     "  Schedule:      cron 0 0 1 1 * UTC", "  Phase:               Active",
                     "  Ready:               True Scheduled", "  Next run:            ",
                     "  Runs:                1 succeeded, 0 failed (0 in a row)", "Recent executions:",
                     "Jobs:", "Events:", "JobCreated"):
        assert expected in text, f"{expected!r} not in\n{text}"
    executions = text.split("Recent executions:\n")[1].split("Jobs:")[0]
    assert executions.splitlines()[1].split()[1:4] == ["manual", job, "Succeeded"]
    jobs = text.split("Jobs:\n")[1].split("Events:")[0]
    assert jobs.splitlines()[1].split()[:3] == [job, "manual", "Succeeded"]


def test_pause_and_resume_change_what_the_operator_does_and_resume_clears_failed(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("often", interval=2, concurrencyPolicy="Allow"), namespace)
    wait_for("a scheduled Job", lambda: kube.jobs(namespace, "often"), timeout=60)
    assert ok(plugin(kube, "pause", "often", "-n", namespace)) == "trigger.trigger-operator.io/often paused\n"
    status = phase(kube, namespace, "often", "Paused")
    assert "nextScheduledAt" not in status
    cursor = status.get("lastScheduleTime")
    wait_for("the last runs to be counted", lambda: not kube.status(namespace, "often").get("active"), timeout=60)
    jobs = len(kube.jobs(namespace, "often"))
    time.sleep(5)  # two and a half intervals: a paused Trigger takes no moment and makes no Job
    assert kube.status(namespace, "often").get("lastScheduleTime") == cursor
    assert len(kube.jobs(namespace, "often")) <= jobs  # (pruning may remove some)

    assert ok(plugin(kube, "resume", "often", "-n", namespace)) == "trigger.trigger-operator.io/often resumed\n"
    phase(kube, namespace, "often", "Active")
    wait_for("a moment run after the resume", lambda: kube.status(namespace, "often").get("lastScheduleTime")
             != cursor, timeout=60)

    kube.apply(trigger("broken", cron=YEARLY, maxConsecutiveFailures=1, pod=fails(2, "no input")), namespace)
    phase(kube, namespace, "broken", "Active")
    refused(plugin(kube, "run", "broken", "-n", namespace, "--timeout", "180"), 1)
    phase(kube, namespace, "broken", "Failed")
    resumed = ok(plugin(kube, "resume", "broken", "-n", namespace))
    assert resumed.startswith("trigger.trigger-operator.io/broken resumed (it had stopped at its failure limit")
    status = phase(kube, namespace, "broken", "Active")
    assert status["consecutiveFailures"] == 0 and status["nextScheduledAt"]
    assert kube.trigger(namespace, "broken")["spec"]["maxConsecutiveFailures"] == 1  # no spec edit needed


def test_history_and_next(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("yearly", cron=YEARLY, timezone="Europe/Berlin"), namespace)
    phase(kube, namespace, "yearly", "Active")
    job = ok(plugin(kube, "run", "yearly", "-n", namespace, "--timeout", "180")).splitlines()[0].split("Job ")[-1]

    runs = json.loads(ok(plugin(kube, "history", "yearly", "-n", namespace, "-o", "json")))
    assert [(r["name"], r["kind"], r["outcome"]) for r in runs] == [(job, "manual", "Succeeded")]
    assert isinstance(runs[0]["durationMs"], int)
    assert yaml.safe_load(ok(plugin(kube, "history", "yearly", "-n", namespace, "-o", "yaml")))[0]["name"] == job
    table = ok(plugin(kube, "history", "yearly", "-n", namespace))
    assert table.splitlines()[0].split() == ["MOMENT", "KIND", "JOB", "RESULT", "DURATION", "ERROR"]
    assert table.splitlines()[1].split()[1:4] == ["manual", job, "Succeeded"]

    moments = ok(plugin(kube, "next", "yearly", "-n", namespace, "--count", "3")).splitlines()
    assert len(moments) == 3 and all(m.endswith("-01-01T00:00:00+01:00") for m in moments)
    assert dt.datetime.fromisoformat(moments[0]) == parse(kube.status(namespace, "yearly")["nextScheduledAt"])
    preview = ok(plugin(kube, "next", "--cron", "0 2 * * *", "--timezone", "Europe/Berlin",
                        "--after", "2026-03-28T00:00:00Z", "--count", "2"))
    assert preview.splitlines() == ["2026-03-28T02:00:00+01:00", "2026-03-29T03:00:00+02:00"]


def test_send_event_is_counted_by_the_operator_with_the_kubeconfigs_token(
        kube: Kube, namespace: str, operator: Operator, tmp_path: Path) -> None:
    manifest = trigger("on-docs", triggerType="event")
    manifest["spec"]["scheduleConfig"] = {"eventType": "documents_added", "eventThreshold": 100,
                                          "collectionId": "col_abc"}
    kube.apply(manifest, namespace)
    phase(kube, namespace, "on-docs", "Active")
    token = service_account_token(kube, namespace, "ingest")
    grant(kube, namespace, "ingest", [*SEND, *READ])  # get: the operator's answer names the Triggers only then
    sender = token_kubeconfig(kube, token, tmp_path / "ingest")

    out = ok(plugin(kube, "send-event", "on-docs", "-n", namespace, "--count", "40", "--url", operator.url,
                    kubeconfig=sender))
    assert out.splitlines()[0] == f"1 event(s) sent to namespace {namespace}"
    assert rows(out.split("\n", 1)[1])["on-docs"] == ["on-docs", "40", "0", "40"]
    assert kube.status(namespace, "on-docs")["eventCounter"] == 40  # stored before the answer

    answer = json.loads(ok(plugin(kube, "send-event", "--all", "-n", namespace, "--count", "60", "--id", "batch-7",
                                  "-o", "json", kubeconfig=sender, env={"TRIGGER_OPERATOR_URL": operator.url})))
    assert answer["triggers"] == [{"name": "on-docs", "counted": 60, "duplicates": 0, "event_counter": 100}]
    wait_for("the event run's Job", lambda: [j.metadata.name for j in kube.jobs(namespace, "on-docs")]
             == ["on-docs-e1"], timeout=60)
    again = json.loads(ok(plugin(kube, "send-event", "on-docs", "-n", namespace, "--count", "60", "--id", "batch-7",
                                 "-o", "json", "--url", operator.url, kubeconfig=sender)))
    assert again["triggers"][0]["duplicates"] == 1  # the same source and id: counted once

    said = refused(plugin(kube, "send-event", "on-docs", "-n", namespace, "--url", operator.url), 1)
    assert "has no bearer token" in said and "--token" in said  # the harness's admin uses a client certificate
    ok(plugin(kube, "send-event", "on-docs", "-n", namespace, "--url", operator.url, "--token", token))
    outsider = service_account_token(kube, namespace, "outsider")
    grant(kube, namespace, "outsider", READ)
    said = refused(plugin(kube, "send-event", "on-docs", "-n", namespace, "--url", operator.url, "--token", outsider),
                   4)
    assert "forbidden" in said and "triggers/events" in said
    assert kube.status(namespace, "on-docs")["eventCounter"] == 1


def test_unknown_triggers_are_3_and_missing_rights_are_4_naming_the_verb(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    kube.apply(trigger("hourly", cron="0 * * * *"), namespace)
    for command in ("describe", "run", "pause", "resume", "history", "next"):
        said = refused(plugin(kube, command, "ghost", "-n", namespace), 3)
        assert said == f'error: trigger "ghost" not found in namespace "{namespace}"\n', command

    reader = token_kubeconfig(kube, service_account_token(kube, namespace, "reader"), tmp_path / "reader")
    grant(kube, namespace, "reader", READ)
    ok(plugin(kube, "history", "hourly", "-n", namespace, kubeconfig=reader))  # get is all it needs
    for args, verb, resource in ((("pause", "hourly"), "patch", "triggers"), (("resume", "hourly"), "patch",
                                                                              "triggers"),
                                 (("list",), "list", "triggers"), (("describe", "hourly"), "list", "jobs")):
        said = refused(plugin(kube, *args, "-n", namespace, kubeconfig=reader), 4)
        assert said.startswith(f"error: forbidden: may not {verb} {resource}"), said
        assert f'cannot {verb} resource "{resource}"' in said  # the API server's own words
    assert kube.trigger(namespace, "hourly")["spec"].get("state", "active") == "active"  # nothing changed


def test_completion_through_kubectl_and_the_completion_script(kube: Kube, namespace: str) -> None:
    kube.apply(trigger("nightly", cron="0 2 * * *"), namespace)
    kube.apply(trigger("nightly-rerun", cron="0 3 * * *"), namespace)
    completed = subprocess.run(["kubectl", "__complete", "trigger", "describe", f"--kubeconfig={kube.kubeconfig}",
                                "-n", namespace, "night"], capture_output=True, text=True, timeout=60, env=ENV)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == ["nightly", "nightly-rerun", ":4"]
    commands = subprocess.run([str(BIN / "kubectl_complete-trigger"), "pa"], capture_output=True, text=True,
                              timeout=60, env=ENV).stdout
    assert commands.splitlines()[0].split("\t")[0] == "pause"
    script = ok(plugin(kube, "completion", "bash"))
    words = f"kubectl-trigger describe --kubeconfig={kube.kubeconfig} -n {namespace} nightly-"
    bash = subprocess.run(["bash", "-c", f'{script}\nCOMP_WORDS=({words}); COMP_CWORD=5; _kubectl_trigger; '
                           'printf "%s\\n" "${COMPREPLY[@]}"'], capture_output=True, text=True, timeout=60, env=ENV)
    assert bash.stdout.splitlines() == ["nightly-rerun"], bash.stderr

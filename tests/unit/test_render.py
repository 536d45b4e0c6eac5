"""Jobs for a Trigger's runs: names, manifests, what a Job says about its run, pruning, the catalog."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.conftest import NAMESPACE, TRIGGER_NAME, TRIGGER_UID, at, job_template, job_view, utc
from trigger_operator.api import ANNOTATION_SCHEDULED_TIME, LABEL_MANAGED_BY, LABEL_RUN_KIND, LABEL_TRIGGER
from trigger_operator.jobs.catalog import default_source, merge_catalog, merge_sources, parse_catalog, parse_sources
from trigger_operator.jobs.observe import (
    JobPhase,
    JobView,
    failure_message,
    jobs_to_prune,
    observe_job,
)
from trigger_operator.jobs.render import TriggerRef, manual_job_name, render_job, scheduled_job_name, template_problem
from trigger_operator.model.spec import NAME_MAX_LENGTH, ConditionType, SpecError
from trigger_operator.model.status import CUT_MARKER, MESSAGE_MAX_CHARS, RunKind

REF = TriggerRef(namespace=NAMESPACE, name=TRIGGER_NAME, uid=TRIGGER_UID, action_type="cluster",
                 action_config={"cluster_id": "clust_1", "depth": 2})
JOB_NAME = f"{TRIGGER_NAME}-1772445600"


def render(template: Mapping[str, Any] | None = None, kind: RunKind = RunKind.SCHEDULED) -> dict[str, Any]:
    return render_job(REF, name=JOB_NAME, kind=kind, scheduled_time=at(),
                      template=job_template() if template is None else template)


def env_of(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


# --- names ------------------------------------------------------------------------------------------


def test_scheduled_job_name_is_the_trigger_name_and_the_unix_seconds_of_the_moment() -> None:
    assert scheduled_job_name(TRIGGER_NAME, at(microseconds=999)) == "nightly-1772445600"


@pytest.mark.parametrize("moment", [
    pytest.param(at(), id="today"),
    pytest.param(utc("2286-11-20T17:46:39"), id="the-last-ten-digit-second"),
])
def test_scheduled_job_name_of_the_longest_trigger_name_fits_in_63_characters(moment: dt.datetime) -> None:
    assert len(scheduled_job_name("t" * NAME_MAX_LENGTH, moment)) == 63


def test_manual_job_name_is_stable_per_token_and_differs_between_tokens() -> None:
    first = manual_job_name(TRIGGER_NAME, "2026-03-02T09:00")
    assert first == "nightly-mf513126bb"
    assert manual_job_name(TRIGGER_NAME, "2026-03-02T09:00") == first
    assert manual_job_name(TRIGGER_NAME, "2026-03-02T09:01") != first
    assert len(manual_job_name("t" * NAME_MAX_LENGTH, "any token")) == 63


# --- manifests --------------------------------------------------------------------------------------


def test_job_is_owned_and_controlled_by_its_trigger() -> None:
    job = render()
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert (job["metadata"]["name"], job["metadata"]["namespace"]) == (JOB_NAME, NAMESPACE)
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger", "name": TRIGGER_NAME,
        "uid": TRIGGER_UID, "controller": True, "blockOwnerDeletion": True}]


@pytest.mark.parametrize(("kind", "run_kind"), [
    pytest.param(RunKind.SCHEDULED, "scheduled", id="scheduled-run"),
    pytest.param(RunKind.MANUAL, "manual", id="run-now"),
])
def test_job_labels_are_the_templates_plus_ours(kind: RunKind, run_kind: str) -> None:
    assert render(kind=kind)["metadata"]["labels"] == {
        "team": "data", LABEL_TRIGGER: TRIGGER_NAME, LABEL_RUN_KIND: run_kind,
        LABEL_MANAGED_BY: "trigger-operator"}


def test_our_labels_win_over_a_template_label_of_the_same_name() -> None:
    template = job_template()
    template["metadata"]["labels"][LABEL_TRIGGER] = "someone-else"
    assert render(template)["metadata"]["labels"][LABEL_TRIGGER] == TRIGGER_NAME


def test_job_annotations_are_the_templates_plus_the_scheduled_time() -> None:
    assert render()["metadata"]["annotations"] == {"owner": "data-platform",
                                                    ANNOTATION_SCHEDULED_TIME: "2026-03-02T10:00:00Z"}


def test_template_metadata_cannot_rename_or_move_the_job() -> None:
    template = job_template()
    template["metadata"].update(name="renamed", namespace="elsewhere")
    job = render(template)
    assert (job["metadata"]["name"], job["metadata"]["namespace"]) == (JOB_NAME, NAMESPACE)


def test_template_without_metadata_gets_only_our_labels_and_annotation() -> None:
    template = job_template()
    del template["metadata"]
    job = render(template)
    assert set(job["metadata"]["labels"]) == {LABEL_TRIGGER, LABEL_RUN_KIND, LABEL_MANAGED_BY}
    assert set(job["metadata"]["annotations"]) == {ANNOTATION_SCHEDULED_TIME}


def test_pods_carry_the_trigger_label_next_to_their_own() -> None:
    template = job_template()
    template["spec"]["template"]["metadata"] = {"labels": {"app": "clusterer"}}
    assert render(template)["spec"]["template"]["metadata"]["labels"] == {"app": "clusterer",
                                                                          LABEL_TRIGGER: TRIGGER_NAME}


def test_every_container_gets_the_runs_facts_in_its_environment() -> None:
    template = job_template()
    template["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox:1.37"})
    template["spec"]["template"]["spec"]["initContainers"] = [{"name": "fetch", "image": "busybox:1.37"}]
    pod = render(template, kind=RunKind.MANUAL)["spec"]["template"]["spec"]
    containers = pod["initContainers"] + pod["containers"]
    facts = {
        "TRIGGER_NAME": TRIGGER_NAME,
        "TRIGGER_NAMESPACE": NAMESPACE,
        "TRIGGER_ACTION_TYPE": "cluster",
        "TRIGGER_ACTION_CONFIG": '{"cluster_id": "clust_1", "depth": 2}',
        "TRIGGER_SCHEDULED_TIME": "2026-03-02T10:00:00Z",
        "TRIGGER_EXECUTION_ID": JOB_NAME,
        "TRIGGER_RUN_KIND": "manual",
    }
    assert [env_of(c) for c in containers] == [facts, {"LOG_LEVEL": "debug", **facts}, facts]
    assert json.loads(facts["TRIGGER_ACTION_CONFIG"]) == REF.action_config


def test_a_containers_own_variable_of_one_of_our_names_is_replaced_and_the_rest_kept_in_order() -> None:
    template = job_template()
    template["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "1"}, {"name": "TRIGGER_NAME", "value": "stale"},
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    env = render(template)["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert names[:2] == ["A", "B"]
    assert env[1] == {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert [e for e in env if e["name"] == "TRIGGER_NAME"] == [
        {"name": "TRIGGER_NAME", "value": TRIGGER_NAME}]


@pytest.mark.parametrize(("pod_spec", "expected"), [
    pytest.param({}, "Never", id="defaulted-to-never"),
    pytest.param({"restartPolicy": "OnFailure"}, "OnFailure", id="the-templates-choice-kept"),
])
def test_restart_policy_defaults_to_never(pod_spec: dict[str, str], expected: str) -> None:
    template = job_template()
    template["spec"]["template"]["spec"].update(pod_spec)
    assert render(template)["spec"]["template"]["spec"]["restartPolicy"] == expected


def test_containers_fall_back_to_their_log_for_a_termination_message_unless_the_template_chose() -> None:
    """An exec the kernel refuses (an environment over 128 KiB) writes no termination message:
    runc says why only in the container's log (seen on a real node)."""
    template = job_template()
    pod = template["spec"]["template"]["spec"]
    pod["initContainers"] = [{"name": "init", "image": "busybox", "terminationMessagePolicy": "File"}]
    rendered = render(template)["spec"]["template"]["spec"]
    assert [c["terminationMessagePolicy"] for c in rendered["containers"]] == ["FallbackToLogsOnError"]
    assert rendered["initContainers"][0]["terminationMessagePolicy"] == "File"


def test_the_template_is_not_changed_by_rendering() -> None:
    template = job_template()
    template["spec"]["template"]["metadata"] = {"labels": {"app": "clusterer"}}
    before = copy.deepcopy(template)
    job = render(template)
    job["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "LATER", "value": "x"})
    job["metadata"]["labels"]["later"] = "x"
    assert template == before


@pytest.mark.parametrize(("template", "problem"), [
    pytest.param({}, "has no spec", id="no-spec"),
    pytest.param({"spec": "job"}, "has no spec", id="spec-not-a-mapping"),
    pytest.param({"spec": {"backoffLimit": 1}}, "has no spec.template.spec", id="no-pod-template"),
    pytest.param({"spec": {"template": {"spec": {}}}}, "has no containers in spec.template.spec.containers",
                 id="no-containers"),
    pytest.param({"spec": {"template": {"spec": {"containers": []}}}},
                 "has no containers in spec.template.spec.containers", id="an-empty-container-list"),
    pytest.param(job_template(), None, id="a-usable-template"),
])
def test_template_problem_says_what_is_missing(template: Mapping[str, Any], problem: str | None) -> None:
    assert template_problem(template) == problem


# --- observing Jobs ---------------------------------------------------------------------------------


def job(*conditions: dict[str, str], status: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": JOB_NAME, "creationTimestamp": "2026-03-02T10:00:01Z",
                     "annotations": {ANNOTATION_SCHEDULED_TIME: "2026-03-02T10:00:00Z"}, **(meta or {})},
        "status": {"startTime": "2026-03-02T10:00:02Z", "conditions": list(conditions), **(status or {})},
    }


COMPLETE = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-03-02T10:05:00Z"}
FAILED = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
          "message": "Job has reached the specified backoff limit",
          "lastTransitionTime": "2026-03-02T10:06:00Z"}
SUCCESS_CRITERIA_MET = {"type": "SuccessCriteriaMet", "status": "True",
                        "lastTransitionTime": "2026-03-02T10:04:00Z"}
FAILURE_TARGET = {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"}


@pytest.mark.parametrize(("body", "phase", "finished_at", "message"), [
    pytest.param(job(), JobPhase.RUNNING, None, None, id="no-conditions-is-running"),
    pytest.param(job(COMPLETE, status={"completionTime": "2026-03-02T10:05:01Z"}), JobPhase.SUCCEEDED,
                 at(minutes=5, seconds=1), None, id="complete-finishes-at-its-completion-time"),
    pytest.param(job(COMPLETE), JobPhase.SUCCEEDED, at(minutes=5), None,
                 id="complete-without-completion-time-finishes-at-the-condition"),
    pytest.param(job(FAILED), JobPhase.FAILED, at(minutes=6),
                 "BackoffLimitExceeded: Job has reached the specified backoff limit",
                 id="failed-carries-reason-and-message"),
    pytest.param(job({"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}), JobPhase.FAILED,
                 None, "DeadlineExceeded", id="failed-with-a-reason-only"),
    pytest.param(job(SUCCESS_CRITERIA_MET), JobPhase.RUNNING, None, None,
                 id="success-criteria-met-alone-is-still-running"),
    pytest.param(job(SUCCESS_CRITERIA_MET, COMPLETE), JobPhase.SUCCEEDED, at(minutes=5), None,
                 id="success-criteria-met-then-complete-succeeds"),
    pytest.param(job(FAILURE_TARGET), JobPhase.RUNNING, None, None,
                 id="failure-target-alone-is-still-running"),
    pytest.param(job({**COMPLETE, "status": "False"}), JobPhase.RUNNING, None, None,
                 id="a-false-condition-does-not-count"),
])
def test_observe_job_reads_the_phase_from_terminal_conditions(body: Mapping[str, Any], phase: JobPhase,
                                                              finished_at: dt.datetime | None,
                                                              message: str | None) -> None:
    view = observe_job(body)
    assert (view.phase, view.finished_at, view.message) == (phase, finished_at, message)


def test_observe_job_reads_name_times_and_scheduled_moment() -> None:
    assert observe_job(job()) == JobView(name=JOB_NAME, phase=JobPhase.RUNNING, scheduled_time=at(),
                                         started_at=at(seconds=2), finished_at=None, created_at=at(seconds=1),
                                         message=None)


@pytest.mark.parametrize(("body", "deleted_event", "deleted"), [
    pytest.param(job(), False, False, id="a-live-job"),
    pytest.param(job(), True, True, id="a-delete-event"),
    pytest.param(job(meta={"deletionTimestamp": "2026-03-02T10:07:00Z"}), False, True, id="being-deleted"),
])
def test_observe_job_notices_deletion(body: Mapping[str, Any], deleted_event: bool, deleted: bool) -> None:
    assert observe_job(body, deleted=deleted_event).deletion_begun is deleted


def test_observe_job_accepts_an_almost_empty_object() -> None:
    assert observe_job({}) == JobView(name="", phase=JobPhase.RUNNING, scheduled_time=None, started_at=None,
                                      finished_at=None, created_at=None, message=None)


def pod(created: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"creationTimestamp": created}, "status": {"containerStatuses": list(containers)}}


def terminated(name: str, exit_code: int, message: str | None = None,
               reason: str | None = "Error") -> dict[str, Any]:
    state: dict[str, Any] = {"exitCode": exit_code, "reason": reason}
    if message is not None:
        state["message"] = message
    return {"name": name, "state": {"terminated": state}}


RUNNING = {"name": "sidecar", "state": {"running": {"startedAt": "2026-03-02T10:00:03Z"}}}


@pytest.mark.parametrize(("job_message", "pods", "expected"), [
    pytest.param(None, [], "the Job failed", id="nothing-known"),
    pytest.param("BackoffLimitExceeded: limit", [], "BackoffLimitExceeded: limit", id="job-condition-only"),
    pytest.param("BackoffLimitExceeded: limit",
                 [pod("2026-03-02T10:00:02Z", terminated("action", 3, "cannot reach the database\n"))],
                 "BackoffLimitExceeded: limit; "
                 "container action exited with code 3: cannot reach the database",
                 id="termination-message-trimmed"),
    pytest.param(None, [pod("2026-03-02T10:00:02Z", terminated("action", 137, reason="OOMKilled"))],
                 "container action exited with code 137: OOMKilled", id="reason-without-a-message"),
    pytest.param(None, [pod("2026-03-02T10:00:02Z", terminated("action", 1, "  ", reason=None))],
                 "container action exited with code 1: failed", id="neither-message-nor-reason"),
    pytest.param(None, [pod("2026-03-02T10:00:02Z", terminated("init", 0, "ok"), RUNNING,
                            terminated("action", 2, "bad input"))],
                 "container action exited with code 2: bad input", id="clean-and-running-containers-ignored"),
    pytest.param("BackoffLimitExceeded: limit",
                 [pod("2026-03-02T10:00:02Z", terminated("action", 1, "first try")),
                  pod("2026-03-02T10:01:00Z", terminated("action", 1, "second try"))],
                 "BackoffLimitExceeded: limit; container action exited with code 1: second try",
                 id="only-the-newest-failed-pod"),
    pytest.param(None, [pod("2026-03-02T10:00:02Z", terminated("action", 1, "first try")),
                        pod("2026-03-02T10:01:00Z", RUNNING)],
                 "container action exited with code 1: first try",
                 id="an-older-pod-when-the-newest-did-not-fail"),
])
def test_failure_message_adds_what_the_failed_containers_said(job_message: str | None,
                                                              pods: list[dict[str, Any]],
                                                              expected: str) -> None:
    assert failure_message(job_message, pods) == expected


def test_failure_message_without_a_job_message_also_tells_only_the_newest_failed_pod() -> None:
    pods = [pod("2026-03-02T10:00:02Z", terminated("action", 1, "first try")),
            pod("2026-03-02T10:01:00Z", terminated("action", 1, "second try"))]
    assert failure_message(None, pods) == "container action exited with code 1: second try"


@pytest.mark.parametrize(("length", "expected_length", "cut"), [
    pytest.param(MESSAGE_MAX_CHARS, MESSAGE_MAX_CHARS, False, id="at-the-limit-kept-whole"),
    pytest.param(MESSAGE_MAX_CHARS + 1, MESSAGE_MAX_CHARS, True, id="one-over-the-limit-cut"),
    pytest.param(10 * MESSAGE_MAX_CHARS, MESSAGE_MAX_CHARS, True, id="far-over-the-limit-cut"),
])
def test_failure_message_is_cut_to_the_limit(length: int, expected_length: int, cut: bool) -> None:
    text = failure_message("x" * length, [])
    assert len(text) == expected_length
    assert text.endswith(CUT_MARKER) is cut  # the same marker as every text status cuts


# --- pruning ----------------------------------------------------------------------------------------


def done(name: str, phase: JobPhase, minute: int, *, deleted: bool = False) -> JobView:
    return job_view(name, phase, finished_at=at(minutes=minute), deleted=deleted)


S, F = JobPhase.SUCCEEDED, JobPhase.FAILED


@pytest.mark.parametrize(("jobs", "successful_limit", "failed_limit", "expected"), [
    pytest.param([done("s1", S, 1), done("s2", S, 2), done("s3", S, 3)], 3, 1, [],
                 id="within-both-limits-nothing"),
    pytest.param([done("s3", S, 3), done("s1", S, 1), done("s4", S, 4), done("s2", S, 2)], 2, 1, ["s1", "s2"],
                 id="successful-beyond-the-limit-oldest-first"),
    pytest.param([done("f2", F, 2), done("f1", F, 1), done("f3", F, 3), done("s1", S, 1)], 3, 1, ["f1", "f2"],
                 id="failed-beyond-their-own-limit"),
    pytest.param([done("s1", S, 1), done("s2", S, 2), done("f1", F, 1), done("f2", F, 2)], 1, 1, ["s1", "f1"],
                 id="both-limits-applied-separately"),
    pytest.param([done("s1", S, 1), done("s2", S, 2)], 0, 0, ["s1", "s2"], id="a-limit-of-zero-keeps-none"),
    pytest.param([done("s1", S, 1, deleted=True), done("s2", S, 2), done("s3", S, 3)], 1, 1, ["s2"],
                 id="deleted-jobs-are-neither-pruned-nor-counted"),
    pytest.param([done("b", S, 1), done("a", S, 1), done("c", S, 2)], 1, 1, ["a", "b"],
                 id="ties-broken-by-name"),
    pytest.param([job_view("r1"), job_view("r2"), done("s1", S, 1)], 0, 0, ["s1"], id="running-jobs-ignored"),
    pytest.param([job_view("old", S, created_at=at(minutes=-9)),
                  job_view("new", S, started_at=at(minutes=-1))],
                 1, 1, ["old"], id="without-a-finish-time-the-start-or-creation-time-counts"),
])
def test_jobs_to_prune_respects_both_history_limits(jobs: list[JobView], successful_limit: int,
                                                   failed_limit: int, expected: list[str]) -> None:
    assert jobs_to_prune(jobs, successful_limit=successful_limit, failed_limit=failed_limit) == expected


# --- the action catalog -----------------------------------------------------------------------------

CLUSTER_YAML = """\
spec:
  template:
    spec:
      containers:
      - name: action
        image: busybox:1.37
"""


def test_parse_catalog_reads_one_template_per_action_type() -> None:
    catalog, problems = parse_catalog({"cluster": CLUSTER_YAML, "batch_rerun.yaml": CLUSTER_YAML})
    container = {"name": "action", "image": "busybox:1.37"}
    assert catalog == {
        "cluster": {"spec": {"template": {"spec": {"containers": [container]}}}},
        "batch_rerun": {"spec": {"template": {"spec": {"containers": [container]}}}},
    }
    assert problems == []


def test_a_template_that_cannot_make_a_job_is_a_problem_of_its_key() -> None:
    catalog, problems = parse_catalog({"cluster": CLUSTER_YAML, "batch_rerun": "spec: {backoffLimit: 1}"})
    assert list(catalog) == ["cluster"]
    assert problems == ["key 'batch_rerun': the Job template has no spec.template.spec"]


@pytest.mark.parametrize("data", [
    pytest.param({}, id="key-removed"),
    pytest.param({"cluster": "spec: [unclosed"}, id="key-broken"),
    pytest.param({"cluster": "spec: {}"}, id="template-without-pods"),
    pytest.param(None, id="configmap-deleted"),
])
def test_an_action_type_keeps_its_last_good_template(data: dict[str, str] | None) -> None:
    good, _ = merge_catalog({}, {"cluster": CLUSTER_YAML})
    catalog, problems = merge_catalog(good, data)
    assert catalog == good
    assert any("'cluster' has no usable template now: the last good one stays in use" in p for p in problems)


def test_a_changed_template_replaces_the_last_good_one() -> None:
    good, _ = merge_catalog({}, {"cluster": CLUSTER_YAML})
    changed = CLUSTER_YAML.replace("busybox:1.37", "busybox:1.38")
    catalog, problems = merge_catalog(good, {"cluster": changed})
    assert catalog["cluster"]["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.38"
    assert problems == []


@pytest.mark.parametrize(("data", "problem"), [
    pytest.param({"cluster": "spec: [unclosed"}, "key 'cluster': not YAML", id="not-yaml"),
    pytest.param({"cluster": "- a\n- b\n"}, "key 'cluster': expected a Job template", id="a-list"),
    pytest.param({"cluster": "just text"}, "key 'cluster': expected a Job template", id="a-string"),
    pytest.param({"cluster": ""}, "key 'cluster': expected a Job template", id="empty"),
])
def test_parse_catalog_reports_a_key_that_is_no_template_and_keeps_the_others(data: dict[str, str],
                                                                              problem: str) -> None:
    catalog, problems = parse_catalog({**data, "batch_rerun": CLUSTER_YAML})
    assert list(catalog) == ["batch_rerun"]
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_parse_catalog_reports_problems_in_key_order() -> None:
    _, problems = parse_catalog({"zeta": "[]", "alpha": "[]"})
    assert [p.split(":")[0] for p in problems] == ["key 'alpha'", "key 'zeta'"]


@pytest.mark.parametrize("data", [pytest.param(None, id="no-configmap"), pytest.param({}, id="no-keys")])
def test_parse_catalog_of_nothing_is_empty(data: dict[str, str] | None) -> None:
    assert parse_catalog(data) == ({}, [])


ROOT = Path(__file__).resolve().parents[2]


# --- default condition sources (<action type>.sources keys) ------------------------------------------

SOURCES_YAML = """\
drift:
  configMap: {name: trigger-metrics, key: "{cluster_id}.centroid"}
volume:
  prometheus: {url: "http://prometheus.monitoring:9090",
               query: 'sum(documents{namespace="{namespace}", collection="{collection_id}"})'}
"""


def filled(condition: ConditionType, config: Mapping[str, Any], sources: Any, namespace: str = "team-a") -> Any:
    """The cluster action type's default source for ``condition``, for a Trigger in ``namespace``."""
    return default_source("cluster", condition, config, sources, namespace=namespace)


def test_a_sources_key_gives_default_sources_and_is_no_template() -> None:
    data = {"cluster": CLUSTER_YAML, "cluster.sources": SOURCES_YAML}
    catalog, problems = parse_catalog(data)
    assert (list(catalog), problems) == (["cluster"], [])
    sources, problems = parse_sources(data)
    assert problems == []
    assert sources == {"cluster": {
        ConditionType.DRIFT: {"configMap": {"name": "trigger-metrics", "key": "{cluster_id}.centroid"}},
        ConditionType.VOLUME: {"prometheus": {"url": "http://prometheus.monitoring:9090",
                                              "query": 'sum(documents{namespace="{namespace}", '
                                                       'collection="{collection_id}"})'}}}}


def test_a_default_source_is_filled_from_action_config_promql_braces_left_alone() -> None:
    sources, _ = parse_sources({"cluster.sources": SOURCES_YAML})
    drift = filled(ConditionType.DRIFT, {"cluster_id": "clust_abc123"}, sources)
    assert drift.config_map is not None and drift.config_map.key == "clust_abc123.centroid"
    volume = filled(ConditionType.VOLUME, {"collection_id": "col_abc123"}, sources)
    assert volume.prometheus is not None and volume.prometheus.query == (
        'sum(documents{namespace="team-a", collection="col_abc123"})')


@pytest.mark.parametrize(("condition", "config", "field", "says"), [
    pytest.param(ConditionType.THRESHOLD, {}, "spec.scheduleConfig.source", "no default threshold source for "
                 "action type 'cluster' (key cluster.sources", id="none-for-the-condition-type"),
    pytest.param(ConditionType.DRIFT, {}, "spec.actionConfig.cluster_id", "is required by the default drift source",
                 id="missing"),
    pytest.param(ConditionType.DRIFT, {"cluster_id": True}, "spec.actionConfig.cluster_id", "a string or number",
                 id="a-boolean"),
    pytest.param(ConditionType.VOLUME, {"collection_id": 'x"} or vector(1) or {a="'},
                 "spec.actionConfig.collection_id", "one token", id="promql-injection"),
    pytest.param(ConditionType.DRIFT, {"cluster_id": "a b"}, "spec.actionConfig.cluster_id", "one token",
                 id="a-space"),
])
def test_a_default_source_that_cannot_be_filled_names_the_field(condition: ConditionType, config: dict[str, Any],
                                                                field: str, says: str) -> None:
    sources, _ = parse_sources({"cluster.sources": SOURCES_YAML})
    with pytest.raises(SpecError) as raised:
        filled(condition, config, sources)
    assert raised.value.field == field and says in raised.value.reason, str(raised.value)


def test_a_filled_configmap_or_object_name_must_still_be_a_valid_object_name() -> None:
    sources, _ = parse_sources({"cluster.sources": 'drift: {object: {apiVersion: example.io/v1, kind: Index, '
                                                   'name: "idx-{cluster_id}", fieldPath: .status.centroid}}'})
    good = filled(ConditionType.DRIFT, {"cluster_id": "a1"}, sources)
    assert good.object is not None and good.object.name == "idx-a1"
    with pytest.raises(SpecError) as raised:
        filled(ConditionType.DRIFT, {"cluster_id": "Clust_ABC"}, sources)  # valid token, no name
    assert raised.value.field == "spec.actionConfig.cluster_id" and "object.name invalid" in raised.value.reason


@pytest.mark.parametrize(("text", "problem"), [
    pytest.param("drift: [unclosed", "not YAML", id="not-yaml"),
    pytest.param("- drift", "expected a mapping of condition types", id="a-list"),
    pytest.param("speed: {configMap: {name: a, key: b}}", "'speed' is no condition type", id="unknown-type"),
    pytest.param("drift: {configMap: {name: a}}", "drift: configMap.key", id="incomplete-source"),
    pytest.param('drift: {http: {url: "http://{cluster_id}.example/x"}}', "drift: ", id="placeholder-in-the-host"),
    pytest.param('drift: {object: {apiVersion: v1, kind: "{kind}", name: a, fieldPath: .x}}',
                 "object.kind may not hold a placeholder", id="placeholder-in-the-kind"),
    pytest.param("drift: {configMap: {name: a, key: b}, http: {url: 'http://h/x'}}", "exactly one of", id="two-kinds"),
    # The catalog's own former example: team A's Trigger naming `cluster_id: team-b-cluster` would
    # read team B's stats, without approval (second review, M3).
    pytest.param('volume: {http: {url: "http://metrics.platform.svc/v1/clusters/{cluster_id}/stats", '
                 'jsonPath: .documents}}', "volume: a http default reads a service every tenant's Triggers share, "
                 "so http.url must hold {namespace}", id="http-without-namespace"),
    pytest.param('volume: {prometheus: {url: "http://prometheus.monitoring:9090", '
                 "query: 'sum(documents{collection=\"{collection_id}\"})'}}",
                 "prometheus.url or prometheus.query must hold {namespace}", id="prometheus-without-namespace"),
    pytest.param('volume: {http: {url: "http://m.svc/v1/c/{cluster_id}", jsonPath: ".ns.{namespace}"}}',
                 "http.url must hold {namespace}", id="namespace-only-in-the-json-path"),
    pytest.param('volume: {http: {url: "http://m.svc/v1/{{namespace}}/{cluster_id}"}}',
                 "http.url must hold {namespace}", id="an-escaped-brace-is-no-placeholder"),
    pytest.param('volume: {shared: yes please, http: {url: "http://m.svc/v1/c/{cluster_id}"}}',
                 "volume: shared must be true or false", id="shared-not-a-boolean"),
    pytest.param('volume: {shared: false, http: {url: "http://m.svc/v1/c/{cluster_id}"}}',
                 "must hold {namespace}", id="shared-false"),
])
def test_a_broken_default_source_is_a_problem_of_its_key(text: str, problem: str) -> None:
    sources, problems = parse_sources({"cluster.sources": text, "batch_rerun.sources": SOURCES_YAML})
    assert list(sources) == ["batch_rerun"]
    assert len(problems) == 1 and problems[0].startswith("key 'cluster.sources': ") and problem in problems[0], problems


def test_a_broken_default_source_keeps_its_last_good_one_and_a_removed_one_is_gone() -> None:
    good, _ = merge_sources({}, {"cluster.sources": SOURCES_YAML})
    broken, problems = merge_sources(good, {"cluster.sources": "drift: {configMap: {name: a}}\n"
                                                              "volume: {configMap: {name: a, key: b}}"})
    assert broken["cluster"][ConditionType.DRIFT] == good["cluster"][ConditionType.DRIFT]
    assert broken["cluster"][ConditionType.VOLUME] == {"configMap": {"name": "a", "key": "b"}}
    assert any("the last good one stays in use" in p for p in problems)
    removed, _ = merge_sources(good, {"cluster": CLUSTER_YAML})
    assert removed == {}


def test_the_shipped_catalog_has_valid_default_sources_for_the_seeds_conditional_example() -> None:
    data = yaml.safe_load((ROOT / "deploy" / "actions.yaml").read_text())["data"]
    sources, problems = parse_sources(data)
    assert problems == []
    drift = filled(ConditionType.DRIFT, {"cluster_id": "clust_abc123"}, sources)
    assert drift.config_map is not None and drift.config_map.key == "clust_abc123.centroid"


@pytest.mark.parametrize("text", [
    pytest.param('volume: {http: {url: "http://metrics.platform.svc/v1/namespaces/{namespace}/clusters/{cluster_id}", '
                 "jsonPath: .documents}}", id="http-namespace-in-the-path"),
    pytest.param('volume: {http: {url: "http://metrics.platform.svc/v1/stats?ns={namespace}&c={cluster_id}"}}',
                 id="http-namespace-in-the-query"),
    pytest.param('volume: {prometheus: {url: "http://prometheus.monitoring:9090", '
                 "query: 'sum(documents{namespace=\"{namespace}\"})'}}", id="prometheus-label-matcher"),
    pytest.param('volume: {shared: true, http: {url: "http://status.platform.svc/v1/public/{cluster_id}"}}',
                 id="http-shared-by-the-admin"),
    pytest.param('volume: {configMap: {name: trigger-metrics, key: "{cluster_id}.documents"}}',
                 id="configmap-is-in-the-triggers-namespace-already"),
    pytest.param('volume: {object: {apiVersion: example.io/v1, kind: Index, name: "idx-{cluster_id}", '
                 "fieldPath: .status.documents}}", id="object-is-in-the-triggers-namespace-already"),
])
def test_a_default_source_scoped_to_the_tenant_or_declared_shared_is_accepted(text: str) -> None:
    sources, problems = parse_sources({"cluster.sources": text})
    assert problems == [] and list(sources["cluster"]) == [ConditionType.VOLUME]
    assert "shared" not in sources["cluster"][ConditionType.VOLUME]  # read as a source, the statement set aside
    assert filled(ConditionType.VOLUME, {"cluster_id": "c1"}, sources) is not None


def test_namespace_is_the_triggers_own_and_action_config_cannot_change_it() -> None:
    sources, _ = parse_sources({"cluster.sources": 'volume: {http: {url: "http://metrics.platform.svc/v1/namespaces/'
                                                   '{namespace}/clusters/{cluster_id}/stats", jsonPath: .documents}}'})
    config = {"cluster_id": "team-b-cluster", "namespace": "team-b"}
    source = filled(ConditionType.VOLUME, config, sources, namespace="team-a")
    assert source.http is not None
    assert source.http.url == "http://metrics.platform.svc/v1/namespaces/team-a/clusters/team-b-cluster/stats"
    sources, _ = parse_sources({"cluster.sources": SOURCES_YAML})
    volume = filled(ConditionType.VOLUME, {"collection_id": "c", "namespace": "team-b"}, sources, namespace="team-a")
    assert volume.prometheus is not None and 'namespace="team-a"' in volume.prometheus.query


@pytest.mark.parametrize(("value", "says"), [
    pytest.param("a/../../x", "'a/../../x' cannot fill a URL path segment", id="slashes-and-dots"),
    pytest.param("a..b", "cannot fill a URL path segment", id="dots-inside"),
    pytest.param("a%2Fb", "cannot fill a URL path segment", id="a-percent"),
    pytest.param(True, "a string or number", id="a-boolean-is-no-true-text"),
])
def test_a_path_value_outside_the_unreserved_characters_is_refused_naming_the_field(value: Any, says: str) -> None:
    sources, _ = parse_sources({"cluster.sources": 'volume: {http: {url: "http://m.svc/v1/{namespace}/c/{cluster_id}"}}'})
    with pytest.raises(SpecError) as raised:
        filled(ConditionType.VOLUME, {"cluster_id": value}, sources)
    assert raised.value.field == "spec.actionConfig.cluster_id" and says in raised.value.reason, str(raised.value)

"""Conditional Triggers on the real control plane: a ConfigMap value drifting past the threshold
(not before) and the baseline moving after the successful run; a custom resource's field as an
``object`` source; an ``http`` source with a token from a Secret, failing and recovering; a
``prometheus`` source against a real Prometheus server; the seed's conditional body with no source,
reading its action type's default from the action catalog; a volume condition on a document count."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart import chart_identity, forget_cluster_rbac
from tests.harness import SUCCEEDS, Kube, Operator, actions_config_map, wait_for
from tests.integration.servers import endpoint, prometheus
from tests.integration.triggers import trigger


def conditional(name: str, source: dict[str, Any], **config: Any) -> dict[str, Any]:
    manifest = trigger(name, triggerType="conditional", pod=SUCCEEDS)
    manifest["spec"]["scheduleConfig"] = {"conditionType": "threshold", "metric": "value", "threshold": 10,
                                          "checkIntervalSeconds": 1, "source": source, **config}
    return manifest


def measured(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(kube.status(namespace, name).get("lastDriftMeasurement") or {})


def jobs_of(kube: Kube, namespace: str, name: str) -> list[str]:
    return [j.metadata.name for j in kube.jobs(namespace, name)]


def set_value(kube: Kube, namespace: str, value: str) -> None:
    kube.core.patch_namespaced_config_map("stats", namespace, {"data": {"shift": value}})


def test_a_configmap_value_drifting_past_the_threshold_fires_once_and_moves_the_baseline(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "stats"}, "data": {"shift": "1.0"}})
    kube.apply(conditional("drifty", {"configMap": {"name": "stats", "key": "shift"}}, conditionType="drift",
                           metric="absolute_drift", threshold=0.3), namespace)
    status = wait_for("the first value as the baseline", lambda: (s := kube.status(namespace, "drifty"))
                      .get("baselineSnapshot") and s, timeout=30)
    assert status["baselineSnapshot"]["value"] == 1.0
    set_value(kube, namespace, "1.2")  # drift 0.2: below the threshold
    wait_for("a check of 1.2", lambda: measured(kube, namespace, "drifty").get("value") == 1.2, timeout=30)
    time.sleep(3)
    assert jobs_of(kube, namespace, "drifty") == []
    assert measured(kube, namespace, "drifty")["exceeded"] is False
    set_value(kube, namespace, "1.5")  # drift 0.5: past it
    wait_for("the condition's run", lambda: jobs_of(kube, namespace, "drifty") == ["drifty-c1"], timeout=30)
    status = wait_for("the run counted and the baseline moved", lambda: (s := kube.status(namespace, "drifty"))
                      .get("executionCount") == 1 and s["baselineSnapshot"]["value"] == 1.5 and s, timeout=30)
    assert status["lastConditionCheckAt"]
    time.sleep(3)  # 1.5 is no drift from the new baseline: no second run
    assert jobs_of(kube, namespace, "drifty") == ["drifty-c1"]
    assert measured(kube, namespace, "drifty")["drift"] == 0.0
    assert operator.errors() == []


def test_a_custom_resources_field_is_an_object_source(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("watched", cron="0 0 1 1 *", maxConsecutiveFailures=5), namespace)
    source = {"object": {"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger", "name": "watched",
                         "fieldPath": ".spec.maxConsecutiveFailures"}}
    kube.apply(conditional("watcher", source, comparison=">="), namespace)
    wait_for("a check reading 5", lambda: measured(kube, namespace, "watcher").get("value") == 5, timeout=30)
    assert jobs_of(kube, namespace, "watcher") == []
    kube.patch_spec(namespace, "watched", {"maxConsecutiveFailures": 12})
    wait_for("the run once the field crossed 10", lambda: jobs_of(kube, namespace, "watcher") == ["watcher-c1"],
             timeout=30)


def test_an_http_source_with_a_secret_token_fails_is_reported_and_recovers(
        kube: Kube, namespace: str, operator: Operator) -> None:
    token = "s3cret-value-never-logged"
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "api-token"},
                                                   "data": {"token": base64.b64encode(token.encode()).decode()}})
    with endpoint() as server:
        server.token = token
        server.status, server.document = 500, {"error": "warming up"}
        source = {"http": {"url": f"{server.url}/doc", "jsonPath": ".metrics.queue",
                           "tokenSecret": {"name": "api-token", "key": "token"}}}
        kube.apply(conditional("remote", source), namespace)
        status = wait_for("the failure in status", lambda: (s := kube.status(namespace, "remote"))
                          .get("sourceErrors") and s, timeout=30)
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "SourceFailing")
        assert "HTTP 500" in status["lastDriftMeasurement"]["error"]
        assert server.seen_authorization[0] == f"Bearer {token}"
        server.status, server.document = 200, {"metrics": {"queue": 3}}
        wait_for("the recovery", lambda: (s := kube.status(namespace, "remote")).get("sourceErrors") == 0
                 and s["lastDriftMeasurement"].get("value") == 3, timeout=60)
        server.document = {"metrics": {"queue": 11}}
        wait_for("the run", lambda: jobs_of(kube, namespace, "remote") == ["remote-c1"], timeout=30)
    assert token not in operator.logs()
    assert all(token not in (e.message or "") for e in kube.events(namespace))


def test_a_prometheus_source_fires_on_a_real_prometheus_query(
        kube: Kube, namespace: str, operator: Operator, tmp_path: Path) -> None:
    with endpoint() as target:
        target.metrics = {"ingest_queue_depth": 4}
        with prometheus(tmp_path, target.port) as url:
            source = {"prometheus": {"url": url, "query": "max(ingest_queue_depth)"}}
            kube.apply(conditional("queued", source), namespace)
            wait_for("a check reading 4 from Prometheus",
                     lambda: measured(kube, namespace, "queued").get("value") == 4, timeout=60)
            assert jobs_of(kube, namespace, "queued") == []
            target.metrics = {"ingest_queue_depth": 25}
            wait_for("the run once the query crossed 10", lambda: jobs_of(kube, namespace, "queued") == ["queued-c1"],
                     timeout=60)
            time.sleep(3)  # still above: no second run (it fires when it becomes true)
            assert jobs_of(kube, namespace, "queued") == ["queued-c1"]


# --- the catalog's default condition sources and volume conditions (issue 18) ------------------------

# The seed's conditional example verbatim (its schedule_config in the CRD's camelCase), no source.
SEED_CONDITIONAL = {"conditionType": "drift", "metric": "cosine_drift", "threshold": 0.3, "checkIntervalSeconds": 3600}


def with_default_sources(namespace: str, sources: dict[str, str]) -> dict[str, Any]:
    """The shipped action catalog with ``sources`` (``<action type>.sources`` keys) set by the admin."""
    config_map = actions_config_map(namespace)
    config_map["data"].update(sources)
    return config_map


@pytest.fixture
def strict_operator(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    """The operator as the chart runs it: source approvals required (and no approval key, so no
    source of a Trigger's own that is read with the operator's rights is read at all)."""
    kube.apply(with_default_sources(namespace, {"cluster.sources": yaml.safe_dump(
        {"drift": {"configMap": {"name": "{cluster_id}", "key": "centroid"}}})}))
    identity = chart_identity(kube, namespace, tmp_path)
    op = Operator(kube, namespace, tmp_path / "operator.log", kubeconfig=identity,
                  env={"TRIGGER_OPERATOR_SOURCES_APPROVAL": "required"}).start()
    yield op
    op.stop()
    forget_cluster_rbac(kube, namespace)


def test_the_seeds_conditional_body_reads_the_catalogs_default_drift_source_and_fires_its_job(
        kube: Kube, namespace: str, strict_operator: Operator) -> None:
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "clu-7"},
                                                       "data": {"centroid": "[1.0, 0.0, 0.0]"}})
    seed = trigger("seed-drift", triggerType="conditional", actionConfig={"cluster_id": "clu-7"},
                   scheduleConfig=SEED_CONDITIONAL)
    assert "source" not in seed["spec"]["scheduleConfig"] and "jobTemplate" not in seed["spec"]
    kube.apply(seed, namespace)
    status = wait_for("the default source's first value as the baseline",
                      lambda: (s := kube.status(namespace, "seed-drift")).get("baselineSnapshot") and s, timeout=30)
    assert status["baselineSnapshot"]["value"] == [1.0, 0.0, 0.0]
    assert status["lastDriftMeasurement"]["source"] == "configMap"
    assert "checks the configMap default source every 3600 s" in status["conditions"][0]["message"]
    # The seed checks hourly: the centroid moves, and the last check is set back by an hour, as if it passed.
    kube.core.patch_namespaced_config_map("clu-7", namespace, {"data": {"centroid": "[0.0, 1.0, 0.0]"}})
    an_hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1, minutes=1)).isoformat().replace("+00:00", "Z")
    kube.custom.patch_namespaced_custom_object_status(
        "trigger-operator.io", "v1alpha1", namespace, "triggers", "seed-drift",
        {"status": {"lastConditionCheckAt": an_hour_ago}})
    wait_for("the drift's run", lambda: jobs_of(kube, namespace, "seed-drift") == ["seed-drift-c1"], timeout=30)
    measured_drift = wait_for("the drift recorded", lambda: measured(kube, namespace, "seed-drift").get("exceeded")
                              and measured(kube, namespace, "seed-drift"), timeout=30)
    assert measured_drift["drift"] == pytest.approx(1.0)
    # A Trigger's own configMap source still needs an approval, which nobody could give here.
    own = trigger("own-source", triggerType="conditional", actionConfig={"cluster_id": "clu-7"},
                  scheduleConfig={**SEED_CONDITIONAL, "source": {"configMap": {"name": "clu-7", "key": "centroid"}}})
    kube.apply(own, namespace)
    refused = wait_for("the own source refused", lambda: measured(kube, namespace, "own-source").get("error"),
                       timeout=30)
    assert "not approved" in refused and jobs_of(kube, namespace, "own-source") == []
    assert strict_operator.errors() == []


def test_a_seed_conditional_body_without_a_default_source_is_invalid_naming_the_field(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("no-default", triggerType="conditional", actionType="batch_rerun",
                       actionConfig={"batch_id": "b1"}, scheduleConfig=SEED_CONDITIONAL), namespace)
    status = wait_for("Invalid", lambda: (s := kube.status(namespace, "no-default")).get("phase") == "Invalid" and s,
                      timeout=30)
    assert status["message"].startswith("spec.scheduleConfig.source: is required: the actions ConfigMap has no "
                                        "default drift source for action type 'batch_rerun'")


def test_a_volume_condition_fires_on_a_document_count_from_the_catalogs_default_http_source(
        kube: Kube, namespace: str, operator: Operator) -> None:
    with endpoint() as server:
        server.document = {"collection": "col_abc123", "document_count": 40}
        # A shared service, asked for the Trigger's own namespace (filled by the operator).
        source = {"volume": {"http": {"url": f"http://127.0.0.1:{server.port}/v1/namespaces/{{namespace}}/"
                                             "collections/{collection_id}/stats", "jsonPath": ".document_count"}}}
        reads = operator.logs().count("default condition sources:")
        kube.apply(with_default_sources(namespace, {"collection_trigger.sources": yaml.safe_dump(source)}))
        wait_for("the changed catalog read", lambda: operator.logs().count("default condition sources:") > reads,
                 timeout=30)
        kube.apply(trigger("grown", triggerType="conditional", actionType="collection_trigger", pod=SUCCEEDS,
                           actionConfig={"collection_id": "col_abc123"},
                           scheduleConfig={"conditionType": "volume", "metric": "document_count", "threshold": 100,
                                           "comparison": ">=", "checkIntervalSeconds": 1}), namespace)
        wait_for("a check counting 40", lambda: volume(kube, namespace, "grown").get("value") == 40, timeout=30)
        time.sleep(2)
        assert jobs_of(kube, namespace, "grown") == [] and volume(kube, namespace, "grown")["exceeded"] is False
        server.document = {"collection": "col_abc123", "document_count": 150}
        wait_for("the run once 100 documents were reached", lambda: jobs_of(kube, namespace, "grown") == ["grown-c1"],
                 timeout=30)
        recorded = wait_for("the count recorded", lambda: (v := volume(kube, namespace, "grown")).get("value") == 150
                            and v, timeout=30)
        time.sleep(3)  # still above: no second run (once per crossing)
        assert jobs_of(kube, namespace, "grown") == ["grown-c1"]
    assert (recorded["exceeded"], recorded["threshold"], recorded["comparison"], recorded["source"]) == (
        True, 100, ">=", "http")
    assert "lastDriftMeasurement" not in kube.status(namespace, "grown")
    assert operator.errors() == []


def test_a_default_http_source_not_scoped_to_the_namespace_is_refused_at_catalog_read_and_the_trigger_says_so(
        kube: Kube, namespace: str, operator: Operator) -> None:
    """Second review, M3: ``cluster_id: team-b-cluster`` must not read team B's stats from a shared service."""
    with endpoint() as server:
        server.document = {"document_count": 150}
        # batch_rerun has no default in the shipped catalog, so there is no last good one to keep.
        unscoped = {"volume": {"http": {"url": f"http://127.0.0.1:{server.port}/v1/batches/{{batch_id}}/stats",
                                        "jsonPath": ".document_count"}}}
        reads = operator.logs().count("default condition sources:")
        kube.apply(with_default_sources(namespace, {"batch_rerun.sources": yaml.safe_dump(unscoped)}))
        wait_for("the changed catalog read", lambda: operator.logs().count("default condition sources:") > reads,
                 timeout=30)
        assert ("key 'batch_rerun.sources': volume: a http default reads a service every tenant's Triggers "
                "share, so http.url must hold {namespace}") in operator.logs()
        kube.apply(trigger("other-team", triggerType="conditional", actionType="batch_rerun", pod=SUCCEEDS,
                           actionConfig={"batch_id": "team-b-batch"},
                           scheduleConfig={"conditionType": "volume", "metric": "document_count", "threshold": 100,
                                           "comparison": ">=", "checkIntervalSeconds": 1}), namespace)
        status = wait_for("Invalid", lambda: (s := kube.status(namespace, "other-team")).get("phase") == "Invalid"
                          and s, timeout=30)
        assert status["message"].startswith("spec.scheduleConfig.source: is required: the actions ConfigMap has no "
                                            "default volume source for action type 'batch_rerun'")
        assert "one the operator refused is named in its log" in status["message"]
        assert server.seen_authorization == [] and jobs_of(kube, namespace, "other-team") == []  # nothing was read
    assert operator.errors() == []


def volume(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return dict(kube.status(namespace, name).get("lastVolumeMeasurement") or {})

"""Conditional Triggers on the real control plane: a ConfigMap value drifting past the threshold
(not before) and the baseline moving after the successful run; a custom resource's field as an
``object`` source; an ``http`` source with a token from a Secret, failing and recovering; a
``prometheus`` source against a real Prometheus server."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from tests.harness import SUCCEEDS, Kube, Operator, wait_for
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

"""The operator's logs on the real control plane: with ``--log-format json`` every line is one
JSON object, the lines about a Job name its namespace, Trigger and Job as fields, and an event
sender's token never appears."""

from __future__ import annotations

import json
from pathlib import Path

from tests.chart import chart_identity, forget_cluster_rbac
from tests.harness import SUCCEEDS, Kube, Operator, actions_config_map, grant, service_account_token, wait_for
from tests.integration.test_events import SEND, cloudevent, event_trigger, post
from tests.integration.triggers import trigger


def test_json_logs_name_the_trigger_and_job_and_never_a_token(kube: Kube, namespace: str, tmp_path: Path) -> None:
    kube.apply(actions_config_map(namespace))
    identity = chart_identity(kube, namespace, tmp_path)
    operator = Operator(kube, namespace, tmp_path / "operator.log", kubeconfig=identity,
                        env={"TRIGGER_OPERATOR_LOG_FORMAT": "json"}).start()
    try:
        token = service_account_token(kube, namespace, "ingest")
        grant(kube, namespace, "ingest", SEND)
        kube.apply(trigger("tick", interval=2, pod=SUCCEEDS), namespace)
        kube.apply(event_trigger("docs", threshold=1), namespace)
        response = post(operator, namespace, token, cloudevent("e-1"), "application/cloudevents+json")
        assert response.status_code == 202, response.text
        wait_for("a Job of each", lambda: kube.jobs(namespace, "tick") and kube.jobs(namespace, "docs"), timeout=60)
        wait_for("the operator's line about the event Job",
                 lambda: '"job": "docs-e1"' in operator.logs(), timeout=30)
    finally:
        operator.stop()
        forget_cluster_rbac(kube, namespace)
    lines = [line for line in operator.logs().splitlines() if line and not line.startswith("=====")]
    records = [json.loads(line) for line in lines]  # every line is JSON, kopf's and uvicorn's too
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    created = [r for r in records if r["message"].startswith("created Job")]
    assert {(r["namespace"], r["trigger"]) for r in created} >= {(namespace, "tick"), (namespace, "docs")}
    assert all(r["job"] in r["message"] for r in created)
    assert token not in operator.logs()

"""Status stays bounded on the real control plane (issue 17, finding 9): a ConfigMap source whose
value is a ~900 KB JSON vector makes a status patch the API server accepts, or the reading is
dropped with a message saying why; the operator is not stuck re-sending it, and another Trigger
keeps being checked meanwhile."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.harness import Kube, Operator, wait_for
from tests.integration.servers import Endpoint, endpoint
from tests.integration.test_conditions import conditional
from trigger_operator.model.status import MESSAGE_MAX_CHARS, STATUS_MAX_BYTES

DRIFT = {"conditionType": "drift", "metric": "absolute_drift", "threshold": 0.3}


@pytest.mark.parametrize("vector_bound", [
    pytest.param(None, id="the-readers-default-bound-refuses-it"),
    pytest.param("100000", id="an-admin-raised-the-bound-and-status-drops-it"),
])
def test_a_huge_configmap_vector_is_dropped_from_status_and_the_operator_goes_on(
        kube: Kube, namespace: str, operator: Operator, tmp_path: Path, vector_bound: str | None) -> None:
    if vector_bound is not None:  # the same operator (identity, namespace), with the admin's setting
        operator.stop()
        operator = Operator(kube, namespace, tmp_path / "raised.log", kubeconfig=operator.kubeconfig,
                            env={"TRIGGER_OPERATOR_SOURCES_MAX_VECTOR_LENGTH": vector_bound}).start()
    try:
        _huge_vector_is_dropped(kube, namespace, operator, expect_status_bound=vector_bound is not None)
    finally:
        if vector_bound is not None:
            operator.stop()


def _huge_vector_is_dropped(kube: Kube, namespace: str, operator: Operator, *, expect_status_bound: bool) -> None:
    # The neighbour's source counts its reads: a check that changes nothing writes no status (issue 21),
    # so "checked all along" is seen where the checks happen.
    with endpoint() as small:
        small.document = {"v": 1.0}
        _huge_vector_is_dropped_beside(kube, namespace, operator, small, expect_status_bound=expect_status_bound)


def _huge_vector_is_dropped_beside(kube: Kube, namespace: str, operator: Operator, small: Endpoint, *,
                                   expect_status_bound: bool) -> None:
    vector = [0.1234567890123 + i for i in range(50_000)]
    text = json.dumps(vector)
    assert 800_000 < len(text) < 1_000_000  # fits a ConfigMap (1 MiB), not a Trigger's status
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "huge"}, "data": {"v": text}})
    kube.apply(conditional("big-vector", {"configMap": {"name": "huge", "key": "v"}}, **DRIFT), namespace)
    kube.apply(conditional("neighbour", {"http": {"url": f"{small.url}/doc", "jsonPath": ".v"}}, **DRIFT), namespace)

    status = wait_for("the huge reading recorded as a failed check", lambda: (
        s := kube.status(namespace, "big-vector")).get("sourceErrors") and s, timeout=60)
    error = status["lastDriftMeasurement"]["error"]
    assert len(error) <= MESSAGE_MAX_CHARS and "0.1234567890123" not in error
    if expect_status_bound:
        assert error.startswith("the value is too large to keep in status"), error
    assert "baselineSnapshot" not in status and len(json.dumps(status)) < STATUS_MAX_BYTES

    def lines_about_it() -> int:
        return sum(1 for line in operator.logs().splitlines() if "big-vector" in line)

    before = lines_about_it()
    neighbour_before = len(small.seen_authorization)  # one per read of its source
    time.sleep(30)
    # Checked again with backoff (1 s doubling: a handful of checks in 30 s), never re-sent every pass.
    assert lines_about_it() - before <= 20, operator.logs()[-5000:]
    status = kube.status(namespace, "big-vector")
    assert "baselineSnapshot" not in status and len(json.dumps(status)) < STATUS_MAX_BYTES
    neighbour = kube.status(namespace, "neighbour")
    assert neighbour["baselineSnapshot"]["value"] == 1.0 and neighbour.get("sourceErrors", 0) == 0
    assert len(small.seen_authorization) - neighbour_before >= 5  # checked all along (every 1 s)
    assert operator.errors() == []

"""The README's first command: `make run` against the cluster in KUBECONFIG installs the CRD, the
default action catalog and the sample Triggers, and runs the operator, whose every-minute sample
fires within a minute."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.harness import ROOT, Kube, die_with_parent, free_port, wait_for
from tests.integration.triggers import parse
from trigger_operator.jobs.catalog import SOURCES_SUFFIX
from trigger_operator.model.spec import ActionType

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MAKE_RUN_PORT = free_port()


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def make_run(kube: Kube, tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "make-run.log"
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "TRIGGER_OPERATOR_HTTP_PORT": str(MAKE_RUN_PORT)}
    with log.open("wb") as out:
        process = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=die_with_parent)
    try:
        yield log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        # The operator (exec'd by hack/run.sh) is in the same process group: wait until it is gone
        # too, so that no cluster-wide operator overlaps the next test's.
        wait_for("the operator started by make run to stop", lambda: not group_alive(process.pid), timeout=30)
        for path in EXAMPLES:
            kube.kubectl("delete", "-f", str(path), "-n", "default", "--ignore-not-found", "--wait=false")


def test_make_run_installs_the_samples_and_fires_the_every_minute_trigger(kube: Kube, make_run: Path) -> None:
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in EXAMPLES]
    wait_for("the sample Triggers", lambda: all(kube.status("default", n).get("phase") == "Active" for n in names),
             timeout=90)
    job = wait_for("a Job of the every-minute sample", lambda: kube.jobs("default", "every-minute"), timeout=90)[0]
    assert job.metadata.labels["trigger-operator.io/run-kind"] == "scheduled"
    daily = kube.status("default", "daily-clustering")
    next_run = parse(daily["nextScheduledAt"])
    assert next_run is not None and (next_run.hour, next_run.minute) == (2, 0)
    assert dt.timedelta(0) < next_run - dt.datetime.now(dt.UTC) <= dt.timedelta(days=1)
    catalog = kube.core.read_namespaced_config_map("trigger-operator-actions", "trigger-operator-system")
    # a template for each action type (and, beside some, the action's default condition sources)
    assert sorted(k for k in catalog.data if not k.endswith(SOURCES_SUFFIX)) == sorted(a.value for a in ActionType)
    log = make_run.read_text()
    assert "starting the operator" in log and "scheduler started" in log
    url = f"http://127.0.0.1:{MAKE_RUN_PORT}"
    assert f"HTTP API: {url}" in log and "curl -H" in log
    # The README's curl, with the sample sender's token: the event sample counts it.
    token = kube.kubectl("create", "token", "event-sender", "-n", "default").stdout.strip()
    body = {"event_type": "documents_added", "collection_id": "col_abc123", "count": 40}
    response = httpx.post(f"{url}/v1/events", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "X-Namespace": "default"})
    assert response.status_code == 202, response.text
    assert kube.status("default", "cluster-after-100-documents")["eventCounter"] >= 40

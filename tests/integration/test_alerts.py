"""The shipped alerting rules: `promtool` checks and unit-tests them, the chart ships exactly that
file, and a real Prometheus scraping the operator on the real control plane fires TriggerRunFailed
for a failing Trigger (and for no other)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.chart import CHART, render
from tests.harness import ROOT, SUCCEEDS, Kube, Operator, fails, wait_for
from tests.integration.servers import prometheus
from tests.integration.triggers import trigger

RULES = CHART / "files" / "alerts.yaml"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: run `make prometheus` (make test does)"
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_rules_pass_promtool_and_the_chart_ships_them_unchanged(kube: Kube, namespace: str) -> None:
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", str(RULES))
    assert "SUCCESS" in promtool("test", "rules", "tests/alerts/alerts_test.yaml")
    shipped = next(d for d in render(kube, namespace, "prometheusRule.enabled=true",
                                     "prometheusRule.labels.release=monitoring") if d["kind"] == "PrometheusRule")
    assert shipped["spec"] == yaml.safe_load(RULES.read_text())
    assert shipped["metadata"]["labels"]["release"] == "monitoring"


def firing(url: str, name: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a["labels"] for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


def test_a_failing_trigger_fires_its_alert_on_a_real_prometheus(
        kube: Kube, namespace: str, operator: Operator, tmp_path: Path) -> None:
    kube.apply(trigger("good", interval=2, pod=SUCCEEDS), namespace)
    kube.apply(trigger("bad", interval=2, maxConsecutiveFailures=100, pod=fails(1, "boom")), namespace)
    with prometheus(tmp_path, operator.http_port, rule_files=(RULES,)) as url:
        labels = wait_for("TriggerRunFailed firing", lambda: firing(url, "TriggerRunFailed"), timeout=90)
        assert [(a["namespace"], a["trigger"], a["severity"]) for a in labels] == [(namespace, "bad", "warning")]
        assert kube.status(namespace, "good").get("executionCount", 0) >= 1  # the good one ran, and is quiet
        assert firing(url, "TriggerOperatorNotScheduling") == [] and firing(url, "TriggerOperatorDown") == []

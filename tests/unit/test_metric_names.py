"""One source of truth for the metric names: the operator's registry. The docs' table
(docs/metrics.md), the Grafana dashboard and the alerting rules may name only what the operator
exports, and the docs' table lists all of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from trigger_operator.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "helm" / "trigger-operator" / "files"
NAME = re.compile(r"\btrigger_operator_[a-z_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported() -> dict[str, str]:
    """Every family the operator serves (its scheduler gauges included), by name, with its type."""
    metrics = Metrics()
    trigger = {"metadata": {"namespace": "ns", "name": "t"},
               "status": {"phase": "Failed", "consecutiveFailures": 2, "eventKeyState": [["k", 1]]}}
    metrics.watch(triggers=lambda: [trigger], queue_depth=lambda: 0, next_due=lambda: 0.0, leading=lambda: True)
    return {family.name: family.type for family in metrics.registry.collect()}


def series_names() -> set[str]:
    return {name + suffix for name, kind in exported().items() for suffix in SUFFIXES[kind]}


def test_the_docs_table_lists_every_metric_and_nothing_else() -> None:
    page = (ROOT / "docs" / "metrics.md").read_text()
    section = page.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(trigger_operator_[a-z_]+)`", section, flags=re.M))
    expected = {name + SUFFIXES[kind][0] if kind == "counter" else name for name, kind in exported().items()}
    assert listed == expected


def test_the_dashboard_names_only_exported_series() -> None:
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs and all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used = {n for e in exprs for n in NAME.findall(e)}
    assert used and used <= series_names(), used - series_names()


def test_the_alerts_name_only_exported_series() -> None:
    rules = [r for g in yaml.safe_load((FILES / "alerts.yaml").read_text())["groups"] for r in g["rules"]]
    used = {n for r in rules for n in NAME.findall(r["expr"])}
    assert len(rules) == 5 and used <= series_names(), used - series_names()

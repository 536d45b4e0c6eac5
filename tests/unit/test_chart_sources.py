"""One source of truth for what the chart repeats: the CRD (crds/) and the default action catalog
(deploy/actions.yaml) must be the same in the chart."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trigger-operator"


def test_the_charts_crd_is_the_repositorys() -> None:
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        copy = CHART / "crds" / crd.name
        assert copy.read_text() == crd.read_text(), f"helm/trigger-operator/crds/{crd.name} differs: cp {crd} {copy}"
    names = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == names


def test_the_charts_default_actions_are_the_shipped_catalog() -> None:
    catalog = yaml.safe_load((ROOT / "deploy" / "actions.yaml").read_text())["data"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())["actions"]
    assert values == {action: yaml.safe_load(text) for action, text in catalog.items()}


def test_the_chart_ships_the_argocd_health_check_that_is_tested() -> None:
    assert (CHART / "files" / "argocd-health.lua").is_file()
    assert '.Files.Get "files/argocd-health.lua"' in (CHART / "templates" / "extras.yaml").read_text()

"""The docs repeat lists the code owns: the Ready reasons, the settings, the chart's values, the files
each rule lives in. Each is generated from the code (hack/docs_settings.py) or checked against it
here, so a change on either side that the other does not follow fails. The metric names are checked
by test_metric_names.py; `make docs` (mkdocs build --strict) fails on a broken link or page."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from trigger_operator import config
from trigger_operator.model.status import ReadyReason
from trigger_operator.plugin import main as plugin_main

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "hack"))
import docs_hooks  # noqa: E402
import docs_settings  # noqa: E402

PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
# Variables read outside config.py, each checked below where it is read.
OTHER_VARIABLES = {"TRIGGER_OPERATOR_LOG_FORMAT", "TRIGGER_OPERATOR_URL"}


def section(page: str, heading: str) -> str:
    text = (DOCS / page).read_text()
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def all_text() -> str:
    return "\n".join(p.read_text() for p in PAGES)


def test_the_ready_reasons_table_is_the_enum() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (True|False) \|", section("troubleshooting.md", "Ready reasons"), flags=re.M)
    assert sorted(r for r, _ in rows) == sorted(r.value for r in ReadyReason)
    assert [r for r, ready in rows if ready == "True"] == [ReadyReason.SCHEDULED.value]


def test_the_trigger_reference_lists_every_ready_reason() -> None:
    text = (DOCS / "trigger.md").read_text()
    sentence = text.split("The `Ready` condition has one reason per state", 1)[1].split("[Troubleshooting]", 1)[0]
    assert set(re.findall(r"`([A-Z]\w+)`", sentence)) == {r.value for r in ReadyReason}


def test_every_ready_reason_the_docs_name_exists() -> None:
    named = set(re.findall(r"Ready=(?:True|False) (\w+)", all_text()))
    assert named and named <= {r.value for r in ReadyReason}, named - {r.value for r in ReadyReason}


def expected_variables() -> set[str]:
    """What OperatorConfig.from_env reads, derived here independently of the generator."""
    hints = get_type_hints(config.OperatorConfig)
    return {f"TRIGGER_OPERATOR_{topic.name.upper()}_{f.name.upper()}"
            for topic in dataclasses.fields(config.OperatorConfig) for f in dataclasses.fields(hints[topic.name])}


def test_the_settings_table_has_every_setting_with_its_default_and_doc() -> None:
    rows = [s for _, _, settings in docs_settings.settings() for s in settings]
    assert {s.variable for s in rows} == expected_variables()
    assert all(s.doc for s in rows), [s.variable for s in rows if not s.doc]
    page = docs_settings.settings_page()
    for s in rows:
        assert f"| `{s.variable}` | {s.type} | {s.default} |" in page
    assert "| `TRIGGER_OPERATOR_SCHEDULER_WORKERS` | int | `64` |" in page
    assert "| `TRIGGER_OPERATOR_SOURCES_APPROVAL` | str | `required` |" in page
    assert '--8<-- "settings.md"' in (DOCS / "settings.md").read_text()


def _other_value(kind: type, default: Any) -> str:
    if kind is bool:
        return "false" if default else "true"
    if kind is str:
        return "off" if default == "required" else "x"
    return str(default + 1)


def test_each_documented_variable_is_the_one_the_operator_reads() -> None:
    """Setting a documented variable changes its field: the names are those from_env reads."""
    for topic, cls, rows in docs_settings.settings():
        hints = get_type_hints(cls)
        for field, row in zip(dataclasses.fields(cls), rows, strict=True):
            value = _other_value(hints[field.name], field.default)
            loaded = getattr(config.OperatorConfig.from_env({row.variable: value}), topic)
            assert getattr(loaded, field.name) != field.default, row.variable


def test_every_variable_the_docs_name_exists() -> None:
    named = {n for n in re.findall(r"\bTRIGGER_OPERATOR_[A-Z0-9_]*[A-Z0-9]\b", all_text())}
    assert named and named <= expected_variables() | OTHER_VARIABLES, named - expected_variables() - OTHER_VARIABLES
    assert plugin_main.URL_ENV == "TRIGGER_OPERATOR_URL"
    assert 'os.environ.get("TRIGGER_OPERATOR_LOG_FORMAT"' in (ROOT / "operator/trigger_operator/cli.py").read_text()


def values_tree() -> Any:
    return yaml.safe_load(docs_settings.VALUES.read_text())


def test_the_values_table_covers_every_value_of_the_chart() -> None:
    rows = {v.path for v in docs_settings.values()}
    leaves = set(docs_settings.leaves(values_tree()))
    uncovered = {leaf for leaf in leaves if not any(leaf == r or leaf.startswith(r + ".") for r in rows)}
    assert not uncovered
    assert rows <= {leaf.rsplit(".", n)[0] for leaf in leaves for n in range(leaf.count(".") + 1)}
    assert "| `webhook.failurePolicy` | `\"Fail\"` |" in docs_settings.values_page()
    assert '--8<-- "helm-values.md"' in (DOCS / "helm.md").read_text()


def test_every_chart_value_the_docs_name_exists() -> None:
    tree = values_tree()
    top = set(tree) - {"actions"}  # the catalog's keys are action types, documented as such
    paths = {leaf.rsplit(".", n)[0] for leaf in docs_settings.leaves(tree) for n in range(leaf.count(".") + 1)}
    text = all_text()
    named = set(re.findall(r"`([a-z][A-Za-z]*(?:\.[A-Za-z]+)+)(?:[`:= ])", text))
    named |= set(re.findall(r"--set '?([A-Za-z.]+)=", text))
    named = {n for n in named if n.split(".")[0] in top and not n.endswith((".py", ".yaml", ".json", ".md"))}
    # Below an empty map the keys are the user's (actionRunner.urls.<action type>).
    values = {key: value for key, value in tree.items() if key != "actions"}
    open_maps = {leaf for leaf in docs_settings.leaves(values) if _lookup(values, leaf) == {}}
    unknown = {n for n in named - paths if not any(n.startswith(m + ".") for m in open_maps)}
    assert named and not unknown, unknown


def _lookup(tree: Any, path: str) -> Any:
    for key in path.split("."):
        tree = tree[key]
    return tree


PATH = re.compile(r"`((?:operator|tests|hack|helm|crds|deploy|examples|bench|docs)/[\w./-]*[\w/])`")


def test_every_file_the_docs_name_exists() -> None:
    named = {p for p in PATH.findall(all_text()) if not p.startswith("bench/out")}
    missing = {p for p in named if not (ROOT / p).exists()}
    assert len(named) > 50 and not missing, missing


def test_the_architecture_page_names_every_module() -> None:
    page = section("architecture.md", "Each rule and the one file it lives in")
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "operator" / "trigger_operator").rglob("*.py")
               if p.name != "__init__.py"}
    assert modules and modules <= set(PATH.findall(page)), sorted(modules - set(PATH.findall(page)))


def test_the_layout_names_every_package_and_module() -> None:
    """The architecture page's Layout block: each package of the operator and each module's file
    name appears in it (a new module without its line fails here)."""
    text = (DOCS / "architecture.md").read_text()
    layout = text.split("\n## Layout\n", 1)[1].split("```", 2)[1]
    package = ROOT / "operator" / "trigger_operator"
    missing = [str(p.relative_to(package)) for p in package.rglob("*.py")
               if p.name != "__init__.py" and p.name not in layout]
    missing += [f"{d.name}/" for d in package.iterdir() if d.is_dir() and (d / "__init__.py").exists()
                and f"{d.name}/" not in layout]
    assert not missing, missing


def test_every_file_the_architecture_page_names_is_a_link_to_its_source_page() -> None:
    """The second click: hack/docs_hooks.py makes each named file a link to a generated page of it
    (checked by mkdocs build --strict, which fails on a link to a page that does not exist)."""
    page = (DOCS / "architecture.md").read_text()
    known = set(docs_hooks.source_files())
    linked = docs_hooks.link_sources(page, "architecture.md", known)
    named = set(PATH.findall(page))
    targets = set(re.findall(r"\]\(source/([^)]+)\.md\)", linked))
    modules = {n for n in named if n.startswith("operator/")}
    assert modules and modules <= targets, sorted(modules - targets)
    assert targets <= known


def test_the_readme_is_a_front_page_two_clicks_from_every_rule() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert all((ROOT / link).exists() for link in links), [link for link in links if not (ROOT / link).exists()]
    assert "docs/architecture.md" in links and len(readme.splitlines()) < 300
    for command in ("make run", "make test"):
        assert command in readme

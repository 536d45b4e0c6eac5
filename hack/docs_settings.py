"""Writes the docs' tables that repeat the code, from the code, so they cannot go stale.

    python hack/docs_settings.py [--out build/generated]

- ``settings.md``: every ``TRIGGER_OPERATOR_<TOPIC>_<FIELD>`` setting, from the dataclasses of
  ``trigger_operator.config`` (``OperatorConfig.from_env`` reads exactly these), with its type,
  default and docstring.
- ``helm-values.md``: every value of ``helm/trigger-operator/values.yaml`` with its default and the
  comment above it (the chart's values are documented there, once).

``make docs`` runs this before ``mkdocs build --strict``; docs/settings.md and docs/helm.md include
the files (pymdownx.snippets), so a missing one fails the build. tests/unit/test_docs.py checks the
tables against the code and the chart (a setting or value that the tables lack fails it).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from trigger_operator import config

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "helm" / "trigger-operator" / "values.yaml"
# Values whose content is a document of its own (the action catalog): one row, not one per key inside.
OPAQUE_VALUES = {"actions"}


@dataclasses.dataclass(frozen=True)
class Setting:
    variable: str
    type: str
    default: str
    doc: str


def _cell(text: str) -> str:
    """One line of a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (Python keeps none at run time)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _default(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value == "":
        return "(empty)"
    if isinstance(value, float) and value.is_integer():
        return f"`{value:g}`"
    return f"`{value}`"


def topics() -> list[tuple[str, type]]:
    """(topic, its settings class), in the order of ``OperatorConfig``."""
    hints = get_type_hints(config.OperatorConfig)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(config.OperatorConfig)]


def settings() -> list[tuple[str, type, list[Setting]]]:
    out = []
    for topic, cls in topics():
        docs, hints = _field_docs(cls), get_type_hints(cls)
        rows = [Setting(variable=f"TRIGGER_OPERATOR_{topic.upper()}_{f.name.upper()}",
                        type=hints[f.name].__name__, default=_default(f.default), doc=docs.get(f.name, ""))
                for f in dataclasses.fields(cls)]
        out.append((topic, cls, rows))
    return out


def settings_page() -> str:
    lines: list[str] = []
    for topic, cls, rows in settings():
        lines += [f"### {topic}", ""]
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):  # the dataclass's own repr doc
            lines += [" ".join(cls.__doc__.split()), ""]
        lines += ["| variable | type | default | what |", "|---|---|---|---|"]
        lines += [f"| `{s.variable}` | {s.type} | {s.default} | {_cell(s.doc)} |" for s in rows]
        lines.append("")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Value:
    path: str
    default: str
    doc: str


def _lookup(tree: Any, path: str) -> Any:
    node = tree
    for part in _split(path):
        node = node[part]
    return node


def _split(path: str) -> list[str]:
    """``a.b.c`` into its keys; a key holding a dot (``cluster.sources``) is never a path here."""
    return path.split("/")


KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.]+):(?P<rest>.*)$")


def values() -> list[Value]:
    """The chart's values: each leaf (or opaque) key with the comment block right above it.

    Read line by line, since a YAML parser drops comments; the keys found are checked against a real
    parse (tests/unit/test_docs.py), so a layout this reader misses fails the test, not the page.
    """
    tree = yaml.safe_load(VALUES.read_text())
    stack: list[tuple[int, str, str]] = []  # indent, key, the comment above it
    comment: list[str] = []
    found: list[Value] = []
    skip_below: int | None = None
    for line in VALUES.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        match = KEY.match(line)
        indent = len(line) - len(line.lstrip(" "))
        if skip_below is not None and indent > skip_below:
            continue
        skip_below = None
        if match is None:  # a list item or a continuation
            comment = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match["key"]
        path = "/".join([k for _, k, _ in stack] + [key])
        rest = match["rest"].split(" #", 1)[0].strip()
        doc = " ".join(comment)
        comment = []
        if path in OPAQUE_VALUES:
            found.append(Value(path.replace("/", "."), "see values.yaml", doc))
            skip_below = indent
        elif rest:
            # A key without a comment of its own is described by its group's (tokenSecret.name, .key).
            inherited = next((d for _, _, d in reversed(stack) if d), "")
            found.append(Value(path.replace("/", "."), f"`{json.dumps(_lookup(tree, path))}`", doc or inherited))
        else:
            stack.append((indent, key, doc))
    return found


def values_page() -> str:
    lines = ["| value | default | what |", "|---|---|---|"]
    lines += [f"| `{v.path}` | {_cell(v.default)} | {_cell(v.doc) or '-'} |" for v in values()]
    return "\n".join(lines) + "\n"


def leaves(tree: Any, prefix: str = "") -> Iterator[str]:
    """Every leaf key path of a parsed YAML tree (empty maps and lists are leaves)."""
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "generated")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "settings.md").write_text(settings_page())
    (args.out / "helm-values.md").write_text(values_page())


if __name__ == "__main__":
    main()

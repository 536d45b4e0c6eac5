"""The cluster admin's action catalog: which Job template each action type runs. Pure.

It lives in a ConfigMap (see `config.ActionSettings`): one key per action type, each value a Job
template in YAML with ``metadata`` and ``spec``, as in a CronJob's ``jobTemplate``. A ConfigMap,
not a cluster-scoped resource, because admins already manage ConfigMaps with every tool they have
(Helm, Kustomize, Argo CD), and a Trigger's own ``jobTemplate`` covers one-off needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

Catalog = Mapping[str, Mapping[str, Any]]


def parse_catalog(data: Mapping[str, str] | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Templates by action type, and a message for each key that is not a template."""
    catalog: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for key, text in sorted((data or {}).items()):
        action = key.removesuffix(".yaml")
        try:
            template = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problems.append(f"key {key!r}: not YAML: {error}")
            continue
        if not isinstance(template, dict):
            problems.append(f"key {key!r}: expected a Job template (a mapping with metadata and spec)")
            continue
        catalog[action] = template
    return catalog, problems

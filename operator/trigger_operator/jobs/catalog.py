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

from trigger_operator.jobs.render import template_problem

Catalog = Mapping[str, Mapping[str, Any]]


def parse_catalog(data: Mapping[str, str] | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Templates by action type, and a message for each key that is not a usable template."""
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
        problem = template_problem(template)
        if problem:
            problems.append(f"key {key!r}: the Job template {problem}")
            continue
        catalog[action] = template
    return catalog, problems


def merge_catalog(previous: Catalog, data: Mapping[str, str] | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The catalog after the ConfigMap changed to ``data``: an action type whose key went missing or
    broke keeps its last good template, so a bad edit (or Helm applying the ConfigMap after the
    operator starts) never stops Triggers or costs them their place in the schedule. Only an
    operator restart forgets a template that is gone for good."""
    catalog, problems = parse_catalog(data)
    for action, template in previous.items():
        if action not in catalog:
            catalog[action] = dict(template)
            problems.append(f"action type {action!r} has no usable template now: the last good one stays in use")
    return catalog, problems

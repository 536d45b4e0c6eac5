"""The cluster admin's action catalog: which Job template each action type runs, and where its
conditions are measured. Pure.

It lives in a ConfigMap (see `config.ActionSettings`): one key per action type, each value a Job
template in YAML with ``metadata`` and ``spec``, as in a CronJob's ``jobTemplate``. A ConfigMap,
not a cluster-scoped resource, because admins already manage ConfigMaps with every tool they have
(Helm, Kustomize, Argo CD), and a Trigger's own ``jobTemplate`` covers one-off needs.

Beside an action type's template, a key ``<action type>.sources`` may say where that action's
measurements live: per condition type (``drift``, ``threshold``, ``volume``) a condition source as
a Trigger writes one, whose texts may hold ``{field}`` placeholders filled from the Trigger's
actionConfig (``{cluster_id}``, ``{collection_id}``). A conditional Trigger without
``scheduleConfig.source`` reads its action type's default (the seed's conditional body names no
source: the hosted platform measures itself, here only the admin knows where). A key of its own,
not a section in the template, so that every template stays a plain jobTemplate and a catalog
without sources stays valid as it is::

    cluster.sources: |
      drift:
        configMap: {name: trigger-metrics, key: "{cluster_id}.centroid"}
      volume:
        http: {url: "http://metrics.platform.svc/v1/namespaces/{namespace}/clusters/{cluster_id}/stats",
               jsonPath: .documents}

A default is read without the author's approval, so it must not let one tenant read another's
numbers by naming their id (``cluster_id: team-b-cluster``). A configMap or object default is read
in the Trigger's own namespace, so it cannot. An http or prometheus default reads a service the
admin shares among tenants, so its URL (a prometheus one: its URL or query, e.g. a label matcher
``namespace="{namespace}"``) must hold ``{namespace}``, which the operator fills with the Trigger's
namespace and no actionConfig key can change; or the source says ``shared: true`` beside its kind,
the admin's statement that its data is no tenant's secret. Otherwise it is refused when the catalog
is read, as any broken source is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from trigger_operator.jobs.placeholders import (
    NAMESPACE,
    PlaceholderError,
    fill_text,
    fill_url,
    placeholders,
    url_placeholders,
)
from trigger_operator.jobs.render import no_template, template_problem
from trigger_operator.model.spec import ConditionSource, ConditionType, SpecError, TriggerSpec

Catalog = Mapping[str, Mapping[str, Any]]
SOURCES_SUFFIX = ".sources"  # the catalog key of an action type's default condition sources
# Default condition sources by action type, then condition type: the admin's source as YAML data,
# placeholders unfilled (a template, checked once with `_probe` values when the catalog is read).
Sources = Mapping[str, Mapping[ConditionType, Mapping[str, Any]]]
SOURCE_FIELD = "spec.scheduleConfig.source"
# The texts of a source that may hold placeholders, by kind; URLs follow fill_url's rule. Not the
# apiVersion and kind of an object, nor an http source's tokenSecret: what kind of object, and which
# Secret goes to the admin's URL, are the admin's alone.
_URL_FIELDS = {("http", "url"), ("prometheus", "url")}
_TEXT_FIELDS = {("configMap", "name"), ("configMap", "key"), ("object", "name"), ("object", "fieldPath"),
                ("http", "jsonPath"), ("prometheus", "query")}
CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")  # as Kubernetes checks a ConfigMap's keys
SHARED = "shared"  # beside a default's kind: ``shared: true``, the admin says its data is no tenant's
# The kinds that read a service shared among tenants, and the fields where `NAMESPACE` scopes them.
_SCOPED_BY = {"http": ("url",), "prometheus": ("url", "query")}
_PROBE = "probe"  # fills every placeholder when a default is checked at catalog read


def _mappings(data: Mapping[str, str] | None, problems: list[str], *, sources: bool,
              expected: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The catalog's keys of one kind (``*.sources`` or Job templates), in order, each parsed as a
    YAML mapping; a key that is not one is told in ``problems`` and left out."""
    for key, text in sorted((data or {}).items()):
        if key.endswith(SOURCES_SUFFIX) is not sources:
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problems.append(f"key {key!r}: not YAML: {error}")
            continue
        if not isinstance(value, dict):
            problems.append(f"key {key!r}: expected {expected}")
            continue
        yield key, value


def parse_catalog(data: Mapping[str, str] | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Templates by action type, and a message for each key that is not a usable template."""
    catalog: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for key, template in _mappings(data, problems, sources=False,
                                   expected="a Job template (a mapping with metadata and spec)"):
        action = key.removesuffix(".yaml")
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


def parse_sources(data: Mapping[str, str] | None) -> tuple[dict[str, dict[ConditionType, dict[str, Any]]], list[str]]:
    """Default condition sources by action type (keys ``<action type>.sources``), and a message for
    each key, or condition type in it, that is not usable. Each source is checked as a Trigger's
    would be, with its placeholders filled by a probe value, so a broken one is told to the admin
    when the catalog is read, not to every author at every check."""
    sources: dict[str, dict[ConditionType, dict[str, Any]]] = {}
    problems: list[str] = []
    known = ", ".join(t.value for t in ConditionType)
    for key, section in _mappings(data, problems, sources=True,
                                  expected=f"a mapping of condition types ({known}) to sources"):
        action = key.removesuffix(SOURCES_SUFFIX)
        by_type: dict[ConditionType, dict[str, Any]] = {}
        for name, source in section.items():
            try:
                condition = ConditionType(name)
            except ValueError:
                problems.append(f"key {key!r}: {name!r} is no condition type ({known})")
                continue
            problem = _source_problem(source)
            if problem:
                problems.append(f"key {key!r}: {name}: {problem}")
                continue
            by_type[condition] = _without_shared(source)  # checked: what is read is the source alone
        if by_type:
            sources[action] = by_type
    return sources, problems


def merge_sources(previous: Sources, data: Mapping[str, str] | None
                  ) -> tuple[dict[str, dict[ConditionType, dict[str, Any]]], list[str]]:
    """The default sources after the ConfigMap changed to ``data``: a source that broke keeps its last
    good one (a bad edit does not fail every Trigger that reads it); one the admin removed is gone
    (unlike a template: a default source reads on the tenants' behalf, and its removal may be the fix)."""
    sources, problems = parse_sources(data)
    present = {key.removesuffix(SOURCES_SUFFIX) for key in (data or {}) if key.endswith(SOURCES_SUFFIX)}
    for action, by_type in previous.items():
        if action not in present:
            continue
        section = _section(data, action)
        for condition, source in by_type.items():
            if condition not in sources.get(action, {}) and (section is None or condition.value in section):
                sources.setdefault(action, {})[condition] = dict(source)
                problems.append(f"the default {condition.value} source of action type {action!r} is not usable now: "
                                "the last good one stays in use")
    return sources, problems


def _section(data: Mapping[str, str] | None, action: str) -> Mapping[str, Any] | None:
    """The parsed ``<action>.sources`` key, or None when it does not parse as a mapping."""
    try:
        section = yaml.safe_load((data or {})[action + SOURCES_SUFFIX])
    except (KeyError, yaml.YAMLError):
        return None
    return section if isinstance(section, dict) else None


def default_source(action_type: str, condition_type: ConditionType, action_config: Mapping[str, Any],
                   sources: Sources, *, namespace: str) -> ConditionSource:
    """The admin's default source for a conditional Trigger that names none, its placeholders filled
    from ``action_config`` (``{namespace}``: the Trigger's ``namespace``). Raises `SpecError` naming
    ``spec.scheduleConfig.source`` when the catalog has none, or the actionConfig key that is
    missing or cannot fill it; the filled source passes the same checks as a Trigger's own (object
    names, URLs), and a filled URL keeps the template's origin and path prefix."""
    template = sources.get(action_type, {}).get(condition_type)
    if template is None:
        raise SpecError(SOURCE_FIELD, f"is required: the actions ConfigMap has no default "
                        f"{condition_type.value} source for action type {action_type!r} (key {action_type}"
                        f"{SOURCES_SUFFIX}; one the operator refused is named in its log); the cluster admin adds "
                        "one there, or the Trigger names its own source")
    where = f"the default {condition_type.value} source of action type {action_type!r}"
    return _source_of(template, action_config, namespace, where)


def _source_of(template: Mapping[str, Any], config: Mapping[str, Any], namespace: str, where: str
               ) -> ConditionSource:
    """The one fill-and-validate step, for a Trigger (`default_source`) and for the probe when the
    catalog is read (`_source_problem`): raises `SpecError` naming the actionConfig keys to fix."""
    try:
        filled = _filled(template, config, namespace, where)
    except PlaceholderError as error:
        raise SpecError(f"spec.{error.field}" if error.field else SOURCE_FIELD, error.reason) from None
    names = [f"spec.actionConfig.{n}" for n in _names(template)]
    field = ", ".join(names) or SOURCE_FIELD
    made = f"filled into {where}, makes its " if names else f"{where}: " if where else ""
    try:
        source = ConditionSource.model_validate(filled)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(p) for p in first["loc"]) or "source"
        raise SpecError(field, f"{made}{location} invalid: {first['msg']}") from None
    if source.config_map is not None and not CONFIG_MAP_KEY.fullmatch(source.config_map.key):
        raise SpecError(field, f"{made}configMap.key no valid key")
    return source


def _filled(template: Mapping[str, Any], config: Mapping[str, Any], namespace: str, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, fields in template.items():
        if not isinstance(fields, Mapping):
            out[kind] = fields
            continue
        out[kind] = {}
        for name, value in fields.items():
            text = f"{where} ({kind}.{name})" if where else f"{kind}.{name}"
            if isinstance(value, str) and (kind, name) in _URL_FIELDS:
                value = fill_url(value, config, where=text, namespace=namespace)
            elif isinstance(value, str) and (kind, name) in _TEXT_FIELDS:
                value = fill_text(value, config, where=text, namespace=namespace)
            out[kind][name] = value
    return out


def _fields(kind: str, name: str, value: Any) -> list[str]:
    """The placeholders of one text of a source, read as it will be filled."""
    if not isinstance(value, str):
        return []
    return url_placeholders(value) if (kind, name) in _URL_FIELDS else placeholders(value)


def _names(template: Mapping[str, Any]) -> list[str]:
    """The actionConfig keys a source template's placeholders read, in order, once each (not
    ``{namespace}``: the operator fills it)."""
    found: list[str] = []
    for kind, fields in template.items():
        for name, value in (fields.items() if isinstance(fields, Mapping) else ()):
            found.extend(f for f in _fields(kind, name, value) if f != NAMESPACE)
    return list(dict.fromkeys(found))


def _source_problem(source: Any) -> str | None:
    """Why a default source from the catalog is unusable, or None: a source as a Trigger writes one
    (`SHARED` aside), with placeholders only where a value cannot move it (see `_URL_FIELDS`,
    `_TEXT_FIELDS`), and scoped to the asking tenant when it reads a shared service (`_SCOPED_BY`)."""
    if not isinstance(source, dict):
        return "expected a source (one of configMap, object, http, prometheus)"
    shared = source.get(SHARED, False)
    if not isinstance(shared, bool):
        return f"{SHARED} must be true or false"
    source = _without_shared(source)
    for kind, fields in source.items():
        for name, value in (fields.items() if isinstance(fields, dict) else ()):
            if isinstance(value, str) and placeholders(value) and (kind, name) not in _URL_FIELDS | _TEXT_FIELDS:
                return f"{kind}.{name} may not hold a placeholder (the admin's choice alone)"
    try:
        _source_of(source, dict.fromkeys(_names(source), _PROBE), _PROBE, "")
    except SpecError as error:
        return error.reason
    for kind, scoped in _SCOPED_BY.items():
        fields = source.get(kind)
        if isinstance(fields, dict) and not shared and not any(
                NAMESPACE in _fields(kind, name, fields.get(name)) for name in scoped):
            where = " or ".join(f"{kind}.{name}" for name in scoped)
            return (f"a {kind} default reads a service every tenant's Triggers share, so {where} must hold "
                    f"{{{NAMESPACE}}} (the operator fills it with the Trigger's namespace, so a tenant reads only "
                    f"its own data), or the source says `{SHARED}: true` (its data is no tenant's secret)")
    return None


def _without_shared(source: Mapping[str, Any]) -> dict[str, Any]:
    return {kind: fields for kind, fields in source.items() if kind != SHARED}


class TemplateMissing(Exception):
    """The admin's catalog has no usable template for the action type: not the Trigger's fault, so
    it keeps its place in the schedule and catches up (per catchUpPolicy) once the template is back."""


def resolve_template(spec: TriggerSpec, catalog: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The Job template for a Trigger: its own ``jobTemplate``, else its action type's from the
    admin's catalog. Raises `SpecError` naming the field when the Trigger's own template is
    unusable, `TemplateMissing` when the catalog has none (or an unusable one) for the action type."""
    if spec.job_template is not None:
        template: Mapping[str, Any] = spec.job_template
        field = "spec.jobTemplate"
    elif spec.action_type.value in catalog:
        template = catalog[spec.action_type.value]
        field = "spec.actionType"
    else:
        raise TemplateMissing(f"{no_template(spec.action_type.value)}; the schedule keeps its place meanwhile")
    problem = template_problem(template)
    if problem and field == "spec.jobTemplate":
        raise SpecError(field, f"the Job template {problem}")
    if problem:
        raise TemplateMissing(f"spec.actionType: the actions ConfigMap's {spec.action_type.value!r} template "
                              f"{problem}; the schedule keeps its place meanwhile")
    return template

"""One source of truth per fact: the CRD's schema repeats the spec model, the status fields, their
enums, defaults and bounds; these tests fail when the copies drift apart. The shipped examples and
default action catalog must pass the operator's own validation too."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from trigger_operator.core.firing.condition import with_default_source
from trigger_operator.jobs.catalog import parse_catalog, parse_sources, resolve_template
from trigger_operator.model import filters
from trigger_operator.model.notify import Notifications, NotificationType, ServiceRef, SigningSecretRef, Sink
from trigger_operator.model.spec import (
    CALENDAR_FIELDS,
    DATE,
    HTTP_URL,
    NAME_MAX_LENGTH,
    PROMETHEUS_URL,
    ActionType,
    ConcurrencyPolicy,
    ConditionSource,
    ConditionType,
    ConfigMapSource,
    HttpSource,
    ObjectSource,
    PrometheusSource,
    ScheduleConfig,
    SecretKeyRef,
    SpecError,
    State,
    TriggerSpec,
    TriggerType,
    parse_spec,
)
from trigger_operator.model.status import BackfillState, Outcome, Phase, RunKind, status_field_names
from trigger_operator.timemath.due import CatchUpPolicy

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "triggers.trigger-operator.io.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
STATUS = SCHEMA["properties"]["status"]


def aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def model_property(model: type[BaseModel], alias: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)["properties"][alias]
    # Optional fields appear as anyOf [{type...}, {type: null}]; their bounds sit on the first.
    return {**schema, **next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), {})}


def test_the_crd_spec_has_exactly_the_models_fields() -> None:
    assert set(SPEC["properties"]) == aliases(TriggerSpec)
    assert set(SPEC["properties"]["scheduleConfig"]["properties"]) == aliases(ScheduleConfig)


def test_the_required_spec_fields_agree() -> None:
    required = {f.alias for f in TriggerSpec.model_fields.values() if f.is_required()}
    assert set(SPEC["required"]) == required


@pytest.mark.parametrize(("path", "enum_type"), [
    pytest.param(("actionType",), ActionType, id="actionType"),
    pytest.param(("triggerType",), TriggerType, id="triggerType"),
    pytest.param(("state",), State, id="state"),
    pytest.param(("concurrencyPolicy",), ConcurrencyPolicy, id="concurrencyPolicy"),
    pytest.param(("catchUpPolicy",), CatchUpPolicy, id="catchUpPolicy"),
    pytest.param(("scheduleConfig", "conditionType"), ConditionType, id="conditionType"),
])
def test_the_crd_enums_are_the_models_enums(path: tuple[str, ...], enum_type: type[enum.Enum]) -> None:
    node = SPEC
    for key in path:
        node = node["properties"][key]
    assert node["enum"] == [e.value for e in enum_type]


@pytest.mark.parametrize(("model", "properties"), [
    pytest.param(TriggerSpec, SPEC["properties"], id="spec"),
    pytest.param(ScheduleConfig, SPEC["properties"]["scheduleConfig"]["properties"], id="scheduleConfig"),
    pytest.param(ServiceRef, SPEC["properties"]["notifications"]["properties"]["sinks"]["items"]["properties"]["ref"]
                 ["properties"], id="notifications.sinks.ref"),
])
def test_the_crd_defaults_and_bounds_are_the_models(model: type[BaseModel], properties: dict[str, Any]) -> None:
    for name, field in model.model_fields.items():
        alias = field.alias or name
        crd, ours = properties[alias], model_property(model, alias)
        for key in ("minimum", "maximum"):
            assert crd.get(key) == ours.get(key), f"{alias}.{key}"
        # A default the API server fills in must be the model's; a spec default that is a plain
        # value (not None, not a factory) must be in the CRD, so kubectl shows what applies. The
        # scheduleConfig defaults belong to one trigger type each (a cron Trigger has no cooldown):
        # the API server fills none of them in, the model applies them.
        default = field.get_default(call_default_factory=False) if not field.is_required() else None
        default = default.value if isinstance(default, enum.Enum) else default
        if model is ScheduleConfig:
            assert "default" not in crd, f"{alias}.default"
        elif "default" in crd or (default is not None and field.default_factory is None):
            assert crd.get("default") == default, f"{alias}.default"


SOURCE = SPEC["properties"]["scheduleConfig"]["properties"]["source"]["properties"]
NOTIFICATIONS = SPEC["properties"]["notifications"]
# Every model of the spec with the CRD node that repeats it.
MODELS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (TriggerSpec, SPEC),
    (ScheduleConfig, SPEC["properties"]["scheduleConfig"]),
    (ConditionSource, SPEC["properties"]["scheduleConfig"]["properties"]["source"]),
    (ConfigMapSource, SOURCE["configMap"]),
    (ObjectSource, SOURCE["object"]),
    (HttpSource, SOURCE["http"]),
    (SecretKeyRef, SOURCE["http"]["properties"]["tokenSecret"]),
    (PrometheusSource, SOURCE["prometheus"]),
    (Notifications, NOTIFICATIONS),
    (Sink, NOTIFICATIONS["properties"]["sinks"]["items"]),
    (ServiceRef, NOTIFICATIONS["properties"]["sinks"]["items"]["properties"]["ref"]),
    (SigningSecretRef, NOTIFICATIONS["properties"]["signingSecretRef"]),
]
LENGTHS = ("maxLength", "maxItems", "maxProperties")


@pytest.mark.parametrize(("model", "node"), [pytest.param(m, n, id=m.__name__) for m, n in MODELS])
def test_the_crd_length_bounds_are_the_models(model: type[BaseModel], node: dict[str, Any]) -> None:
    """Issue 17: every string and list a Trigger author writes is bounded, by the API server and by
    the model alike (the webhook and the controller call parse_spec; the API server refuses first)."""
    assert set(node["properties"]) == aliases(model)
    for name, field in model.model_fields.items():
        alias = field.alias or name
        crd, ours = node["properties"][alias], model_property(model, alias)
        for key in LENGTHS:
            assert crd.get(key) == ours.get(key), f"{model.__name__}.{alias}.{key}"
        if "minLength" in ours:
            assert crd.get("minLength") == ours["minLength"], f"{model.__name__}.{alias}.minLength"
        if "pattern" in ours:
            assert crd.get("pattern") == ours["pattern"], f"{model.__name__}.{alias}.pattern"
        if crd.get("type") == "string" and "enum" not in crd and crd.get("format") != "date-time":
            assert "maxLength" in crd, f"{model.__name__}.{alias} is a string without a bound"
        if crd.get("type") == "array":
            assert "maxItems" in crd, f"{model.__name__}.{alias} is a list without a bound"


@pytest.mark.parametrize("alias", ["cronExpressions", "excludeCron", "excludeDates"])
def test_the_crd_bounds_each_calendar_line_as_the_model(alias: str) -> None:
    """Issue 22's lists: the API server bounds each item (length, form) as the model does, and a
    line is shaped like cronExpression itself."""
    config = SPEC["properties"]["scheduleConfig"]["properties"]
    item = model_property(ScheduleConfig, alias)["items"]
    assert {k: config[alias]["items"].get(k) for k in ("minLength", "maxLength")} == {
        k: item.get(k) for k in ("minLength", "maxLength")}
    expected = DATE if alias == "excludeDates" else config["cronExpression"]["pattern"]
    assert config[alias]["items"]["pattern"] == expected == item.get("pattern", expected)


def test_the_crd_refuses_the_calendar_on_event_and_conditional_triggers_as_the_model() -> None:
    """One CEL rule names every calendar field the model refuses outside cron and interval."""
    [rule] = [r for r in SPEC["x-kubernetes-validations"] if "maxRuns" in r["rule"]]
    assert rule["rule"].startswith("self.triggerType in ['cron', 'interval'] || ")
    named = set(re.findall(r"self\.scheduleConfig\.(\w+)\)", rule["rule"]))
    assert named == {to_camel(f) for f in CALENDAR_FIELDS}
    for field in CALENDAR_FIELDS:
        assert to_camel(field) in rule["message"]
    for kind in ("event", "conditional"):
        with pytest.raises(SpecError, match=r"spec\.scheduleConfig\.maxRuns: applies only to cron and interval"):
            parse_spec({"actionType": "cluster", "triggerType": kind, "scheduleConfig": {
                "eventType": "a", "eventThreshold": 1, "conditionType": "threshold", "metric": "m", "threshold": 1,
                "checkIntervalSeconds": 60, "maxRuns": 3}})


def test_the_crd_url_patterns_are_the_models() -> None:
    assert SOURCE["http"]["properties"]["url"]["pattern"] == HTTP_URL
    assert SOURCE["prometheus"]["properties"]["url"]["pattern"] == PROMETHEUS_URL


def test_the_crd_types_a_filters_first_level_with_the_bounds_the_model_implies() -> None:
    """The nesting is the model's to check (the CRD has no recursion); the first level the API
    server refuses itself, so one `any` of 50,000 entries never reaches the operator."""
    item = SPEC["properties"]["scheduleConfig"]["properties"]["filters"]["items"]
    assert item["maxProperties"] == 1 and set(item["properties"]) == set(filters.DIALECTS)
    for dialect in ("exact", "prefix", "suffix"):
        tests = item["properties"][dialect]
        assert (tests["minProperties"], tests["maxProperties"]) == (1, filters.MAX_ATTRIBUTES)
        assert tests["additionalProperties"]["maxLength"] == filters.MAX_VALUE_LENGTH
        assert tests["additionalProperties"].get("minLength", 0) == (0 if dialect == "exact" else 1)
    for dialect in ("all", "any"):
        assert (item["properties"][dialect]["minItems"], item["properties"][dialect]["maxItems"]) == (
            1, filters.MAX_LIST_ITEMS)
    # The widest first level the CRD lets through is still within the model's bound in all.
    filters.check_filters([{"any": [{"exact": {"type": "a"}}] * filters.MAX_LIST_ITEMS}])
    filters.check_filters([{"exact": {f"a{i}": "v" for i in range(filters.MAX_ATTRIBUTES)}}])


def test_the_crd_status_has_exactly_the_status_fields() -> None:
    assert list(STATUS["properties"]) == status_field_names()


@pytest.mark.parametrize(("enum_values", "expected"), [
    pytest.param(STATUS["properties"]["phase"]["enum"], Phase, id="phase"),
    pytest.param(STATUS["properties"]["active"]["items"]["properties"]["kind"]["enum"], RunKind, id="run-kind"),
    pytest.param(STATUS["properties"]["recentExecutions"]["items"]["properties"]["outcome"]["enum"], Outcome,
                 id="outcome"),
    pytest.param(STATUS["properties"]["recentExecutions"]["items"]["properties"]["kind"]["enum"], RunKind,
                 id="execution-kind"),
    pytest.param(STATUS["properties"]["backfill"]["properties"]["state"]["enum"], BackfillState, id="backfill-state"),
])
def test_the_crd_status_enums_are_the_models(enum_values: list[str], expected: type[enum.Enum]) -> None:
    assert enum_values == [e.value for e in expected]


def test_the_name_length_rule_is_the_models() -> None:
    [rule] = SCHEMA["x-kubernetes-validations"]
    assert rule["rule"] == f"size(self.metadata.name) <= {NAME_MAX_LENGTH}"


def test_every_printer_column_points_at_a_schema_field() -> None:
    for column in VERSION["additionalPrinterColumns"]:
        path = column["jsonPath"].strip(".")
        # A filter on a list (conditions[?(@.type=="Ready")].status) walks into the list's items.
        path = re.sub(r"\[\?\(@\.(\w+)==\"\w+\"\)\]", r".[]", path)
        *parents, leaf = path.split(".")
        if parents == ["metadata"]:
            continue
        node = SCHEMA
        for key in parents:
            node = node["items"] if key == "[]" else node["properties"][key]
        assert leaf in node["properties"], column


def test_every_trigger_type_has_a_schedule_column() -> None:
    """observedSchedule is written for cron and interval Triggers, so the column is never empty for them."""
    columns = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert columns["Schedule"] == ".status.observedSchedule"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_a_valid_trigger_with_a_shipped_template(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    assert len(manifest["metadata"]["name"]) <= NAME_MAX_LENGTH
    spec = parse_spec(manifest["spec"])
    catalog, problems = parse_catalog(yaml.safe_load((ROOT / "deploy" / "actions.yaml").read_text())["data"])
    assert problems == []
    assert resolve_template(spec, catalog)["spec"]["template"]["spec"]["containers"]
    sources, problems = parse_sources(yaml.safe_load((ROOT / "deploy" / "actions.yaml").read_text())["data"])
    assert (problems == [] and with_default_source(spec, sources, "default").schedule_config.source is not None) or (
        spec.trigger_type is not TriggerType.CONDITIONAL)


def test_the_shipped_catalog_covers_every_action_type() -> None:
    catalog, problems = parse_catalog(yaml.safe_load((ROOT / "deploy" / "actions.yaml").read_text())["data"])
    assert (problems, sorted(catalog)) == ([], sorted(a.value for a in ActionType))


def test_the_crd_notifications_types_and_sink_rule_are_the_models() -> None:
    """The eight types as the model lists them, the sinks' item count and Sink's "exactly one" rule."""
    assert NOTIFICATIONS["properties"]["types"]["items"]["enum"] == [t.value for t in NotificationType]
    sinks = NOTIFICATIONS["properties"]["sinks"]
    schema = Notifications.model_json_schema(by_alias=True)["properties"]["sinks"]
    assert (sinks["minItems"], sinks["maxItems"]) == (schema["minItems"], schema["maxItems"])
    assert sinks["items"]["x-kubernetes-validations"][0]["rule"] == "has(self.uri) != has(self.ref)"
    uri = sinks["items"]["properties"]["uri"]["pattern"]
    for url in ("https://a.example.com/hook", "http://10.0.0.1:8080/x?y=1", "ftp://a/", "https://u@a/", "https://a/#f"):
        ok = True
        try:
            Sink.model_validate({"uri": url})
        except ValueError:
            ok = False
        assert ok == bool(re.fullmatch(uri, url)), url

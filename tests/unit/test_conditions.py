"""Condition values: reading them out of documents, the drift, threshold and volume measures. Pure."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from trigger_operator.conditions.evaluate import evaluate
from trigger_operator.conditions.measure import MeasureError, Reading, compare, drift, extract, read_value
from trigger_operator.model.spec import TriggerSpec, parse_spec
from trigger_operator.model.status import TriggerStatus

DOC = {"status": {"drift": 0.42, "centroid": [0.1, 0.2], "items": [{"value": "7"}, {"value": 9}]},
       "data": {"shift": "0.25"}}


@pytest.mark.parametrize(("path", "expected"), [
    pytest.param(".status.drift", 0.42, id="dotted"),
    pytest.param("status.drift", 0.42, id="without-the-leading-dot"),
    pytest.param("{.status.items[1].value}", 9, id="kubectl-jsonpath-braces-and-an-index"),
    pytest.param(".status.centroid", [0.1, 0.2], id="a-vector"),
    pytest.param(".", DOC, id="the-whole-document"),
])
def test_a_field_path_reads_the_field(path: str, expected: Any) -> None:
    assert extract(DOC, path) == expected


@pytest.mark.parametrize(("path", "says"), [
    pytest.param(".status.missing", "no field 'missing'", id="missing-field"),
    pytest.param(".status.items[5]", "no item [5]", id="index-past-the-end"),
    pytest.param(".status..drift", "not a field path", id="two-dots"),
])
def test_a_field_path_that_finds_nothing_says_where(path: str, says: str) -> None:
    with pytest.raises(MeasureError, match=says.replace("[", r"\[").replace("]", r"\]")):
        extract(DOC, path)


@pytest.mark.parametrize(("raw", "value"), [
    pytest.param("0.25", 0.25, id="a-string-number"),
    pytest.param(" 3 ", 3.0, id="spaces"),
    pytest.param("[1, 2.5]", (1.0, 2.5), id="a-json-list-in-a-string"),
    pytest.param(7, 7.0, id="a-number"),
    pytest.param([0, 1], (0.0, 1.0), id="a-list"),
])
def test_values_are_numbers_or_vectors(raw: Any, value: Any) -> None:
    assert read_value(raw) == value


@pytest.mark.parametrize("raw", [True, "NaN", "[1, \"a\"]", {"a": 1}, "[]", None])
def test_anything_else_is_no_value(raw: Any) -> None:
    with pytest.raises(MeasureError):
        read_value(raw)


@pytest.mark.parametrize(("metric", "value", "baseline", "expected"), [
    pytest.param("absolute_drift", 1.5, 1.0, 0.5, id="absolute-numbers"),
    pytest.param("absolute_drift", (3.0, 4.0), (0.0, 0.0), 5.0, id="absolute-vectors-euclidean"),
    pytest.param("relative_drift", 1.5, 1.0, 0.5, id="relative"),
    pytest.param("relative_drift", 0.5, -1.0, 1.5, id="relative-to-a-negative-baseline"),
    pytest.param("cosine_drift", (1.0, 0.0), (0.0, 1.0), 1.0, id="cosine-orthogonal"),
    pytest.param("cosine_drift", (2.0, 2.0), (1.0, 1.0), 0.0, id="cosine-same-direction"),
    pytest.param("cosine_drift", (1.0, 0.0), (1.0, 1.0), 1 - 1 / math.sqrt(2), id="cosine-45-degrees"),
])
def test_drift_measures(metric: str, value: Any, baseline: Any, expected: float) -> None:
    assert drift(metric, value, baseline) == pytest.approx(expected)


@pytest.mark.parametrize(("metric", "value", "baseline", "says"), [
    pytest.param("relative_drift", 1.0, 0.0, "baseline of 0", id="relative-from-zero"),
    pytest.param("cosine_drift", 1.0, 2.0, "needs a vector", id="cosine-of-numbers"),
    pytest.param("cosine_drift", (0.0, 0.0), (1.0, 0.0), "zero vector", id="cosine-of-zero"),
    pytest.param("absolute_drift", (1.0, 2.0), (1.0,), "different shapes", id="shapes"),
])
def test_drift_that_is_undefined_says_why(metric: str, value: Any, baseline: Any, says: str) -> None:
    with pytest.raises(MeasureError, match=says):
        drift(metric, value, baseline)


@pytest.mark.parametrize(("comparison", "value", "holds"), [
    (">", 10.0, False), (">", 10.5, True), (">=", 10.0, True), ("<", 9.0, True), ("<=", 10.0, True), ("<", 10.0, False),
])
def test_threshold_comparisons(comparison: str, value: float, holds: bool) -> None:
    assert compare(comparison, value, 10.0) is holds


@pytest.mark.parametrize(("metric", "value", "baseline"), [
    pytest.param("absolute_drift", 1e200, 0.0, id="overflowing-square"),
    pytest.param("cosine_drift", (1e200, 1e200), (1.0, 1.0), id="overflowing-norm"),
])
def test_drift_out_of_range_is_a_measure_error_not_a_crash(metric: str, value: Any, baseline: Any) -> None:
    with pytest.raises(MeasureError, match=r"out of range|not a finite number"):
        drift(metric, value, baseline)


def test_a_huge_integer_is_no_value_and_the_value_is_never_repeated() -> None:
    with pytest.raises(MeasureError) as caught:
        read_value("9" * 400)
    assert "9999" not in str(caught.value)
    with pytest.raises(MeasureError) as secret:
        read_value("password=hunter2")
    assert "hunter2" not in str(secret.value)


NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


# --- volume conditions (a document count crossing the threshold) -------------------------------------

def volume_spec(comparison: str, threshold: float) -> TriggerSpec:
    return parse_spec({"actionType": "collection_trigger", "actionConfig": {"collection_id": "col_abc123"},
                       "triggerType": "conditional",
                       "scheduleConfig": {"conditionType": "volume", "metric": "document_count",
                                          "threshold": threshold, "comparison": comparison,
                                          "checkIntervalSeconds": 60,
                                          "source": {"configMap": {"name": "stats", "key": "documents"}}}})


@pytest.mark.parametrize(("comparison", "threshold", "raw", "exceeded"), [
    pytest.param(">", 100, "101", True, id="above"),
    pytest.param(">", 100, "100", False, id="at-is-not-above"),
    pytest.param(">=", 100, 100, True, id="at-or-above"),
    pytest.param("<", 10, "3", True, id="below-a-floor"),
    pytest.param("<=", 10, "11", False, id="not-below"),
    pytest.param(">", 0, "0", False, id="an-empty-collection"),
    pytest.param(">", 999, "1e3", True, id="prometheus-float-text"),
])
def test_a_volume_condition_compares_the_document_count(comparison: str, threshold: float, raw: Any,
                                                        exceeded: bool) -> None:
    check = evaluate(TriggerStatus(), volume_spec(comparison, threshold), Reading(at=NOW, raw=raw))
    measured = check.status.last_volume_measurement
    assert measured is not None and measured["exceeded"] is exceeded and "error" not in measured
    assert (measured["comparison"], measured["threshold"], measured["checkedAt"]) == (comparison, threshold,
                                                                                       "2026-03-02T10:00:00Z")
    assert check.fire is exceeded and check.status.last_drift_measurement is None


@pytest.mark.parametrize(("raw", "says"), [
    pytest.param("12.5", "a whole number", id="a-fraction"),
    pytest.param("-1", "at least 0", id="negative"),
    pytest.param("[1, 2]", "needs a number, not a list", id="a-vector"),
    pytest.param("true", "boolean", id="a-boolean"),
])
def test_a_volume_value_that_is_no_document_count_is_a_failed_check(raw: Any, says: str) -> None:
    check = evaluate(TriggerStatus(), volume_spec(">", 10), Reading(at=NOW, raw=raw))
    measured = check.status.last_volume_measurement
    assert measured is not None and measured["exceeded"] is None and says in measured["error"]
    assert check.status.source_errors == 1 and not check.fire

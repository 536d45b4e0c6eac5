"""What a condition source's value means. Pure.

A value is a number or a vector (a list of numbers). ``drift`` compares it with the baseline
(``status.baselineSnapshot``) by ``metric``: ``absolute_drift`` |v - b| (vectors: the Euclidean
norm of the difference), ``relative_drift`` |v - b| / |b|, ``cosine_drift`` 1 - cos(v, b) (vectors
only). ``threshold`` compares the value itself with ``threshold`` by ``comparison``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trigger_operator.model.spec import COMPARISONS, DRIFT_METRICS

Value = float | tuple[float, ...]
__all__ = ["COMPARISONS", "DRIFT_METRICS", "MAX_TEXT_CHARACTERS", "MeasureError", "Reading", "check_length", "compare",
           "drift", "extract", "read_value"]
# The longest text read_value parses itself: a number as text, as Prometheus sends its samples. The
# shell parses longer text (a ConfigMap's vector) off the event loop, under the admin's byte bound,
# and hands over the data; text that reaches the core is parsed on the loop, so it stays short.
MAX_TEXT_CHARACTERS = 1024
_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


class MeasureError(ValueError):
    """The source answered, but not with a usable value (the message says why)."""


@dataclass(frozen=True)
class Reading:
    """One check of a source, as the shell made it: what it answered (raw JSON data) or why it failed."""

    at: dt.datetime
    raw: Any = None
    error: str | None = None


def check_length(raw: Any, max_length: int) -> None:
    """Refuses a list of more than ``max_length`` items, counted before any conversion."""
    if isinstance(raw, list | tuple) and len(raw) > max_length:
        raise MeasureError(f"the value is a list of {len(raw)} items, over the bound of {max_length} "
                           "(sources.maxVectorLength)")


def read_value(raw: Any, *, max_length: int | None = None) -> Value:
    """A number or a vector, from JSON data or a short string holding one (``MAX_TEXT_CHARACTERS``);
    with ``max_length``, a longer vector is refused before any conversion."""
    # What the source said is never repeated in a message: it may be anything (status is public).
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > MAX_TEXT_CHARACTERS:
            raise MeasureError(f"the value is text of {len(text)} characters; a number as text has at most "
                               f"{MAX_TEXT_CHARACTERS} (a list comes as JSON data)")
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            raise MeasureError(f"the value ({len(text)} characters) is neither a number nor a JSON list of "
                               "numbers") from None
    if isinstance(raw, bool):
        raise MeasureError("a boolean is not a number")
    if max_length is not None:
        check_length(raw, max_length)
    try:
        if isinstance(raw, (int, float)):
            return _finite(float(raw))
        if isinstance(raw, str):
            return read_value(raw, max_length=max_length)
        if isinstance(raw, Sequence) and raw and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                     for x in raw):
            return tuple(_finite(float(x)) for x in raw)
    except OverflowError:
        raise MeasureError("the value is too large for a float") from None
    raise MeasureError(f"expected a number or a non-empty list of numbers, got a {type(raw).__name__}")


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise MeasureError(f"{x} is not a finite number")
    return x


def extract(document: Any, path: str) -> Any:
    """The field at ``path`` (``.status.drift``, ``{.data.items[0].value}``, ``data.value``)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text in ("", "."):
        return document
    position, node = 0, document
    for match in _STEP.finditer(text):
        if match.start() != position:
            break
        position = match.end()
        key, index = match.group(1), match.group(2)
        if key is not None:
            if not isinstance(node, dict) or key not in node:
                raise MeasureError(f"{path}: no field {key!r}")
            node = node[key]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                raise MeasureError(f"{path}: no item [{index}]")
            node = node[int(index)]
    if position != len(text):
        raise MeasureError(f"{path}: not a field path (use .a.b[0].c)")
    return node


def drift(metric: str, value: Value, baseline: Value) -> float:
    try:
        measured = _drift(metric, value, baseline)
    except (OverflowError, ZeroDivisionError):
        raise MeasureError(f"{metric} of these values is out of range") from None
    if not math.isfinite(measured):
        raise MeasureError(f"{metric} of these values is not a finite number")
    return measured


def _drift(metric: str, value: Value, baseline: Value) -> float:
    if isinstance(value, tuple) != isinstance(baseline, tuple) or (
            isinstance(value, tuple) and isinstance(baseline, tuple) and len(value) != len(baseline)):
        raise MeasureError("the value and the baseline have different shapes; edit the spec or reset the baseline")
    v = value if isinstance(value, tuple) else (value,)
    b = baseline if isinstance(baseline, tuple) else (baseline,)
    difference = math.sqrt(sum((x - y) ** 2 for x, y in zip(v, b, strict=True)))
    if metric == "absolute_drift":
        return difference
    if metric == "relative_drift":
        size = math.sqrt(sum(y * y for y in b))
        if size == 0:
            raise MeasureError("relative_drift from a baseline of 0 is undefined; use absolute_drift")
        return difference / size
    if metric == "cosine_drift":
        if not isinstance(value, tuple):
            raise MeasureError("cosine_drift needs a vector (a list of numbers)")
        nv, nb = math.sqrt(sum(x * x for x in v)), math.sqrt(sum(y * y for y in b))
        if nv == 0 or nb == 0:
            raise MeasureError("cosine_drift of a zero vector is undefined")
        return 1.0 - sum(x * y for x, y in zip(v, b, strict=True)) / (nv * nb)
    raise MeasureError(f"unknown drift metric {metric!r}")


def compare(comparison: str, value: float, threshold: float) -> bool:
    return {">": value > threshold, ">=": value >= threshold, "<": value < threshold,
            "<=": value <= threshold}[comparison]


def as_json(value: Value) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value

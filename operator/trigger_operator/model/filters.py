"""Event filters in the dialects of the CloudEvents Subscriptions API, as Knative Eventing's Trigger
``spec.filters`` uses them, so users meet a filter language they know. Pure.

A filter is a one-key mapping: ``{exact: {attr: value, ...}}``, ``{prefix: {...}}``,
``{suffix: {...}}`` (every attribute named must match), ``{all: [filter, ...]}``,
``{any: [filter, ...]}`` and ``{not: filter}``. A list of filters (``scheduleConfig.filters``)
holds when all of them hold. Attribute names are CloudEvents attribute names (lower case:
``type``, ``source``, ``subject``, ``collectionid``, any extension); a missing attribute matches
no ``exact``, ``prefix`` or ``suffix``. ``cesql`` is not supported (refused with a message).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not")
MAX_DEPTH = 8


class FilterError(ValueError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


def check_filters(filters: Sequence[Any], path: str = "filters") -> None:
    """Raises `FilterError` naming the first malformed filter."""
    if not isinstance(filters, Sequence) or isinstance(filters, str):
        raise FilterError(path, "expected a list of filters")
    for i, f in enumerate(filters):
        _check(f, f"{path}[{i}]", 1)


def _check(f: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FilterError(path, f"filters nest at most {MAX_DEPTH} deep")
    if not isinstance(f, Mapping) or len(f) != 1:
        raise FilterError(path, f"expected exactly one of {', '.join(DIALECTS)}")
    [(dialect, value)] = f.items()
    if dialect == "cesql":
        raise FilterError(f"{path}.cesql", "the CloudEvents SQL dialect is not supported; use exact, prefix, "
                          "suffix, all, any and not")
    if dialect not in DIALECTS:
        raise FilterError(f"{path}.{dialect}", f"unknown dialect; expected one of {', '.join(DIALECTS)}")
    if dialect in ("exact", "prefix", "suffix"):
        if not isinstance(value, Mapping) or not value:
            raise FilterError(f"{path}.{dialect}", "expected a mapping of attribute names to strings")
        for name, text in value.items():
            if not isinstance(name, str) or not name or not isinstance(text, str):
                raise FilterError(f"{path}.{dialect}.{name}", "attribute names and values are strings")
            if dialect != "exact" and not text:
                raise FilterError(f"{path}.{dialect}.{name}", "must not be empty")
    elif dialect in ("all", "any"):
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise FilterError(f"{path}.{dialect}", "expected a non-empty list of filters")
        for i, inner in enumerate(value):
            _check(inner, f"{path}.{dialect}[{i}]", depth + 1)
    else:
        _check(value, f"{path}.not", depth + 1)


def matches(filters: Sequence[Mapping[str, Any]], attributes: Mapping[str, str]) -> bool:
    """Whether every filter holds for an event's attributes (filters already checked)."""
    return all(_holds(f, attributes) for f in filters)


def _holds(f: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
    [(dialect, value)] = f.items()
    if dialect == "exact":
        return all(attributes.get(k) == v for k, v in value.items())
    if dialect == "prefix":
        return all(k in attributes and attributes[k].startswith(v) for k, v in value.items())
    if dialect == "suffix":
        return all(k in attributes and attributes[k].endswith(v) for k, v in value.items())
    if dialect == "all":
        return all(_holds(inner, attributes) for inner in value)
    if dialect == "any":
        return any(_holds(inner, attributes) for inner in value)
    return not _holds(value, attributes)

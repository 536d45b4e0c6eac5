"""Event filters in the dialects of the CloudEvents Subscriptions API, as Knative Eventing's Trigger
``spec.filters`` uses them, so users meet a filter language they know. Pure.

A filter is a one-key mapping: ``{exact: {attr: value, ...}}``, ``{prefix: {...}}``,
``{suffix: {...}}`` (every attribute named must match), ``{all: [filter, ...]}``,
``{any: [filter, ...]}`` and ``{not: filter}``. A list of filters (``scheduleConfig.filters``)
holds when all of them hold. Attribute names are CloudEvents attribute names (lower case:
``type``, ``source``, ``subject``, ``collectionid``, any extension); a missing attribute matches
no ``exact``, ``prefix`` or ``suffix``. ``cesql`` is not supported (refused with a message).

Filters are written by Trigger authors (tenants) and matched on the event loop for every event,
so they are bounded as a whole, not only at the top level: at most `MAX_TERMS` filter nodes and
attribute tests across all nesting, values of at most `MAX_VALUE_LENGTH` characters. Matching
then visits each term at most once, so one event costs O(MAX_TERMS * MAX_VALUE_LENGTH) at worst.
The CRD types the first level of a filter too (`crds/`), but it cannot follow the nesting: this
check is the guard, run by both the webhook and the controller (``parse_spec``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not")
MAX_DEPTH = 8
MAX_FILTERS = 32  # filters in scheduleConfig.filters (the top-level list)
# Filter nodes ({exact: ...}, {any: [...]}, ...) plus attribute tests (each name in an exact,
# prefix or suffix), counted across all nesting: {exact: {type: a, source: b}} counts 3.
MAX_TERMS = 64
MAX_VALUE_LENGTH = 1024
# What the CRD can say at a filter's first level, implied by MAX_TERMS: each filter in an all or
# any costs its node and at least one test; an exact, prefix or suffix costs itself and its tests.
MAX_LIST_ITEMS = (MAX_TERMS - 1) // 2
MAX_ATTRIBUTES = MAX_TERMS - 1
# CloudEvents 1.0: attribute names are lower-case ASCII letters or digits, and should be at most 20.
ATTRIBUTE_NAME = r"^[a-z0-9]{1,20}$"
_ATTRIBUTE_NAME = re.compile(ATTRIBUTE_NAME)


class FilterError(ValueError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def check_filters(filters: Sequence[Any], path: str = "filters") -> None:
    """Raises `FilterError` naming the first malformed filter, or the term past a bound."""
    if not isinstance(filters, Sequence) or isinstance(filters, str):
        raise FilterError(path, "expected a list of filters")
    if len(filters) > MAX_FILTERS:
        raise FilterError(path, f"has {len(filters)} filters; at most {MAX_FILTERS} are allowed")
    budget = _Budget()
    for i, f in enumerate(filters):
        _check(f, f"{path}[{i}]", 1, budget)


class _Budget:
    """Counts terms as they are checked, so a list of 50,000 is refused at the 65th, not read whole."""

    def __init__(self) -> None:
        self.terms = 0

    def take(self, path: str) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(path, f"filters hold at most {MAX_TERMS} filters and attribute tests in all "
                              "(counted across all nesting); this one is past the bound")


def _check(f: Any, path: str, depth: int, budget: _Budget) -> None:
    if depth > MAX_DEPTH:
        raise FilterError(path, f"filters nest at most {MAX_DEPTH} deep")
    if not isinstance(f, Mapping) or len(f) != 1:
        raise FilterError(path, f"expected exactly one of {', '.join(DIALECTS)}")
    budget.take(path)
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
            where = f"{path}.{dialect}.{name}"
            budget.take(where)
            if not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name):
                raise FilterError(where, "attribute names are CloudEvents attribute names: 1 to 20 lower-case "
                                  "letters a-z or digits")
            if not isinstance(text, str):
                raise FilterError(where, "attribute values are strings")
            if len(text) > MAX_VALUE_LENGTH:
                raise FilterError(where, f"is {len(text)} characters long; at most {MAX_VALUE_LENGTH} are allowed")
            if dialect != "exact" and not text:
                raise FilterError(where, "must not be empty")
    elif dialect in ("all", "any"):
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise FilterError(f"{path}.{dialect}", "expected a non-empty list of filters")
        for i, inner in enumerate(value):
            _check(inner, f"{path}.{dialect}[{i}]", depth + 1, budget)
    else:
        _check(value, f"{path}.not", depth + 1, budget)


def matches(filters: Sequence[Mapping[str, Any]], attributes: Mapping[str, str]) -> bool:
    """Whether every filter holds for an event's attributes (filters already checked, so bounded)."""
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

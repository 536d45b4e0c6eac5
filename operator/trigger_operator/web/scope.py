"""What every namespaced request of the HTTP API names: its namespace (``X-Namespace`` or ``?namespace=``).

The namespace goes into the API server's path (``/apis/.../namespaces/<namespace>/triggers``), so it
must be a namespace's name and nothing else: a value such as ``team-a/triggers/x?`` or ``..`` would
otherwise reach another path than the one the caller's rights were asked for.
"""

from __future__ import annotations

import re

from trigger_operator.api import NAMESPACE_PATTERN

NAMESPACE = re.compile(NAMESPACE_PATTERN)
NAMESPACE_RULE = ("a Kubernetes namespace name: 1 to 63 lower-case letters, digits or '-', starting and ending "
                  "with a letter or digit")


class NoNamespace(Exception):
    """Neither ``X-Namespace`` nor ``?namespace=``, or not a namespace's name: a 422 naming where it
    was read (`loc`) and why (`kind`: FastAPI's error type)."""

    def __init__(self, message: str, loc: tuple[str, str] = ("header", "x-namespace"), kind: str = "missing") -> None:
        super().__init__(message)
        self.loc, self.kind = loc, kind


def namespace_of(header: str | None, query: str | None) -> str:
    """The header's namespace, else the query's; refused unless it is a namespace's name."""
    namespace = header or query
    if not namespace:
        raise NoNamespace("the namespace is required: X-Namespace header or ?namespace=")
    if not NAMESPACE.fullmatch(namespace):
        where = ("header", "x-namespace") if header else ("query", "namespace")
        # Not quoted back: the caller knows what it sent, and an answer echoing it would be its to write.
        raise NoNamespace(f"{' '.join(where)} is not {NAMESPACE_RULE}", loc=where, kind="value_error")
    return namespace

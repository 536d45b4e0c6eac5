"""What every namespaced request of the HTTP API names: its namespace (``X-Namespace`` or ``?namespace=``)."""

from __future__ import annotations


class NoNamespace(Exception):
    """Neither ``X-Namespace`` nor ``?namespace=``: a 422 naming the header."""


def namespace_of(header: str | None, query: str | None) -> str:
    namespace = header or query
    if not namespace:
        raise NoNamespace("the namespace is required: X-Namespace header or ?namespace=")
    return namespace

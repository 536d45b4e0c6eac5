"""``{field}`` placeholders an admin writes in a template, filled from a Trigger's actionConfig. Pure.

The template is the admin's (the action runner's URL, a default condition source in the action
catalog), the values are a Trigger author's (issue 17). So a value never changes where a URL points:
in a path it fills exactly one segment and must be made of RFC 3986's unreserved characters only
(``A-Za-z0-9 - . _ ~``), never ``.`` nor anything holding ``..`` -- nothing to percent-encode, so
no ``%2F`` a server or proxy could decode back into a ``/`` before it resolves ``..``; in the query
(or fragment) it is form-encoded, where dots and empty values are harmless and allowed. The filled
URL must keep the template's scheme, host, port and the path up to the first placeholder, so
placeholders in the host or port cannot be filled at all: the address is the admin's to choose.

One placeholder is the operator's, not the author's: ``{namespace}`` is always the Trigger's own
namespace (an actionConfig key ``namespace`` never fills it), so an admin can scope a shared
service's URL or query to the tenant that asks (issue 18, jobs/catalog.py).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus, urlsplit


class PlaceholderError(ValueError):
    """A template cannot be filled; ``field`` is what to fix (``actionConfig.cluster_id`` or the template)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


# In any text but a URL a placeholder is an identifier in braces, so that PromQL's own braces
# (``x{job="a"}``) are left alone; a value filled there is one plain token: ids as the seed writes
# them (``clust_abc123``, ``col-1``), never a quote, brace, slash or space that could end a string
# literal or a name and write something else (``x"} or vector(1)``).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}")
# A value in a URL path: RFC 3986's unreserved characters, which no client encodes and no server
# decodes into anything else (a ``%2F`` is read as ``/`` by some proxies before they resolve ``..``).
PATH_VALUE = re.compile(r"[A-Za-z0-9._~-]+")
NAMESPACE = "namespace"  # the placeholder the operator fills with the Trigger's namespace


def placeholders(template: str) -> list[str]:
    """The ``{field}`` names of a text template (not a URL: see `fill_url`), in order."""
    return PLACEHOLDER.findall(template)


def fill_text(template: str, config: Mapping[str, Any], *, where: str, namespace: str | None) -> str:
    """A text template (an object's name, a key, a query) with each placeholder replaced by
    actionConfig's value (``{namespace}``: ``namespace``), which must be one plain token (`TOKEN`);
    raises naming the key."""

    def value(match: re.Match[str]) -> str:
        field = match.group(1)
        text = value_text(config, field, where=where, namespace=namespace)
        if not TOKEN.fullmatch(text):
            raise PlaceholderError(f"actionConfig.{field}", f"{text[:64]!r} cannot fill {where}: a value there is "
                                   "one token of letters, digits and _ . : - (at most 253, starting with a letter "
                                   "or digit)")
        return text

    return PLACEHOLDER.sub(value, template)


def value_text(config: Mapping[str, Any], field: str, *, where: str, namespace: str | None) -> str:
    """What fills ``{field}``: the Trigger's ``namespace`` for `NAMESPACE` (never actionConfig's),
    else actionConfig's value as text (a string or a number, not a boolean); raises naming the key."""
    if field == NAMESPACE:
        if namespace is None:
            raise PlaceholderError("", f"{where}: {{{NAMESPACE}}} is the Trigger's namespace, which is not known here")
        return namespace
    value = config.get(field)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise PlaceholderError(f"actionConfig.{field}", f"is required by {where} (a string or number)")
    return str(value)


def url_placeholders(template: str) -> list[str]:
    """The ``{field}`` names of a URL template, as `fill_url` reads them (``{{`` is a brace); none
    when it is no template at all (`fill_url` says why)."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError:
        return []


def fill_url(template: str, config: Mapping[str, Any], *, where: str, namespace: str | None) -> str:
    """The URL template with its placeholders filled (`value_text`), each checked or encoded where it
    stands; raises `PlaceholderError` naming the field, or when the URL would leave the template's
    origin and path prefix. ``where`` names the template in messages (``TRIGGER_ACTION_URL``)."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as error:
        raise PlaceholderError("", f"{where} is no valid template: {error}") from None
    filled: list[str] = []
    prefix: str | None = None  # the template up to its first placeholder
    fields: list[str] = []
    in_query = False
    for literal, field, format_spec, conversion in pieces:
        filled.append(literal)
        in_query = in_query or "?" in literal or "#" in literal
        if field is None:
            continue
        if not field.isidentifier() or format_spec or conversion:
            raise PlaceholderError("", f"{where}: {{{field}}} must name an actionConfig key, plainly")
        if prefix is None:
            prefix = "".join(filled)
        if field != NAMESPACE:
            fields.append(f"actionConfig.{field}")
        text = value_text(config, field, where=where, namespace=namespace)
        if in_query:
            filled.append(quote_plus(text, safe=""))
            continue
        if not PATH_VALUE.fullmatch(text) or text == "." or ".." in text:
            raise PlaceholderError(f"actionConfig.{field}", f"{text[:64]!r} cannot fill a URL path segment of "
                                   f"{where}: a value there is made of letters, digits and - . _ ~ only, and is not "
                                   "'.' nor holds '..'")
        filled.append(text)
    url = "".join(filled)
    if prefix is not None and not _keeps_origin_and_path(prefix, url):
        names = ", ".join(dict.fromkeys(fields))
        raise PlaceholderError(names, f"filled into {where} would leave the template's origin/path ({prefix})")
    return url


def _keeps_origin_and_path(template_prefix: str, url: str) -> bool:
    """Whether ``url`` has the scheme, host, port and userinfo of ``prefix`` (the template before its
    first placeholder), its path beginning with the prefix's, and no dot segments: compared parsed,
    as an HTTP client will read them, not as strings."""
    prefix = urlsplit(template_prefix)
    try:
        parts = urlsplit(url)
        same_origin = (parts.scheme, parts.hostname, parts.port, parts.username, parts.password) == (
            prefix.scheme, prefix.hostname, prefix.port, prefix.username, prefix.password)
    except ValueError:  # a port that is no number
        return False
    in_path = "?" not in template_prefix and "#" not in template_prefix
    path_kept = parts.path.startswith(prefix.path) if in_path else parts.path == prefix.path
    return same_origin and path_kept and not {".", ".."} & set(parts.path.split("/"))

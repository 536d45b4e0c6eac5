"""``{field}`` placeholders an admin writes in a template, filled from a Trigger's actionConfig. Pure.

The template is the admin's (the action runner's URL, a default condition source in the action
catalog), the values are a Trigger author's (issue 17). So a value never changes where a URL points:
in a path it fills exactly one segment, percent-encoded (``/`` is ``%2F``, ``%`` is ``%25``), and
``.``, ``..`` and the empty string are refused there; in the query (or fragment) it is form-encoded,
where dots and empty values are harmless and allowed. The filled URL must keep the template's
scheme, host, port and the path up to the first placeholder, so placeholders in the host or port
cannot be filled at all: the address is the admin's to choose.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit


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


def placeholders(template: str) -> list[str]:
    """The ``{field}`` names of a text template (not a URL: see `fill_url`), in order."""
    return PLACEHOLDER.findall(template)


def fill_text(template: str, config: Mapping[str, Any], *, where: str) -> str:
    """A text template (an object's name, a key, a query) with each placeholder replaced by
    actionConfig's value, which must be one plain token (`TOKEN`); raises naming the key."""

    def value(match: re.Match[str]) -> str:
        field = match.group(1)
        text = config_text(config, field, where)
        if not TOKEN.fullmatch(text):
            raise PlaceholderError(f"actionConfig.{field}", f"{text[:64]!r} cannot fill {where}: a value there is "
                                   "one token of letters, digits and _ . : - (at most 253, starting with a letter "
                                   "or digit)")
        return text

    return PLACEHOLDER.sub(value, template)


def config_text(config: Mapping[str, Any], field: str, needed_by: str) -> str:
    """actionConfig's ``field`` as text (a string or a number); raises naming the key."""
    value = config.get(field)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise PlaceholderError(f"actionConfig.{field}", f"is required by {needed_by} (a string or number)")
    return str(value)


def fill_url(template: str, config: Mapping[str, Any], *, where: str) -> str:
    """The URL template with its placeholders filled from ``config``, each encoded where it stands;
    raises `PlaceholderError` naming the field, or when the URL would leave the template's origin and
    path prefix. ``where`` names the template in messages (``TRIGGER_ACTION_URL``)."""
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
        fields.append(f"actionConfig.{field}")
        value = config.get(field)
        if not isinstance(value, (str, int, float)):
            raise PlaceholderError(f"actionConfig.{field}", f"{where} needs {field!r} from actionConfig (a string "
                                                            "or number)")
        text = str(value)
        if in_query:
            filled.append(quote_plus(text, safe=""))
            continue
        if text in ("", ".", ".."):
            raise PlaceholderError(f"actionConfig.{field}", f"{text!r} cannot fill a URL path segment")
        filled.append(quote(text, safe=""))
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

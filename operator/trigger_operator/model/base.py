"""What every part of the Trigger's spec model shares: the pydantic conventions (camelCase aliases,
unknown fields refused, frozen) and the bounds that more than one part uses. Pure.

model/spec.py and model/notify.py both build on this, so a bound is written once; the CRD repeats
each one and tests/unit/test_crd.py keeps them equal.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

KEY_MAX_LENGTH = 253  # ConfigMap and Secret keys, as Kubernetes bounds them
OBJECT_NAME_MAX_LENGTH = 253  # a DNS subdomain
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # a DNS subdomain, as object names are
URL_MAX_LENGTH = 2048  # what browsers and most proxies accept


class SpecModel(BaseModel):
    """A part of the spec as the user writes it: camelCase, nothing unknown, never changed."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True, use_enum_values=False)


def check_http_url(value: str, *, no_userinfo: str) -> None:
    """What every URL a Trigger names must be: http(s) with a host and a valid port, and no
    ``user:pass@`` (a credential where status and logs show it, and a classic way to disguise the
    host); ``no_userinfo`` says where a credential belongs instead. Raises ValueError saying why."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not value.startswith(f"{parts.scheme}://"):
        raise ValueError("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError(f"must not carry user information (user:password@); {no_userinfo}")
    try:
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("must name a host")

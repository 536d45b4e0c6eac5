"""``spec.notifications``: where a Trigger's lifecycle events go, as typed, validated data. Pure.

The seed's provider sends eight outbound webhook types for a trigger (seed-api.md section 9); a
Trigger names up to `MAX_SINKS` sinks in Knative's Destination shape (exactly one of ``uri`` or
``ref``, a Service of the Trigger's own namespace), the types it wants (all eight by default) and a
Secret holding a Standard Webhooks signing key (``whsec_<base64>``). How the events are derived,
recorded and delivered: core/outbox.py and notify/ (docs/notifications.md).

The models keep model/spec.py's conventions (camelCase aliases, unknown fields refused, frozen), in
a ``_Model`` of their own: spec.py imports this module for its one field, so this one cannot
import spec.py back. The Secret reference's bounds are spec.SecretKeyRef's (a unit test keeps them
equal), and the CRD repeats all of them (tests/unit/test_crd.py).
"""

from __future__ import annotations

import enum
import hashlib
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trigger_operator.model.base import (
    KEY_MAX_LENGTH,
    OBJECT_NAME,
    OBJECT_NAME_MAX_LENGTH,
    URL_MAX_LENGTH,
    SpecModel,
    check_http_url,
)

MAX_SINKS = 4
URI_MAX_LENGTH = URL_MAX_LENGTH
PATH_MAX_LENGTH = 1024
# A Service's name is a DNS-1035 label (it becomes a DNS name: <name>.<namespace>.svc).
SERVICE_NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
SERVICE_NAME_MAX_LENGTH = 63
# An http(s) URL with a host and no userinfo or fragment, as the CRD's pattern says it too.
SINK_URI = r"^https?://[^/?#@\s]+([/?][^#\s]*)?$"
SINK_PATH = r"^/[^?#\s]*$"


class NotificationType(enum.StrEnum):
    """The seed's outbound webhook types for triggers (its ``WebhookEventType``), in its order."""

    CREATED = "trigger.created"
    UPDATED = "trigger.updated"
    DELETED = "trigger.deleted"
    PAUSED = "trigger.paused"
    RESUMED = "trigger.resumed"
    FIRED = "trigger.fired"
    EXECUTION_COMPLETED = "trigger.execution.completed"
    EXECUTION_FAILED = "trigger.execution.failed"


class ServiceRef(SpecModel):
    """A Service of the Trigger's own namespace (there is no namespace field: a Trigger never sends
    to another tenant's Service). Delivered to ``http://<name>.<namespace>.svc:<port><path>``."""

    kind: Literal["Service"] = "Service"
    name: str = Field(pattern=SERVICE_NAME, max_length=SERVICE_NAME_MAX_LENGTH)
    port: int = Field(default=80, ge=1, le=65535)
    path: str = Field(default="/", pattern=SINK_PATH, max_length=PATH_MAX_LENGTH)


class Sink(SpecModel):
    """Knative's Destination: exactly one of ``uri`` and ``ref``."""

    uri: str | None = Field(default=None, max_length=URI_MAX_LENGTH)
    ref: ServiceRef | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_http_url(value, no_userinfo="a sink authenticates the operator by the signature (signingSecretRef)")
        if "#" in value:
            raise ValueError("must not have a fragment")
        if not re.fullmatch(SINK_URI, value):  # the CRD's rule, same meaning (white space included)
            raise ValueError("is not a well-formed URL")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Sink:
        if (self.uri is None) == (self.ref is None):
            raise ValueError("exactly one of uri and ref is required" + (", found both" if self.uri else ""))
        return self

    def key(self) -> str:
        """A short, stable name of this destination: what the outbox records per event (status stays
        small whatever the URL's length) and what per-sink backoff is kept by."""
        return hashlib.sha256(self.describe().encode()).hexdigest()[:12]

    def describe(self) -> str:
        """The destination as people read it (no query: it may carry anything)."""
        if self.ref is not None:
            return f"Service {self.ref.name}:{self.ref.port}{self.ref.path}"
        assert self.uri is not None
        return self.uri.split("?", 1)[0]


class SigningSecretRef(SpecModel):
    name: str = Field(pattern=OBJECT_NAME, max_length=OBJECT_NAME_MAX_LENGTH)
    key: str = Field(min_length=1, max_length=KEY_MAX_LENGTH)


class Notifications(SpecModel):
    sinks: tuple[Sink, ...] = Field(min_length=1, max_length=MAX_SINKS)
    # All eight unless listed; a type listed twice is sent once.
    types: tuple[NotificationType, ...] = Field(default=tuple(NotificationType), min_length=1,
                                                max_length=len(NotificationType))
    signing_secret_ref: SigningSecretRef | None = None

    def wants(self, kind: NotificationType) -> bool:
        return kind in self.types

    def sink_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.key() for s in self.sinks))

    def sink(self, key: str) -> Sink | None:
        return next((s for s in self.sinks if s.key() == key), None)

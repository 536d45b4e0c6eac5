"""Who approved a condition source that the operator reads with its own rights. Pure.

A ``configMap`` or ``object`` source, or an ``http`` source's ``tokenSecret``, makes the operator
read an object with its own rights on the author's behalf. The mutating webhook asks RBAC whether
the requester may ``get`` that object; if so it records an approval: an HMAC, under a key only the
operator holds, over the Trigger's namespace, its name and the *subject* (what is read, and for a
token where it is sent). The controller reads such a source only when the approval verifies, so a
Trigger written while the webhook was down, or an approval copied from another Trigger or
namespace, or a ``url`` changed beside an approved ``tokenSecret``, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from trigger_operator.model.spec import ConditionSource

ANNOTATION_SOURCE_APPROVAL = "trigger-operator.io/source-approval"
VERSION = "v1."  # the scheme of the signature, so that a later one can be told apart
KEY_MIN_BYTES = 16
SOURCE_FIELD = "spec.scheduleConfig.source"


def subject(source: ConditionSource | None) -> dict[str, str] | None:
    """What of ``source`` needs the author's own rights, or None when nothing does. The url is part
    of a token's subject: the same token sent elsewhere needs a new approval."""
    if source is None:
        return None
    if source.config_map is not None:
        return {"kind": "ConfigMap", "name": source.config_map.name}
    if source.object is not None:
        return {"apiVersion": source.object.api_version, "kind": source.object.kind, "name": source.object.name}
    if source.http is not None and source.http.token_secret is not None:
        secret = source.http.token_secret
        return {"kind": "Secret", "name": secret.name, "key": secret.key, "url": source.http.url}
    return None  # an http source without a token, a prometheus source: nothing is read with our rights


def field_of(source: ConditionSource) -> str:
    """The field an approval is about, for messages."""
    if source.config_map is not None:
        return f"{SOURCE_FIELD}.configMap"
    if source.object is not None:
        return f"{SOURCE_FIELD}.object"
    return f"{SOURCE_FIELD}.http.tokenSecret"


def describe(approved: Mapping[str, str]) -> str:
    """``Secret s``, ``ConfigMap c``, ``Index i (example.io/v1)``."""
    version = f" ({approved['apiVersion']})" if "apiVersion" in approved else ""
    return f"{approved['kind']} {approved['name']}{version}"


def check_key(key: bytes) -> bytes:
    """The approval key as read from its file, without surrounding whitespace (a trailing newline
    must not change it); a short one is refused, since anyone who guesses it approves anything."""
    key = key.strip()
    if len(key) < KEY_MIN_BYTES:
        raise ValueError(f"the approval key has {len(key)} bytes, fewer than {KEY_MIN_BYTES}")
    return key


def sign(key: bytes, namespace: str, trigger_name: str, approved: Mapping[str, str]) -> str:
    # Canonical JSON of a list: no concatenation of fields can mimic another's (a name with a "/").
    message = json.dumps([namespace, trigger_name, dict(approved)], sort_keys=True, separators=(",", ":"))
    return VERSION + hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def verify(key: bytes, namespace: str, trigger_name: str, approved: Mapping[str, str], signature: str) -> bool:
    return hmac.compare_digest(sign(key, namespace, trigger_name, approved).encode(), signature.encode())


def refusal(trigger_body: Mapping[str, Any], source: ConditionSource | None, key: bytes | None,
            required: bool) -> str | None:
    """Why the controller must not read ``source`` for this Trigger, or None when it may: when no
    approval is needed (``required`` False, or nothing is read with the operator's rights) or the
    Trigger's approval verifies for exactly this source."""
    approved = subject(source)
    if not required or approved is None or source is None:
        return None
    meta = trigger_body.get("metadata") or {}
    signature = str((meta.get("annotations") or {}).get(ANNOTATION_SOURCE_APPROVAL) or "")
    if key is not None and signature and verify(key, str(meta.get("namespace") or ""), str(meta.get("name") or ""),
                                                approved, signature):
        return None
    what = describe(approved)
    if key is None:
        reason = "the operator has no approval key (TRIGGER_OPERATOR_SOURCES_APPROVAL_KEY_FILE), so it approves none"
    else:
        reason = f"the operator reads {what} only for an author who may get it"
    return (f"{field_of(source)}: not approved: {reason}; write the Trigger again (create or update) with the "
            f"admission webhooks running, as a user who may get {what}")

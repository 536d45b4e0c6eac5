"""Who approved a condition source that the operator reads with its own rights. Pure.

A ``configMap`` or ``object`` source, or an ``http`` source's ``tokenSecret``, makes the operator
read an object with its own rights on the author's behalf. The mutating webhook asks RBAC whether
the requester may ``get`` that object; if so it records an approval, ``v2.<requester>.<hmac>``: an
HMAC, under a key only the operator holds, over the Trigger's namespace, its name, the *subject*
(what is read, and for a token where it is sent) and a digest of the requester RBAC answered for.
The validating webhook admits a new or changed approval only when it was made for the user of the
request it is admitting (the API server tells both webhooks the same user), so an approval obtained
with a forged AdmissionReview (invented ``userInfo``) or copied from elsewhere is refused even when
the mutating webhook did not run. The controller reads such a source only when the approval
verifies (for the requester it names: it cannot know the request), so a Trigger written while the
webhooks were down, or an approval copied from another Trigger or namespace, or a ``url`` changed
beside an approved ``tokenSecret``, is refused.

``spec.notifications.signingSecretRef`` (a Standard Webhooks key the operator signs outbound
notifications with) is the same kind of read: its own subject (`signing_subject`) and annotation
(``trigger-operator.io/notifications-approval``), made and checked by the same webhooks and verified
by the notifier before every read (`notifications_refusal`). Its subject does not name the sinks:
the key is never sent, only used to sign, so who may use it is the question, not where it signs to.

Why the requester and not the AdmissionReview's ``request.uid``: the API server draws a new uid for
every webhook call (k8s.io/apiserver, ``webhook/request.CreateAdmissionObjects``), so the mutating
and validating calls of one write never share it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from trigger_operator.api import ANNOTATION_NOTIFICATIONS_APPROVAL, ANNOTATION_SOURCE_APPROVAL
from trigger_operator.model.notify import Notifications
from trigger_operator.model.spec import ConditionSource

VERSION = "v2"  # the scheme of the signature, so that a later one can be told apart (v1 was never released)
REQUESTER_HEX = 32  # the requester's digest in an approval: 128 bits of SHA-256, in hex
KEY_MIN_BYTES = 16
SOURCE_FIELD = "spec.scheduleConfig.source"
NOTIFICATIONS_FIELD = "spec.notifications.signingSecretRef"


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


class Requester(Protocol):
    """Who made a request, as RBAC is asked about them: `kube.interface.Identity` (a layer above
    this pure one), parsed once from the AdmissionReview's ``request.userInfo`` by the webhook, so
    that the digest an approval names and the SubjectAccessReview that grants it see one user."""

    @property
    def user(self) -> str: ...

    @property
    def uid(self) -> str: ...

    @property
    def groups(self) -> Sequence[str]: ...

    @property
    def extra(self) -> Mapping[str, Sequence[str]]: ...


def requester(who: Requester) -> str:
    """A digest of the requester: username, uid, groups and extra, all of which RBAC may answer on,
    so a review that changed any of them (``groups: [system:masters]``) names another requester.
    Groups and extra values are sets to RBAC, so their order is not part of it."""
    canonical = json.dumps({"username": who.user, "uid": who.uid, "groups": sorted(who.groups),
                            "extra": {k: sorted(v) for k, v in who.extra.items()}},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REQUESTER_HEX]


def requester_of(signature: str) -> str | None:
    """The requester an approval names, or None when it is no approval of this scheme."""
    version, _, rest = signature.partition(".")
    digest, _, mac = rest.partition(".")
    if version != VERSION or len(digest) != REQUESTER_HEX or not mac or digest.strip("0123456789abcdef"):
        return None
    return digest


def sign(key: bytes, namespace: str, trigger_name: str, approved: Mapping[str, str], by: str) -> str:
    """The approval of ``approved`` for this Trigger, made for requester ``by`` (``requester(...)``)."""
    # Canonical JSON of a list: no concatenation of fields can mimic another's (a name with a "/").
    message = json.dumps([namespace, trigger_name, dict(approved), by], sort_keys=True, separators=(",", ":"))
    return f"{VERSION}.{by}.{hmac.new(key, message.encode(), hashlib.sha256).hexdigest()}"


def verify(key: bytes, namespace: str, trigger_name: str, approved: Mapping[str, str], signature: str,
           by: str | None = None) -> bool:
    """Whether ``signature`` approves ``approved`` for this Trigger: made for requester ``by`` (the
    validating webhook passes the user of the request it admits), or, with None, for whoever it
    names (the controller, which cannot know who wrote the Trigger)."""
    named = requester_of(signature)
    if named is None or (by is not None and named != by):
        return False
    return hmac.compare_digest(sign(key, namespace, trigger_name, approved, named).encode(), signature.encode())


def refusal(trigger_body: Mapping[str, Any], source: ConditionSource | None, key: bytes | None,
            required: bool) -> str | None:
    """Why the controller must not read ``source`` for this Trigger, or None when it may: when no
    approval is needed (``required`` False, or nothing is read with the operator's rights) or the
    Trigger's approval verifies for exactly this source."""
    approved = subject(source)
    if not required or approved is None or source is None:
        return None
    return _refused(trigger_body, approved, ANNOTATION_SOURCE_APPROVAL, field_of(source), key)


def signing_subject(notifications: Notifications | None) -> dict[str, str] | None:
    """What of ``spec.notifications`` needs the author's own rights: its signing Secret, or None."""
    ref = notifications.signing_secret_ref if notifications is not None else None
    if ref is None:
        return None
    return {"kind": "Secret", "name": ref.name, "key": ref.key, "use": "notifications-signing"}


def notifications_refusal(trigger_body: Mapping[str, Any], notifications: Notifications | None, key: bytes | None,
                          required: bool) -> str | None:
    """As `refusal`, for the signing Secret of ``spec.notifications`` (the notifier asks before every read)."""
    approved = signing_subject(notifications)
    if not required or approved is None:
        return None
    return _refused(trigger_body, approved, ANNOTATION_NOTIFICATIONS_APPROVAL, NOTIFICATIONS_FIELD, key)


def _refused(trigger_body: Mapping[str, Any], approved: Mapping[str, str], annotation: str, field: str,
             key: bytes | None) -> str | None:
    meta = trigger_body.get("metadata") or {}
    signature = str((meta.get("annotations") or {}).get(annotation) or "")
    if key is not None and signature and verify(key, str(meta.get("namespace") or ""), str(meta.get("name") or ""),
                                                approved, signature):
        return None
    what = describe(approved)
    if key is None:
        reason = "the operator has no approval key (TRIGGER_OPERATOR_SOURCES_APPROVAL_KEY_FILE), so it approves none"
    else:
        reason = f"the operator reads {what} only for an author who may get it"
    return (f"{field}: not approved: {reason}; write the Trigger again (create or update) with the "
            f"admission webhooks running, as a user who may get {what}")

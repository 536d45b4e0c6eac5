"""One AdmissionReview request for a Trigger, decided. Pure."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from trigger_operator.admission.approval import (
    NOTIFICATIONS_FIELD,
    Requester,
    describe,
    field_of,
    requester,
    sign,
    signing_subject,
    subject,
    verify,
)
from trigger_operator.api import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_NOTIFICATIONS_APPROVAL,
    ANNOTATION_SOURCE_APPROVAL,
    GROUP,
    KIND,
    PLURAL,
)
from trigger_operator.jobs.catalog import Sources, default_source
from trigger_operator.jobs.render import no_template
from trigger_operator.model.spec import (
    ConditionSource,
    SpecError,
    TriggerType,
    admission_refusal,
    check_own_part,
    parse_spec,
)

OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
# The characters and length of the API server's own generateName suffix.
NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NAME_SUFFIX_LENGTH = 5


@dataclass(frozen=True)
class Access:
    """An RBAC question to ask as the requester before a source is approved: may they ``get``
    this object? ``resource`` is empty for an object source: the shell maps its kind by discovery."""

    field: str
    what: str  # for messages: "Secret s"
    name: str
    group: str = ""
    resource: str = ""
    api_version: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str = ""
    patch: list[dict[str, Any]] = field(default_factory=list)  # JSON patch (mutating webhook)
    needs_job_rights: bool = False  # the requester must be allowed to create Jobs in the namespace
    forbidden: bool = False  # refused by RBAC (403), not for an invalid spec (422)
    # The patch approves a source (and a notifications signing Secret) only if the requester may do these.
    asks: tuple[Access, ...] = ()

    @property
    def ask(self) -> Access | None:
        return self.asks[0] if self.asks else None


def validate(request: Mapping[str, Any], user: Requester, *, action_types: Collection[str], now: dt.datetime,
             approval_key: bytes | None = None, default_sources: Sources | None = None) -> Decision:
    """The validating webhook's answer, before the RBAC question (``needs_job_rights``). With an
    ``approval_key`` (approvals required), a source approval is checked too (``unbound_approval``,
    for ``user``, the request's ``userInfo`` as the shell parsed it for its own questions);
    with the catalog's ``default_sources``, a conditional Trigger naming no source must find one
    there (the controller would make it Invalid otherwise: better refused at ``kubectl apply``)."""
    if request.get("operation") == "DELETE":
        return Decision(True)
    obj = request.get("object") or {}
    spec = obj.get("spec") or {}
    try:
        parsed = parse_spec(dict(spec))
        check_own_part(parsed, str((obj.get("metadata") or {}).get("name") or ""))  # a compound naming itself
    except SpecError as error:
        return Decision(False, f"{error.field}: {error.reason}")
    refusal = admission_refusal(parsed, now)  # never fires (a window that has ended is no refusal)
    if refusal is not None:
        return Decision(False, refusal)
    if parsed.job_template is None and parsed.action_type.value not in action_types:
        return Decision(False, no_template(parsed.action_type.value))
    config = parsed.schedule_config
    if default_sources is not None and parsed.trigger_type is TriggerType.CONDITIONAL and config.source is None:
        assert config.condition_type is not None
        try:
            default_source(parsed.action_type.value, config.condition_type, parsed.action_config, default_sources,
                           namespace=str(request.get("namespace") or ""))
        except SpecError as error:
            return Decision(False, f"{error.field}: {error.reason}")
    if approval_key is not None:
        unbound = unbound_approval(request, user, parsed.schedule_config.source, approval_key)
        if unbound is None:
            unbound = _unbound(request, user, signing_subject(parsed.notifications), _signing_subject_of,
                               ANNOTATION_NOTIFICATIONS_APPROVAL, NOTIFICATIONS_FIELD, approval_key)
        if unbound is not None:
            return unbound
    old_template = ((request.get("oldObject") or {}).get("spec") or {}).get("jobTemplate")
    own_template = spec.get("jobTemplate")
    return Decision(True, needs_job_rights=own_template is not None and own_template != old_template)


def unbound_approval(request: Mapping[str, Any], user: Requester, source: ConditionSource | None,
                     key: bytes) -> Decision | None:
    """The validating webhook's refusal of a source approval the mutating webhook did not make for
    this request, or None. The mutating webhook can be skipped (failurePolicy Ignore, a time-out, a
    429) while this one runs, and its port answers forged reviews, so an approval may have come from
    anywhere: when the source needs one, it is admitted either as the approval the update keeps
    (`kept_approval`, the mutating webhook's own rule) or made for ``user``, the user of this very
    request, whom the API server names to both webhooks alike."""
    approved = subject(source)
    if approved is None or source is None:
        return None  # nothing is read with the operator's rights: no approval is looked at
    return _unbound(request, user, approved, lambda old: subject(_source(old)), ANNOTATION_SOURCE_APPROVAL,
                    field_of(source), key)


def _unbound(request: Mapping[str, Any], user: Requester, approved: Mapping[str, str] | None,
             subject_of: Callable[[Mapping[str, Any]], Mapping[str, str] | None], annotation: str, field_name: str,
             key: bytes) -> Decision | None:
    """`unbound_approval` for any approved subject: ``subject_of`` reads it from the stored object."""
    if approved is None:
        return None
    obj = request.get("object") or {}
    meta = obj.get("metadata") or {}
    signature = str((meta.get("annotations") or {}).get(annotation) or "")
    if signature and signature == _kept(request, approved, subject_of, annotation, key):
        return None
    namespace = str(request.get("namespace") or meta.get("namespace") or "")
    if signature and verify(key, namespace, str(meta.get("name") or ""), approved, signature, by=requester(user)):
        return None
    return Decision(False, f"metadata.annotations[{annotation}]: not made by the operator's mutating "
                           f"webhook for this request's user and {field_name} (the mutating webhook did not "
                           "run, or the approval was copied or forged); write the Trigger again with both admission "
                           "webhooks running", forbidden=True)


def kept_approval(request: Mapping[str, Any], approved: Mapping[str, str] | None, key: bytes) -> str | None:
    """The approval an UPDATE keeps, or None: the stored Trigger's, when its source asks the same
    ``approved`` subject and the approval verifies for this Trigger (for whoever it names: an edit
    that leaves the source alone keeps its approval, whoever makes it, e.g. a pause). One that does
    not verify (copied, or signed under another key) is kept by neither webhook: it is made anew."""
    return _kept(request, approved, lambda old: subject(_source(old)), ANNOTATION_SOURCE_APPROVAL, key)


def _kept(request: Mapping[str, Any], approved: Mapping[str, str] | None,
          subject_of: Callable[[Mapping[str, Any]], Mapping[str, str] | None], annotation: str,
          key: bytes) -> str | None:
    if request.get("operation") != "UPDATE" or approved is None:
        return None
    old = request.get("oldObject") or {}
    signature = str(((old.get("metadata") or {}).get("annotations") or {}).get(annotation) or "")
    if not signature or subject_of(old) != approved:
        return None
    meta = (request.get("object") or {}).get("metadata") or {}
    namespace = str(request.get("namespace") or meta.get("namespace") or "")
    return signature if verify(key, namespace, str(meta.get("name") or ""), approved, signature) else None


def _user_info_problem(user: Any) -> str | None:
    """Why ``userInfo`` is not the API server's (k8s.io/api authentication/v1 UserInfo), or None.
    Exactly these types, so that the one `Identity` the webhook parses from it (the digest an
    approval names, the SubjectAccessReview asked) reads what the API server sent, nothing coerced."""
    where = "request.userInfo"
    if not isinstance(user, Mapping):
        return f"{where}: expected an object"
    if not isinstance(user.get("username"), str) or not user["username"]:
        return f"{where}.username: expected a non-empty string"
    if "uid" in user and not isinstance(user["uid"], str):
        return f"{where}.uid: expected a string"
    groups = user.get("groups", [])
    if not isinstance(groups, list):
        return f"{where}.groups: expected a list of strings"
    for i, group in enumerate(groups):
        if not isinstance(group, str):
            return f"{where}.groups[{i}]: expected a string"
    extra = user.get("extra", {})
    if not isinstance(extra, Mapping):
        return f"{where}.extra: expected an object whose values are lists of strings"
    for k, values in extra.items():
        if not isinstance(k, str) or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return f"{where}.extra[{k}]: expected a list of strings"
    return None


def malformed(review: Any) -> str | None:
    """Why ``review`` is no AdmissionReview the API server sends about a Trigger, or None. The
    webhook port answers only those (400 otherwise), and asks RBAC nothing for the rest."""
    if not isinstance(review, Mapping):
        return "expected an AdmissionReview object"
    if review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview":
        return "apiVersion and kind: expected admission.k8s.io/v1 AdmissionReview"
    request = review.get("request")
    if not isinstance(request, Mapping):
        return "request: expected an object"
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        return "request.uid: expected a non-empty string"
    kind = request.get("kind")
    if not isinstance(kind, Mapping) or (kind.get("group"), kind.get("kind")) != (GROUP, KIND):
        return f"request.kind: expected group {GROUP}, kind {KIND}"
    resource = request.get("resource")
    if not isinstance(resource, Mapping) or (resource.get("group"), resource.get("resource")) != (GROUP, PLURAL):
        return f"request.resource: expected group {GROUP}, resource {PLURAL}"
    operation = request.get("operation")
    if operation not in OPERATIONS:
        return f"request.operation: expected one of {', '.join(OPERATIONS)}"
    problem = _user_info_problem(request.get("userInfo"))
    if problem is not None:
        return problem
    for name, needed in (("object", operation in ("CREATE", "UPDATE")), ("oldObject", operation == "UPDATE")):
        if needed and not isinstance(request.get(name), Mapping):
            return f"request.{name}: expected an object for {operation}"
    return None


def mutate(request: Mapping[str, Any], user: Requester, key: bytes | None = None, name_suffix: str = "") -> Decision:
    """Records who created a Trigger (``trigger-operator.io/created-by``: ``user`` at CREATE, the
    request's ``userInfo`` as the shell parsed it for its RBAC questions; restored from the stored
    Trigger at UPDATE, so no edit rewrites it), and, with an approval
    ``key``, the approval of its source (``trigger-operator.io/source-approval``), never trusted
    from the request: recomputed at every CREATE and UPDATE. An unchanged source keeps the
    approval it had; a new or changed one is approved, for this request's user, only if they may
    get what it reads (``ask``: the shell asks RBAC, then applies the patch or refuses).
    ``name_suffix`` (random, from the shell) names a Trigger created with generateName, since an
    approval is bound to the name and the API server would pick it only after this webhook."""
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE"):
        return Decision(True)
    obj = request.get("object") or {}
    meta = obj.get("metadata") or {}
    annotations: dict[str, str] = dict(meta.get("annotations") or {})
    wanted = dict(annotations)
    patch: list[dict[str, Any]] = []
    old = request.get("oldObject") or {}
    old_annotations = (old.get("metadata") or {}).get("annotations") or {}
    if operation == "CREATE":
        wanted[ANNOTATION_CREATED_BY] = user.user
    elif ANNOTATION_CREATED_BY in old_annotations:
        wanted[ANNOTATION_CREATED_BY] = str(old_annotations[ANNOTATION_CREATED_BY])
    else:  # made before the webhook ran (or without it): an edit does not get to say who created it
        wanted.pop(ANNOTATION_CREATED_BY, None)
    if key is None:
        return Decision(True, patch=_annotation_patch(annotations, wanted, meta))
    namespace = str(request.get("namespace") or meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    if not name and operation == "CREATE" and meta.get("generateName") and name_suffix:
        name = f"{meta['generateName']}{name_suffix}"
        patch.append({"op": "add", "path": "/metadata/name", "value": name})
    source = _source(obj)
    approved = subject(source)
    asks: list[Access] = []
    if approved is None or source is None:
        wanted.pop(ANNOTATION_SOURCE_APPROVAL, None)  # stale: nothing needs approving now
    elif kept := kept_approval(request, approved, key):
        wanted[ANNOTATION_SOURCE_APPROVAL] = kept
    else:  # the validating webhook admits it only for this user
        wanted[ANNOTATION_SOURCE_APPROVAL] = sign(key, namespace, name, approved, requester(user))
        asks.append(_access(source, approved))
    signing = _signing_subject_of(obj)  # the same rule for the notifications' signing Secret
    if signing is None:
        wanted.pop(ANNOTATION_NOTIFICATIONS_APPROVAL, None)
    elif kept := _kept(request, signing, _signing_subject_of, ANNOTATION_NOTIFICATIONS_APPROVAL, key):
        wanted[ANNOTATION_NOTIFICATIONS_APPROVAL] = kept
    else:
        wanted[ANNOTATION_NOTIFICATIONS_APPROVAL] = sign(key, namespace, name, signing, requester(user))
        asks.append(Access(NOTIFICATIONS_FIELD, describe(signing), signing["name"], resource="secrets"))
    return Decision(True, patch=patch + _annotation_patch(annotations, wanted, meta), asks=tuple(asks))


def refused_access(access: Access, user: str, namespace: str, reason: str) -> Decision:
    """The mutating webhook's refusal of a source its requester may not read themselves."""
    why = f" ({reason})" if reason else ""
    return Decision(False, f"{access.field}: {user} may not get {access.what} in namespace {namespace}{why}, so the "
                           "operator will not read it on their behalf (a Trigger is no way around RBAC)",
                    forbidden=True)


def _source(obj: Mapping[str, Any]) -> ConditionSource | None:
    """The condition source of a Trigger; None for one without, or with a spec that does not
    parse (the validating webhook refuses that one, naming the field)."""
    try:
        return parse_spec(dict(obj.get("spec") or {})).schedule_config.source
    except SpecError:
        return None


def _signing_subject_of(obj: Mapping[str, Any]) -> dict[str, str] | None:
    """The notifications signing Secret a Trigger names (None without one, or for a spec that does not parse)."""
    try:
        return signing_subject(parse_spec(dict(obj.get("spec") or {})).notifications)
    except SpecError:
        return None


def _access(source: ConditionSource, approved: Mapping[str, str]) -> Access:
    field_name, what = field_of(source), describe(approved)
    if source.object is not None:
        group = source.object.api_version.rpartition("/")[0]
        return Access(field_name, what, source.object.name, group=group, api_version=source.object.api_version,
                      kind=source.object.kind)
    resource = "configmaps" if source.config_map is not None else "secrets"
    return Access(field_name, what, approved["name"], resource=resource)


def _annotation_patch(annotations: Mapping[str, str], wanted: Mapping[str, str],
                      meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch operations that turn ``annotations`` into ``wanted``, one key at a time."""
    if wanted == annotations:
        return []
    if meta.get("annotations") is None:
        return [{"op": "add", "path": "/metadata/annotations", "value": dict(wanted)}]
    ops: list[dict[str, Any]] = []
    for k in sorted(set(annotations) | set(wanted)):
        path = "/metadata/annotations/" + k.replace("~", "~0").replace("/", "~1")
        if k not in wanted:
            ops.append({"op": "remove", "path": path})
        elif annotations.get(k) != wanted[k]:
            ops.append({"op": "add", "path": path, "value": wanted[k]})
    return ops


def response(request: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The AdmissionReview to answer with."""
    answer: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": decision.allowed}
    if not decision.allowed:
        forbidden = decision.forbidden or "may not create Jobs" in decision.message
        answer["status"] = {"code": 403 if forbidden else 422, "reason": "Forbidden" if forbidden else "Invalid",
                            "message": decision.message}
    if decision.patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(decision.patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}

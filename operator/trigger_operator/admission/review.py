"""One AdmissionReview request for a Trigger, decided. Pure."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from trigger_operator.jobs.render import ANNOTATION_CREATED_BY
from trigger_operator.model.spec import SpecError, TriggerType, cron_schedule, parse_spec


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str = ""
    patch: list[dict[str, Any]] = field(default_factory=list)  # JSON patch (mutating webhook)
    needs_job_rights: bool = False  # the requester must be allowed to create Jobs in the namespace


def validate(request: Mapping[str, Any], *, action_types: Collection[str], now: dt.datetime) -> Decision:
    """The validating webhook's answer, before the RBAC question (``needs_job_rights``)."""
    if request.get("operation") == "DELETE":
        return Decision(True)
    obj = request.get("object") or {}
    spec = obj.get("spec") or {}
    try:
        parsed = parse_spec(dict(spec))
    except SpecError as error:
        return Decision(False, f"{error.field}: {error.reason}")
    if parsed.trigger_type is TriggerType.CRON and cron_schedule(parsed).next_after(now) is None:
        return Decision(False, f"spec.scheduleConfig.cronExpression: {parsed.schedule_config.cron_expression!r} never "
                               f"fires (no moment within five years in {parsed.schedule_config.timezone})")
    if parsed.job_template is None and parsed.action_type.value not in action_types:
        return Decision(False, f"spec.actionType: no Job template for action type {parsed.action_type.value!r} in the "
                               "actions ConfigMap; the cluster admin adds one, or set spec.jobTemplate")
    old_template = ((request.get("oldObject") or {}).get("spec") or {}).get("jobTemplate")
    own_template = spec.get("jobTemplate")
    return Decision(True, needs_job_rights=own_template is not None and own_template != old_template)


def mutate(request: Mapping[str, Any]) -> Decision:
    """Records who created a Trigger (``trigger-operator.io/created-by``); never refuses."""
    if request.get("operation") != "CREATE":
        return Decision(True)
    user = str((request.get("userInfo") or {}).get("username") or "")
    annotations = ((request.get("object") or {}).get("metadata") or {}).get("annotations")
    key = ANNOTATION_CREATED_BY.replace("~", "~0").replace("/", "~1")
    if annotations is None:
        return Decision(True, patch=[{"op": "add", "path": "/metadata/annotations",
                                      "value": {ANNOTATION_CREATED_BY: user}}])
    return Decision(True, patch=[{"op": "add", "path": f"/metadata/annotations/{key}", "value": user}])


def response(request: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The AdmissionReview to answer with."""
    answer: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": decision.allowed}
    if not decision.allowed:
        forbidden = "may not create Jobs" in decision.message
        answer["status"] = {"code": 403 if forbidden else 422, "reason": "Forbidden" if forbidden else "Invalid",
                            "message": decision.message}
    if decision.patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(decision.patch).encode()).decode()
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}

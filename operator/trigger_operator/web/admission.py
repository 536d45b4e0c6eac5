"""The admission webhooks for Triggers (served on the TLS port): the validating one refuses what the
schema cannot, and a Trigger with its own ``spec.jobTemplate`` from a requester who may not create
Jobs in the namespace (a SubjectAccessReview), so Triggers are no way around RBAC; the mutating
one records the requester as the creator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from typing import Any

from fastapi import APIRouter, FastAPI

from trigger_operator.admission.review import Decision, mutate, response, validate
from trigger_operator.kube.interface import ClusterApi, Identity


def add_admission_routes(app: FastAPI, *, api: ClusterApi, action_types: Callable[[], Collection[str]],
                         clock: Callable[[], dt.datetime]) -> None:
    router = APIRouter(prefix="/admission", tags=["admission"])

    @router.post("/validate", summary="Validating webhook for Triggers (an AdmissionReview)")
    async def validate_trigger(review: dict[str, Any]) -> dict[str, Any]:
        request = review.get("request") or {}
        decision = validate(request, action_types=action_types(), now=clock())
        if decision.allowed and decision.needs_job_rights:
            identity = Identity.from_user_info(request.get("userInfo") or {})
            namespace = request.get("namespace", "")
            allowed, _ = await api.review_access(identity, namespace=namespace, verb="create", group="batch",
                                                 resource="jobs")
            if not allowed:
                decision = Decision(False, f"spec.jobTemplate: {identity.user} may not create Jobs in namespace "
                                           f"{namespace}, so may not create a Trigger with its own Job template (a "
                                           "Trigger is no way around RBAC): use an action type's template instead")
        return response(request, decision)

    @router.post("/mutate", summary="Mutating webhook for Triggers: records the creator")
    async def mutate_trigger(review: dict[str, Any]) -> dict[str, Any]:
        request = review.get("request") or {}
        return response(request, mutate(request))

    app.include_router(router)

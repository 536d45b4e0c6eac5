"""The admission webhooks for Triggers (served on the TLS port): the validating one refuses what the
schema cannot, a Trigger with its own ``spec.jobTemplate`` from a requester who may not create
Jobs in the namespace (a SubjectAccessReview), so Triggers are no way around RBAC, and a new or
changed source approval not made for this request's user; the mutating one records the creator
and approves a condition source that the operator reads with its own rights only for a requester
who may ``get`` it (admission/approval.py).

Both answer only well-formed AdmissionReviews about Triggers: anything else gets 400 before any
RBAC question is asked, so the port is no oracle for arbitrary questions (a forged but well-formed
review is still answered: the chart's NetworkPolicy admits only the API server to this port, and
an approval got with invented ``userInfo`` names that invented user, so the validating webhook
refuses it on any real request)."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from trigger_operator.admission.approval import check_key
from trigger_operator.admission.review import (
    NAME_SUFFIX_ALPHABET,
    NAME_SUFFIX_LENGTH,
    Access,
    Decision,
    malformed,
    mutate,
    refused_access,
    response,
    validate,
)
from trigger_operator.config import ConfigurationError, SourcesSettings
from trigger_operator.jobs.catalog import Sources
from trigger_operator.kube.interface import ClusterApi, Identity, NotFound, Rejected

log = logging.getLogger("trigger_operator")
Reviewed = JSONResponse | dict[str, Any]


def approval_key(settings: SourcesSettings) -> bytes | None:
    """The key that signs source approvals, read once at start; None when approvals are ``off``,
    or when no key file is given (then no source that needs approval is read, and the webhook
    approves none: it would sign with nothing)."""
    if settings.approval != "required":
        return None
    if not settings.approval_key_file:
        log.warning("TRIGGER_OPERATOR_SOURCES_APPROVAL_KEY_FILE is not set: no configMap, object or tokenSecret "
                    "source will be read (set it, or TRIGGER_OPERATOR_SOURCES_APPROVAL=off)")
        return None
    try:
        return check_key(Path(settings.approval_key_file).read_bytes())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"TRIGGER_OPERATOR_SOURCES_APPROVAL_KEY_FILE={settings.approval_key_file!r}: "
                                 f"{error}") from None


def add_admission_routes(app: FastAPI, *, api: ClusterApi, action_types: Callable[[], Collection[str]],
                         clock: Callable[[], dt.datetime], approval_key: bytes | None = None,
                         default_sources: Callable[[], Sources] = dict) -> None:
    router = APIRouter(prefix="/admission", tags=["admission"])

    @router.post("/validate", response_model=None, summary="Validating webhook for Triggers (an AdmissionReview)")
    async def validate_trigger(raw: Request) -> Reviewed:
        reviewed = await _review(raw)
        if isinstance(reviewed, JSONResponse):
            return reviewed
        request, identity = reviewed
        decision = validate(request, identity, action_types=action_types(), now=clock(), approval_key=approval_key,
                            default_sources=default_sources())
        if decision.allowed and decision.needs_job_rights:
            namespace = request.get("namespace", "")
            allowed, _ = await api.review_access(identity, namespace=namespace, verb="create", group="batch",
                                                 resource="jobs")
            if not allowed:
                decision = Decision(False, f"spec.jobTemplate: {identity.user} may not create Jobs in namespace "
                                           f"{namespace}, so may not create a Trigger with its own Job template (a "
                                           "Trigger is no way around RBAC): use an action type's template instead",
                                    forbidden=True)
        return response(request, decision)

    @router.post("/mutate", response_model=None,
                 summary="Mutating webhook for Triggers: records the creator, approves sources")
    async def mutate_trigger(raw: Request) -> Reviewed:
        reviewed = await _review(raw)
        if isinstance(reviewed, JSONResponse):
            return reviewed
        request, identity = reviewed
        suffix = "".join(secrets.choice(NAME_SUFFIX_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))
        decision = mutate(request, identity, approval_key, name_suffix=suffix)
        for ask in decision.asks:  # every approval in the patch, or none: the first refusal answers
            refused = await _approve(api, request, identity, ask)
            if refused is not None:
                decision = refused
                break
        return response(request, decision)

    app.include_router(router)


async def _review(raw: Request) -> tuple[dict[str, Any], Identity] | JSONResponse:
    """The review's request and its requester, parsed once: the approval's digest and every RBAC
    question are about this one `Identity` (``malformed`` admits only the API server's types)."""
    try:
        review = await raw.json()
    except ValueError:
        return JSONResponse({"detail": "expected an AdmissionReview in JSON"}, status_code=400)
    problem = malformed(review)
    if problem is not None:
        return JSONResponse({"detail": f"not an AdmissionReview about a Trigger: {problem}"}, status_code=400)
    request = dict(review["request"])
    return request, Identity.from_user_info(request["userInfo"])


async def _approve(api: ClusterApi, request: dict[str, Any], identity: Identity, access: Access) -> Decision | None:
    """None when ``identity`` may get what ``access`` names (the approval patch stands), else the refusal."""
    namespace = str(request.get("namespace") or "")
    resource = access.resource
    if not resource:  # an object source: its kind's resource, as the API server serves it
        try:
            resource, namespaced = await api.resource_of(access.api_version, access.kind)
        except (Rejected, NotFound) as error:
            return Decision(False, f"{access.field}: {error}")
        if not namespaced:
            return Decision(False, f"{access.field}: {access.kind} is cluster-scoped: an object source reads only "
                                   "objects of the Trigger's namespace", forbidden=True)
    allowed, reason = await api.review_access(identity, namespace=namespace, verb="get", group=access.group,
                                              resource=resource, name=access.name)
    return None if allowed else refused_access(access, identity.user, namespace, reason)

"""The seed's Triggers REST API under ``/v1`` (``../shared/reference/seed-api.md``), on Trigger objects.

Every call goes to the Kubernetes API with the caller's own Bearer token (`CallerApi`), so RBAC
decides what each caller may do and the Trigger object stays the one source of truth: ``kubectl get
trg`` and this API always agree. ``DELETE`` is the seed's soft delete: it sets ``state: disabled``
and keeps the object (``kubectl delete trg`` removes it). ``execute`` sets a run-now token, whose Job
name is the task id that ``GET /v1/tasks/{task_id}`` answers from the Job.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from trigger_operator.jobs.render import ANNOTATION_RESUME, ANNOTATION_RUN_NOW, GROUP, LABEL_TRIGGER, VERSION
from trigger_operator.kube.interface import CallerApi, CallerError
from trigger_operator.seed.mapping import (
    BodyError,
    camel_keys,
    checked_spec,
    history,
    select,
    task_for_run_now,
    task_from_job,
    task_without_job,
    trigger_manifest,
    trigger_model,
)
from trigger_operator.seed.models import (
    CreateTriggerRequest,
    ListTriggersRequest,
    ListTriggersResponse,
    SeedStatus,
    TaskResponse,
    TriggerHistoryResponse,
    TriggerModel,
    UpdateTriggerRequest,
)
from trigger_operator.web.auth import Authorizer, bearer_token
from trigger_operator.web.ratelimit import address_of
from trigger_operator.web.scope import namespace_of

log = logging.getLogger("trigger_operator.web")

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "no or a bad token"},
                                           403: {"description": "RBAC says no"},
                                           404: {"description": "no such trigger"}}


# Module level, not inside add_seed_routes: FastAPI resolves these annotations by name in the module.
Namespace = Annotated[str | None, Header(description="the namespace (or ?namespace=)")]
NamespaceQuery = Annotated[str | None, Query(alias="namespace")]
Authorization = Annotated[str | None, Header()]


def add_seed_routes(app: FastAPI, *, caller: CallerApi, authorizer: Authorizer) -> None:
    async def authenticated(request: Request, authorization: Authorization = None) -> None:
        """Every route first needs a token the Kubernetes API accepts: checked before the body is
        read or validated, so a caller without one is told 401 and learns nothing of the schema.
        Each request counts once against its identity's rate."""
        authorizer.admit(await authorizer.identify(authorization, address=address_of(dict(request.scope))))

    router = APIRouter(prefix="/v1", tags=["triggers"], responses=ERRORS, dependencies=[Depends(authenticated)])

    def triggers(namespace: str, name: str = "") -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/triggers" + (f"/{name}" if name else "")

    async def read(token: str, namespace: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = await caller.request(token, "GET", triggers(namespace, name))
        return body

    async def patch(token: str, namespace: str, name: str, body: Any, content_type: str = MERGE) -> dict[str, Any]:
        result: dict[str, Any] = await caller.request(token, "PATCH", triggers(namespace, name), body=body,
                                                      content_type=content_type)
        return result


    def scope(header: str | None, query: str | None, authorization: str | None) -> tuple[str, str]:
        return bearer_token(authorization), namespace_of(header, query)

    @router.post("/triggers", status_code=201, response_model=TriggerModel, summary="Create a trigger")
    async def create(request: CreateTriggerRequest, authorization: Authorization = None, x_namespace: Namespace = None,
                     namespace: NamespaceQuery = None) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        identity = await authorizer.identify(authorization)
        created = await caller.request(token, "POST", triggers(ns), body=trigger_manifest(request,
                                                                                         created_by=identity.user))
        return trigger_model(created)

    @router.post("/triggers/list", response_model=ListTriggersResponse, summary="List triggers")
    async def list_triggers(request: ListTriggersRequest | None = None, authorization: Authorization = None,
                            x_namespace: Namespace = None, namespace: NamespaceQuery = None) -> ListTriggersResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        request = request or ListTriggersRequest()
        items = (await caller.request(token, "GET", triggers(ns))).get("items") or []
        page, total = select([trigger_model(item) for item in items], request)
        return ListTriggersResponse(results=page, total=total, offset=request.offset, limit=request.limit)

    @router.get("/triggers/{trigger_id}", response_model=TriggerModel, summary="Get a trigger")
    async def get(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                  namespace: NamespaceQuery = None) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        return trigger_model(await read(token, ns, trigger_id))

    @router.patch("/triggers/{trigger_id}", response_model=TriggerModel, summary="Update a trigger")
    async def update(trigger_id: str, request: UpdateTriggerRequest, authorization: Authorization = None,
                     x_namespace: Namespace = None, namespace: NamespaceQuery = None) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        current = await read(token, ns, trigger_id)
        spec = dict(current.get("spec") or {})
        fields = request.model_fields_set
        if "schedule_config" in fields and request.schedule_config is not None:
            spec["scheduleConfig"] = camel_keys(request.schedule_config)
        if "description" in fields:
            spec["description"] = request.description
        if "status" in fields and request.status is not None:
            if request.status is SeedStatus.FAILED:
                raise BodyError(["status"], "a trigger becomes failed by itself; set active, paused or disabled")
            spec["state"] = request.status.value
        spec = {k: v for k, v in spec.items() if v is not None}
        # The spec is replaced whole (as kubectl edit does): the operator's status writes meanwhile
        # do not conflict with it, and a concurrent spec edit is the caller's to avoid.
        return trigger_model(await patch(token, ns, trigger_id, [{"op": "replace", "path": "/spec",
                                                                 "value": checked_spec(spec)}], JSON_PATCH))

    @router.delete("/triggers/{trigger_id}", status_code=204, response_class=Response,
                   summary="Delete a trigger (soft delete: sets status to disabled)")
    async def delete(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                     namespace: NamespaceQuery = None) -> Response:
        token, ns = scope(x_namespace, namespace, authorization)
        await patch(token, ns, trigger_id, {"spec": {"state": "disabled"}})
        return Response(status_code=204)

    @router.post("/triggers/{trigger_id}/pause", response_model=TriggerModel, summary="Pause a trigger")
    async def pause(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                    namespace: NamespaceQuery = None) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        return trigger_model(await patch(token, ns, trigger_id, {"spec": {"state": "paused"}}))

    @router.post("/triggers/{trigger_id}/resume", response_model=TriggerModel,
                 summary="Resume a trigger (also one stopped after its failure limit)")
    async def resume(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                     namespace: NamespaceQuery = None) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        body = {"metadata": {"annotations": {ANNOTATION_RESUME: uuid.uuid4().hex}}, "spec": {"state": "active"}}
        return trigger_model(await patch(token, ns, trigger_id, body))

    @router.post("/triggers/{trigger_id}/execute", response_model=TaskResponse,
                 summary="Run the action now, bypassing the schedule")
    async def execute(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                      namespace: NamespaceQuery = None) -> TaskResponse | JSONResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        current = await read(token, ns, trigger_id)
        if (current.get("spec") or {}).get("state") == "disabled":
            return JSONResponse({"detail": f"trigger {trigger_id} is disabled: resume it first"}, 409)
        run_token = uuid.uuid4().hex
        body = {"metadata": {"annotations": {ANNOTATION_RUN_NOW: run_token}}}
        return task_for_run_now(await patch(token, ns, trigger_id, body), run_token)

    @router.get("/triggers/{trigger_id}/history", response_model=TriggerHistoryResponse,
                summary="A trigger's executions: the runs in progress and the last 10 finished")
    async def get_history(trigger_id: str, offset: Annotated[int, Query(ge=0)] = 0,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 50, authorization: Authorization = None,
                          x_namespace: Namespace = None, namespace: NamespaceQuery = None) -> TriggerHistoryResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        return history(await read(token, ns, trigger_id), offset, limit)

    @router.get("/tasks/{task_id}", response_model=TaskResponse, tags=["tasks"],
                summary="A run started by execute (or any run), read from its Job")
    async def get_task(task_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                       namespace: NamespaceQuery = None) -> TaskResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        try:
            job = await caller.request(token, "GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{task_id}")
        except CallerError as error:
            if error.status != 404:
                raise
            job = None
        owner = (job or {}).get("metadata", {}).get("labels", {}).get(LABEL_TRIGGER)
        items = (await caller.request(token, "GET", triggers(ns))).get("items") or []
        by_name = {item["metadata"]["name"]: item for item in items}
        if job is not None and owner:
            return task_from_job(job, by_name.get(owner))
        for item in items:
            if task_id.startswith(item["metadata"]["name"] + "-") and (task := task_without_job(item, task_id)):
                return task
        raise CallerError(404, f"no task {task_id} in namespace {ns}")

    @app.exception_handler(CallerError)
    async def _caller_error(_: Request, error: CallerError) -> JSONResponse:
        # The API server's message is passed on only where it answers the caller about the caller's
        # own request, made with the caller's own token (what kubectl would show them: a refused
        # body, RBAC's no, no such object, a conflict). Any other failure is ours to word: its text
        # (a server error, a proxy's page, the network) goes to the log alone.
        if error.status in (400, 422):
            return JSONResponse({"detail": [{"loc": ["body"], "msg": error.message, "type": "value_error"}]}, 422)
        if error.status in (401, 403, 404, 409):
            return JSONResponse({"detail": error.message}, error.status,
                                headers={"WWW-Authenticate": "Bearer"} if error.status == 401 else None)
        log.warning("the Kubernetes API failed a caller's request: %d %s", error.status, error.message)
        return JSONResponse({"detail": f"the Kubernetes API could not be reached or failed ({error.status}); "
                                       "try again"}, 502)

    @app.exception_handler(BodyError)
    async def _body_error(_: Request, error: BodyError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, 422)

    app.include_router(router)


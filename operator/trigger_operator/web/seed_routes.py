"""The seed's Triggers REST API under ``/v1`` (``../shared/reference/seed-api.md``), on Trigger objects.

Every call goes to the Kubernetes API with the caller's own Bearer token (`CallerApi`), so RBAC
decides what each caller may do and the Trigger object stays the one source of truth: ``kubectl get
trg`` and this API always agree. ``DELETE`` is the seed's soft delete: it sets ``state: disabled``
and keeps the object (``kubectl delete trg`` removes it). ``execute`` sets a run-now token, whose Job
name is the task id that ``GET /v1/tasks/{task_id}`` answers from the Job.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from trigger_operator.api import (
    ANNOTATION_BACKFILL,
    ANNOTATION_RESUME,
    ANNOTATION_RUN_NOW,
    GROUP,
    LABEL_TRIGGER,
    VERSION,
)
from trigger_operator.core.firing.backfill import RANGE_RULE, Refusal, in_range, parse_request, request_annotation
from trigger_operator.kube.interface import CallerApi, CallerError, Identity
from trigger_operator.model.spec import ActionType, TriggerType
from trigger_operator.model.status import read_status
from trigger_operator.seed.mapping import (
    BodyError,
    api_refusal,
    cluster_history,
    cluster_trigger_manifest,
    cluster_trigger_model,
    error_body,
    history,
    is_cluster_trigger,
    only_status_moved,
    select,
    select_clusters,
    task_for_run_now,
    task_from_job,
    task_without_job,
    trigger_manifest,
    trigger_model,
    update_patch,
)
from trigger_operator.seed.models import (
    BackfillRequest,
    BackfillResponse,
    ClusterCreateTriggerRequest,
    ClusterListTriggersRequest,
    ClusterListTriggersResponse,
    ClusterTriggerHistoryResponse,
    ClusterTriggerModel,
    ClusterUpdateTriggerRequest,
    CreateTriggerRequest,
    ErrorResponse,
    ListTriggersRequest,
    ListTriggersResponse,
    SeedStatus,
    TaskResponse,
    TriggerHistoryRequest,
    TriggerHistoryResponse,
    TriggerModel,
    UpdateTriggerRequest,
)
from trigger_operator.web.auth import Authorizer, bearer_token
from trigger_operator.web.ratelimit import address_of
from trigger_operator.web.scope import namespace_of

log = logging.getLogger("trigger_operator.web")

MERGE = "application/merge-patch+json"
# The paths whose errors are the seed SDK's ErrorResponse; /v1/events keeps its own bodies (the SDK
# never posts there: its EventsApi only lists platform events).
SEED_PREFIXES = ("/v1/triggers", "/v1/clusters/triggers", "/v1/tasks")
UPDATE_ATTEMPTS = 3  # a PATCH re-applied when only the operator's status moved in between
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in (
        (401, "no or a bad token"), (403, "RBAC says no"), (404, "no such trigger"),
        (409, "changed by another write since read, or disabled"),
        (413, "the request body is over the operator's limit (http.maxBodyBytes)"), (422, "a field is refused (named)"),
        (429, "too many requests"), (500, "the operator failed"),
        (503, "the Kubernetes API failed or could not be reached; try again"))}


def is_seed_path(path: str) -> bool:
    return path.startswith(SEED_PREFIXES)


def seed_error(status: int, message: str, *, errors: Sequence[Mapping[str, Any]] | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, errors=errors), status, headers=headers)


# Module level, not inside add_seed_routes: FastAPI resolves these annotations by name in the module.
Namespace = Annotated[str | None, Header(description="the namespace (or ?namespace=)")]
NamespaceQuery = Annotated[str | None, Query(alias="namespace")]
Authorization = Annotated[str | None, Header()]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def backfill_answer(trigger: Mapping[str, Any]) -> BackfillResponse | None:
    """The trigger's backfill as the REST API answers it: the request its annotation holds, as
    ``requested`` until the operator's ``status.backfill`` is about that request; None: none. An
    annotation the operator cannot read (anyone who may patch the Trigger can write one) is
    ``refused`` with the operator's own reason, naming the field, at once."""
    status, _ = read_status(trigger.get("status"))
    block = status.backfill
    text = ((trigger.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_BACKFILL)
    try:
        asked = parse_request(text) if text else None
    except Refusal as refusal:  # the operator's block answers if it is about this request (the same id)
        if block is None or block.id != refusal.request_id or (block.id is None and block.message != str(refusal)):
            return BackfillResponse(backfill_id=refusal.request_id, state="refused", message=str(refusal))
        asked = None
    if asked is not None and (block is None or block.id != asked.id):
        return BackfillResponse(backfill_id=asked.id, state="requested", start_time=asked.start, end_time=asked.end,
                                parallelism=asked.parallelism)
    if block is None:
        return None
    return BackfillResponse(backfill_id=block.id, state=block.state.value.lower(),  # type: ignore[arg-type]
                            start_time=block.start, end_time=block.end, parallelism=block.parallelism,
                            total=block.total, started=block.started, skipped=block.skipped,
                            succeeded=block.succeeded, failed=block.failed, cursor=block.cursor,
                            message=block.message)


def add_seed_routes(app: FastAPI, *, caller: CallerApi, authorizer: Authorizer) -> None:
    async def authenticated(request: Request, authorization: Authorization = None) -> Identity:
        """Every route first needs a token the Kubernetes API accepts: checked before the body is
        read or validated, so a caller without one is told 401 and learns nothing of the schema.
        Each request counts once against its identity's rate. A route that needs the caller's
        identity takes this dependency's answer (FastAPI runs it once per request), never a second
        TokenReview of its own."""
        identity = await authorizer.identify(authorization, address=address_of(dict(request.scope)))
        authorizer.admit(identity)
        return identity

    the_caller = Depends(authenticated)  # as a parameter's default: the same (cached) answer, not a second call
    router = APIRouter(prefix="/v1", tags=["triggers"], responses=ERRORS, dependencies=[the_caller])
    legacy = APIRouter(prefix="/v1/clusters/triggers", tags=["cluster triggers"], responses=ERRORS,
                       dependencies=[the_caller])

    def triggers(namespace: str, name: str = "") -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/triggers" + (f"/{name}" if name else "")

    async def read(token: str, namespace: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = await caller.request(token, "GET", triggers(namespace, name))
        return body

    async def read_cluster(token: str, namespace: str, name: str) -> dict[str, Any]:
        body = await read(token, namespace, name)
        if not is_cluster_trigger(body):
            raise CallerError(404, f"trigger {name} is not a cluster trigger (action_type cluster); "
                                   "see /v1/triggers/{name}")
        return body

    async def listed(token: str, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await caller.request(token, "GET", triggers(namespace))).get("items") or []
        return items

    async def patch(token: str, namespace: str, name: str, body: Any) -> dict[str, Any]:
        result: dict[str, Any] = await caller.request(token, "PATCH", triggers(namespace, name), body=body,
                                                      content_type=MERGE)
        return result

    async def guarded_update(token: str, namespace: str, name: str, first: dict[str, Any],
                             edit: Callable[[Mapping[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """The edit as a merge patch carrying the resourceVersion it was made from, so a write in
        between (another caller's) is a 409, never a lost update. A conflict that only the
        operator's status writes made (same generation, same display name) is re-applied."""
        current: Mapping[str, Any] = first
        for _ in range(UPDATE_ATTEMPTS):
            try:
                return await patch(token, namespace, name, edit(current))
            except CallerError as error:
                if error.status != 409:
                    raise
            current = await read(token, namespace, name)
            if not only_status_moved(first, current):
                break
        raise CallerError(409, f"trigger {name} was changed by another write since it was read; read it again "
                               "and retry")

    def scope(header: str | None, query: str | None, authorization: str | None) -> tuple[str, str]:
        return bearer_token(authorization), namespace_of(header, query)

    async def pause_body(token: str, ns: str, trigger_id: str) -> dict[str, Any]:
        return await patch(token, ns, trigger_id, {"spec": {"state": "paused"}})

    async def resume_body(token: str, ns: str, trigger_id: str) -> dict[str, Any]:
        body = {"metadata": {"annotations": {ANNOTATION_RESUME: uuid.uuid4().hex}}, "spec": {"state": "active"}}
        return await patch(token, ns, trigger_id, body)

    # --- the unified Triggers API ---------------------------------------------------------------

    @router.post("/triggers", status_code=200, response_model=TriggerModel, summary="Create a trigger",
                 description="200, as the seed's SDK (OpenAPI 0.82) maps it (0.81 said 201).")
    async def create(request: CreateTriggerRequest, authorization: Authorization = None, x_namespace: Namespace = None,
                     namespace: NamespaceQuery = None, identity: Identity = the_caller) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        created = await caller.request(token, "POST", triggers(ns), body=trigger_manifest(request,
                                                                                         created_by=identity.user))
        return trigger_model(created, _now())

    async def listing(token: str, ns: str, request: ListTriggersRequest) -> ListTriggersResponse:
        now = _now()
        found, total = select([trigger_model(item, now) for item in await listed(token, ns)], request)
        return ListTriggersResponse(results=found, total=total, offset=request.offset, limit=request.limit)

    @router.post("/triggers/list", response_model=ListTriggersResponse, summary="List triggers")
    async def list_triggers(request: ListTriggersRequest | None = None, authorization: Authorization = None,
                            x_namespace: Namespace = None, namespace: NamespaceQuery = None) -> ListTriggersResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        return await listing(token, ns, request or ListTriggersRequest())

    @router.get("/triggers", response_model=ListTriggersResponse, summary="List triggers (GET alias for POST /list)",
                description="The list request's fields as query parameters.")
    async def list_triggers_get(
            action_type: ActionType | None = None, trigger_type: TriggerType | None = None,
            status: SeedStatus | None = None, resource_id: str | None = None,
            offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
            sort_by: str = "created_at", direction: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
            authorization: Authorization = None, x_namespace: Namespace = None,
            namespace: NamespaceQuery = None) -> ListTriggersResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        request = ListTriggersRequest(action_type=action_type, trigger_type=trigger_type, status=status,
                                      resource_id=resource_id, offset=offset, limit=limit, sort_by=sort_by,
                                      direction="asc" if direction == "asc" else "desc")
        return await listing(token, ns, request)

    @router.get("/triggers/{trigger_id}", response_model=TriggerModel, summary="Get a trigger")
    async def get(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                  namespace: NamespaceQuery = None) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        return trigger_model(await read(token, ns, trigger_id), _now())

    @router.patch("/triggers/{trigger_id}", response_model=TriggerModel, summary="Update a trigger",
                  description="Guarded by the resourceVersion read: a concurrent edit answers 409.")
    async def update(trigger_id: str, request: UpdateTriggerRequest, authorization: Authorization = None,
                     x_namespace: Namespace = None, namespace: NamespaceQuery = None) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        first = await read(token, ns, trigger_id)
        fields = set(request.model_fields_set)

        def edit(current: Mapping[str, Any]) -> dict[str, Any]:
            return update_patch(current, schedule_config=request.schedule_config, description=request.description,
                                status=request.status, name=request.name, fields=fields,
                                notifications=request.notifications)

        edit(first)  # a refused body is a 422 before any write
        return trigger_model(await guarded_update(token, ns, trigger_id, first, edit), _now())

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
        return trigger_model(await pause_body(token, ns, trigger_id), _now())

    @router.post("/triggers/{trigger_id}/resume", response_model=TriggerModel,
                 summary="Resume a trigger (also one stopped after its failure limit)")
    async def resume(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                     namespace: NamespaceQuery = None) -> TriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        return trigger_model(await resume_body(token, ns, trigger_id), _now())

    @router.post("/triggers/{trigger_id}/execute", response_model=TaskResponse,
                 summary="Run the action now, bypassing the schedule")
    async def execute(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                      namespace: NamespaceQuery = None) -> TaskResponse | JSONResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        current = await read(token, ns, trigger_id)
        if (current.get("spec") or {}).get("state") == "disabled":
            return seed_error(409, f"trigger {trigger_id} is disabled: resume it first")
        run_token = uuid.uuid4().hex
        body = {"metadata": {"annotations": {ANNOTATION_RUN_NOW: run_token}}}
        return task_for_run_now(await patch(token, ns, trigger_id, body), run_token)

    @router.post("/triggers/{trigger_id}/backfill", response_model=BackfillResponse,
                 summary="Backfill: run the past moments of the schedule in [start_time, end_time], each once")
    async def backfill(trigger_id: str, request: BackfillRequest, authorization: Authorization = None,
                       x_namespace: Namespace = None, namespace: NamespaceQuery = None) -> BackfillResponse:
        """Writes the request (a new id) as the caller; the operator refuses what only it can judge
        (not a cron or interval trigger, more than 10,000 moments) in the answer's later reads."""
        token, ns = scope(x_namespace, namespace, authorization)
        for field in ("start_time", "end_time"):
            if getattr(request, field).tzinfo is None:
                raise BodyError([field], "needs a UTC offset (e.g. 2026-05-01T00:00:00Z)")
            if not in_range(getattr(request, field)):
                raise BodyError([field], RANGE_RULE)
        if request.end_time < request.start_time:
            raise BodyError(["end_time"], "must not be before start_time")
        if request.end_time > _now():
            raise BodyError(["end_time"], "is in the future: a backfill runs past moments only")
        annotation = request_annotation(uuid.uuid4().hex[:12], request.start_time, request.end_time,
                                        request.parallelism)
        answer = backfill_answer(await patch(token, ns, trigger_id,
                                             {"metadata": {"annotations": {ANNOTATION_BACKFILL: annotation}}}))
        assert answer is not None  # the request just written
        return answer

    @router.get("/triggers/{trigger_id}/backfill", response_model=BackfillResponse,
                summary="The trigger's last backfill and its progress")
    async def get_backfill(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                           namespace: NamespaceQuery = None) -> BackfillResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        answer = backfill_answer(await read(token, ns, trigger_id))
        if answer is None:
            raise CallerError(404, f"trigger {trigger_id} has no backfill")
        return answer

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

    # --- the legacy Cluster Triggers API: the same Triggers, those whose action_type is cluster ---

    @legacy.post("", response_model=ClusterTriggerModel, summary="Create a cluster trigger",
                 description="A Trigger with action_type cluster: cluster_id and execution_config's collection_ids "
                             "and config become its action_config.")
    async def create_cluster(request: ClusterCreateTriggerRequest, authorization: Authorization = None,
                             x_namespace: Namespace = None, namespace: NamespaceQuery = None,
                             identity: Identity = the_caller) -> ClusterTriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        manifest = cluster_trigger_manifest(request, created_by=identity.user)
        return cluster_trigger_model(await caller.request(token, "POST", triggers(ns), body=manifest))

    @legacy.post("/list", response_model=ClusterListTriggersResponse, summary="List cluster triggers")
    async def list_clusters(request: ClusterListTriggersRequest | None = None, authorization: Authorization = None,
                            x_namespace: Namespace = None,
                            namespace: NamespaceQuery = None) -> ClusterListTriggersResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        request = request or ClusterListTriggersRequest()
        models = [cluster_trigger_model(item) for item in await listed(token, ns) if is_cluster_trigger(item)]
        found, total = select_clusters(models, request)
        return ClusterListTriggersResponse(results=found, total=total, offset=request.offset, limit=request.limit)

    @legacy.get("/{trigger_id}", response_model=ClusterTriggerModel, summary="Get a cluster trigger")
    async def get_cluster(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                          namespace: NamespaceQuery = None) -> ClusterTriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        return cluster_trigger_model(await read_cluster(token, ns, trigger_id))

    @legacy.patch("/{trigger_id}", response_model=ClusterTriggerModel, summary="Update a cluster trigger",
                  description="schedule_config, description, status; guarded as PATCH /v1/triggers/{trigger_id}.")
    async def update_cluster(trigger_id: str, request: ClusterUpdateTriggerRequest,
                             authorization: Authorization = None, x_namespace: Namespace = None,
                             namespace: NamespaceQuery = None) -> ClusterTriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        first = await read_cluster(token, ns, trigger_id)
        fields = set(request.model_fields_set)

        def edit(current: Mapping[str, Any]) -> dict[str, Any]:
            return update_patch(current, schedule_config=request.schedule_config, description=request.description,
                                status=request.status, fields=fields)

        edit(first)
        return cluster_trigger_model(await guarded_update(token, ns, trigger_id, first, edit))

    @legacy.delete("/{trigger_id}", status_code=204, response_class=Response,
                   summary="Delete a cluster trigger (soft delete: sets status to disabled)")
    async def delete_cluster(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                             namespace: NamespaceQuery = None) -> Response:
        token, ns = scope(x_namespace, namespace, authorization)
        await read_cluster(token, ns, trigger_id)
        await patch(token, ns, trigger_id, {"spec": {"state": "disabled"}})
        return Response(status_code=204)

    @legacy.post("/{trigger_id}/pause", response_model=ClusterTriggerModel, summary="Pause a cluster trigger")
    async def pause_cluster(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                            namespace: NamespaceQuery = None) -> ClusterTriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        await read_cluster(token, ns, trigger_id)
        return cluster_trigger_model(await pause_body(token, ns, trigger_id))

    @legacy.post("/{trigger_id}/resume", response_model=ClusterTriggerModel, summary="Resume a cluster trigger")
    async def resume_cluster(trigger_id: str, authorization: Authorization = None, x_namespace: Namespace = None,
                             namespace: NamespaceQuery = None) -> ClusterTriggerModel:
        token, ns = scope(x_namespace, namespace, authorization)
        await read_cluster(token, ns, trigger_id)
        return cluster_trigger_model(await resume_body(token, ns, trigger_id))

    @legacy.post("/{trigger_id}/history", response_model=ClusterTriggerHistoryResponse,
                 summary="A cluster trigger's executions (each a Job: job_id)")
    async def history_cluster(trigger_id: str, request: TriggerHistoryRequest | None = None,
                              authorization: Authorization = None, x_namespace: Namespace = None,
                              namespace: NamespaceQuery = None) -> ClusterTriggerHistoryResponse:
        token, ns = scope(x_namespace, namespace, authorization)
        request = request or TriggerHistoryRequest()
        return cluster_history(await read_cluster(token, ns, trigger_id), request.offset, request.limit,
                               request.status_filter)

    @app.exception_handler(CallerError)
    async def _caller_error(_: Request, error: CallerError) -> JSONResponse:
        # The API server's message is passed on only where it answers the caller about the caller's
        # own request, made with the caller's own token (what kubectl would show them: a refused
        # body, RBAC's no, no such object, a conflict). Any other failure is ours to word: its text
        # (a server error, a proxy's page, the network) goes to the log alone.
        if error.status in (400, 422):  # named as the REST API names its fields (seed/mapping.py)
            refusal = api_refusal(error.message)
            return seed_error(422, str(refusal), errors=refusal.detail)
        if error.status in (401, 403, 404, 409):
            return seed_error(error.status, error.message,
                              headers={"WWW-Authenticate": "Bearer"} if error.status == 401 else None)
        log.warning("the Kubernetes API failed a caller's request: %d %s", error.status, error.message)
        return seed_error(503, f"the Kubernetes API could not be reached or failed ({error.status}); try again",
                          headers={"Retry-After": "1"})

    @app.exception_handler(BodyError)
    async def _body_error(_: Request, error: BodyError) -> JSONResponse:
        return seed_error(422, str(error), errors=error.detail)

    app.include_router(router)
    app.include_router(legacy)

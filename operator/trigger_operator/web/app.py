"""The HTTP API: routes, bodies and errors, derived from pydantic models by FastAPI (the OpenAPI
document at ``/openapi.json`` and every 422 body come from the models, never by hand).

Every error is JSON. Under the seed's Triggers APIs (/v1/triggers, /v1/clusters/triggers, /v1/tasks)
it is the seed SDK's ``ErrorResponse``: ``{"success": false, "status": 422, "error": {"message":
"body.schedule_config.cron_expression: ...", "type": "ValidationError", "code": null, "details":
{"errors": [{"loc": [...], "msg": "...", "type": "..."}]}}}``. Elsewhere (/v1/events, probes,
metrics) ``{"detail": "..."}``, or FastAPI's validation list ``{"detail": [{"loc": [...], "msg":
"...", "type": "..."}]}`` naming the field. The answers given before any route (the per-address
limit's 429, the body limit's 413) take the path's shape too (`error_answer`, the one home of that
choice).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Header, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from trigger_operator import __version__
from trigger_operator.api import GROUP, PLURAL
from trigger_operator.events.cloudevents import BATCH, STRUCTURED, CloudEvent, EventError, SeedEvent, read_delivery
from trigger_operator.intake.committer import NotStored, TriggerTally
from trigger_operator.kube.interface import CallerApi
from trigger_operator.metrics import Metrics
from trigger_operator.web.auth import Authorizer, Forbidden, Permission, Unauthenticated
from trigger_operator.web.ratelimit import Limits, RateLimit, TooManyRequests, address_of
from trigger_operator.web.scope import NoNamespace, namespace_of
from trigger_operator.web.seed_routes import add_seed_routes, is_seed_path, seed_error

log = logging.getLogger("trigger_operator.web")
# FastAPI's native OpenTelemetry off: the operator's metrics are Prometheus' (docs/metrics.md), and
# with it on FastAPI asks OpenTelemetry for its providers (reading the environment) on every request,
# a cost the events profile showed at 1,200 events a second (issue 21).
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
SEND_EVENTS = Permission(verb="create", group=GROUP, resource=PLURAL, subresource="events")
GET_TRIGGERS = Permission(verb="get", group=GROUP, resource=PLURAL)


class Health(Protocol):
    def alive(self) -> bool: ...

    def ready(self) -> tuple[bool, str]: ...


class Intake(Protocol):
    async def count(self, namespace: str, events: Sequence[Any]) -> list[TriggerTally]: ...


def error_answer(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error body ``path``'s API promises: the seed SDK's ErrorResponse under its Triggers APIs,
    ``{"detail": message}`` elsewhere."""
    if is_seed_path(path):
        return seed_error(status, message, headers=headers)
    return JSONResponse({"detail": message}, status, headers=headers)


class Problem(BaseModel):
    detail: str


class TriggerCount(BaseModel):
    name: str
    counted: int = Field(description="occurrences added to the Trigger's counter")
    duplicates: int = Field(description="events whose (source, id) was counted before")
    event_counter: int = Field(description="the Trigger's status.eventCounter after this request (with the "
                               "shared event inbox: once this request's events are folded)")


class EventsAccepted(BaseModel):
    namespace: str
    received: int = Field(description="events in the request")
    counted: int = Field(0, description="occurrences counted, summed over the Triggers they count for")
    triggers: list[TriggerCount] = Field(description="the event Triggers the events count for, and their "
                                                     "counters: only for a sender who may get triggers in the "
                                                     "namespace (else empty)")


class Probe(BaseModel):
    status: str
    detail: str = ""


def _schema(model: type[BaseModel], many: bool = False) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"type": "array", "items": schema} if many else schema


def build_webhook_app(*, admission: Callable[[FastAPI], None], max_body_bytes: int) -> FastAPI:
    """The admission webhooks alone, for the TLS port: the API server calls them without a token
    (TLS is their guard), so they are never served on the plain port, where anyone could ask the
    validating one whether some user may create Jobs (it asks RBAC on the request's behalf).

    Not rate-limited: the API server is one address for every tenant's writes, so a limit per
    address would let one tenant's burst of dry runs refuse the others' writes (or skip the mutating
    webhook while the validating one passes). The NetworkPolicy admits only the API server to this
    port, and the server's connection bounds (per address, whole-request deadline) hold it."""
    app = FastAPI(title="trigger-operator webhooks", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, telemetry=NO_TELEMETRY)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    admission(app)
    return app


def build_probe_app(health: Health) -> FastAPI:
    """/healthz and /readyz alone, for the probe port (controller-runtime's health probe address):
    the kubelet's probes then never wait behind the API's clients for a connection. No body is
    read and nothing else is served."""
    app = FastAPI(title="trigger-operator probes", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, telemetry=NO_TELEMETRY)
    add_probe_routes(app, health)
    return app


def add_probe_routes(app: FastAPI, health: Health) -> None:
    """The liveness and readiness probes (on the probe port, and on the API port too)."""

    @app.get("/healthz", response_model=Probe, tags=["probes"])
    async def healthz() -> JSONResponse:
        alive = health.alive()
        return JSONResponse(Probe(status="ok" if alive else "failing").model_dump(), 200 if alive else 503)

    @app.get("/readyz", response_model=Probe, tags=["probes"])
    async def readyz() -> JSONResponse:
        ready, detail = health.ready()
        return JSONResponse(Probe(status="ready" if ready else "not ready", detail=detail).model_dump(),
                            200 if ready else 503)


def build_app(*, intake: Intake, authorizer: Authorizer, health: Health, max_body_bytes: int,
              caller: CallerApi | None = None, metrics: Metrics | None = None, limits: Limits | None = None,
              events_audience: str = "", metrics_auth: bool = False) -> FastAPI:
    """The API port's app. ``limits``: per address (a middleware, before anything else), per
    identity and per address's new tokens (the `Authorizer`'s, which should share them).
    ``events_audience``: tokens sent to /v1/events must be bound to it (every other route keeps the
    API server's audience). ``metrics_auth``: /metrics only for tokens allowed ``get`` on it."""
    app = FastAPI(title="trigger-operator", version=__version__, telemetry=NO_TELEMETRY,
                  description="Event intake and the Triggers API of trigger-operator.")
    events_route = EventsRoute.adding(app)  # innermost of ours: after the rate limit and the body bound
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    if limits is not None:
        app.add_middleware(RateLimit, buckets=limits.per_address, answer=error_answer)  # added last: it runs first
    if caller is not None:
        add_seed_routes(app, caller=caller, authorizer=authorizer)

    @app.exception_handler(Exception)
    async def _500(request: Request, error: Exception) -> JSONResponse:
        log.warning("HTTP request failed: %s: %s", type(error).__name__, error)
        return error_answer(request.url.path, 500,
                            f"internal error ({type(error).__name__}); the operator's log says more")

    @app.exception_handler(Unauthenticated)
    async def _401(request: Request, error: Unauthenticated) -> JSONResponse:
        return error_answer(request.url.path, 401, str(error), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def _403(request: Request, error: Forbidden) -> JSONResponse:
        return error_answer(request.url.path, 403, str(error))

    @app.exception_handler(TooManyRequests)
    async def _429(request: Request, error: TooManyRequests) -> JSONResponse:
        return error_answer(request.url.path, 429, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _422_body(request: Request, error: RequestValidationError) -> JSONResponse:
        if is_seed_path(request.url.path):
            return seed_error(422, "the request is refused", errors=list(error.errors()))
        return await request_validation_exception_handler(request, error)

    @app.exception_handler(EventError)
    async def _422(_: Request, error: EventError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, 422)

    @app.exception_handler(NoNamespace)
    async def _422_namespace(request: Request, error: NoNamespace) -> JSONResponse:
        errors = [{"loc": list(error.loc), "msg": str(error), "type": error.kind}]
        if is_seed_path(request.url.path):
            return seed_error(422, str(error), errors=errors)
        return JSONResponse({"detail": errors}, 422)

    @app.exception_handler(NotStored)
    async def _503(_: Request, error: NotStored) -> JSONResponse:
        # The sender reads what failed in our words; the client's error (its text may hold anything
        # the API server or the network said) goes to the log alone.
        log.warning("events not stored: %s", error)
        return JSONResponse({"detail": error.public}, 503, headers={"Retry-After": "1"})

    if metrics is not None:
        @app.get("/metrics", tags=["probes"], response_class=PlainTextResponse,
                 summary="Prometheus metrics (README, Metrics)",
                 description="With metrics auth on, only for a token allowed `get` on the non-resource URL "
                             "/metrics (a ClusterRole's nonResourceURLs): the per-Trigger series name every "
                             "tenant's failing Triggers.")
        async def prometheus_metrics(request: Request,
                                     authorization: Annotated[str | None, Header()] = None) -> PlainTextResponse:
            if metrics_auth:
                await authorizer.authorize_url(authorization, "/metrics", address=address_of(dict(request.scope)))
            return PlainTextResponse(generate_latest(metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST)

    add_probe_routes(app, health)

    @app.post(
        EventsRoute.PATH, status_code=202, response_model=EventsAccepted, tags=["events"],
        summary="Count events for the event Triggers of a namespace",
        description="CloudEvents 1.0 in binary (ce-* headers), structured or batched mode, or the seed's "
                    "plain JSON. 202 once every count is stored durably: in status.eventCounter, or, with the "
                    "shared event inbox on (TRIGGER_OPERATOR_EVENTS_INBOX), in the operator's inbox, folded into "
                    "status.eventCounter right after (event_counter is then the counter as it will be once "
                    "folded); a retried delivery "
                    "(same source and id) is acknowledged again and counted once. The 202 names the Triggers "
                    "and their counters only to a sender who may also get triggers in the namespace; to any "
                    "other it says how many events it received and how many occurrences were counted, with an "
                    "empty `triggers`. When the operator requires an audience for events, the token must be "
                    "bound to it (401 otherwise).",
        responses={401: {"model": Problem}, 403: {"model": Problem}, 413: {"model": Problem},
                   429: {"model": Problem}, 503: {"model": Problem}},
        openapi_extra={"requestBody": {"required": True, "content": {
            STRUCTURED: {"schema": _schema(CloudEvent)}, BATCH: {"schema": _schema(CloudEvent, many=True)},
            "application/json": {"schema": {"anyOf": [_schema(SeedEvent), _schema(SeedEvent, many=True)]}}}}})
    async def declared(request: Request,
                       namespace: Annotated[str | None, Query(description="if no X-Namespace")] = None,
                       x_namespace: Annotated[str | None, Header()] = None,
                       authorization: Annotated[str | None, Header()] = None) -> EventsAccepted:
        # What the OpenAPI document shows (parameters, the 422); `EventsRoute` serves the path
        # before FastAPI's router, with `post_events`, which reads the same parameters itself.
        return await post_events(request)  # type: ignore[return-value]  # (a Response, passed through)

    async def post_events(request: Request) -> Response:
        # The hot path reads its three parameters itself (the header's first value, the query's
        # last, as FastAPI's injection did) and answers with the model's JSON: injection and
        # response validation cost 16% of the requests a core serves (issue 21).
        authorization = request.headers.get("authorization")
        try:
            target = namespace_of(request.headers.get("x-namespace"), request.query_params.get("namespace"))
            identity = await authorizer.authorize(authorization, target, SEND_EVENTS,
                                                  address=address_of(dict(request.scope)), audience=events_audience)
            body = await request.body()  # bounded by BodyLimit before any route reads it
            events = read_delivery(request.headers.get("content-type", ""), dict(request.headers), body)
        except Exception:
            if metrics is not None:
                metrics.events("refused")
            raise
        tallies = await intake.count(target, events)
        # Names and counters only for who may read them anyway (kubectl get trg): asked after the
        # count, so a sender never waits on it for a refusal.
        named = await authorizer.may(identity, target, GET_TRIGGERS)
        accepted = EventsAccepted(namespace=target, received=len(events), counted=sum(t.counted for t in tallies),
                                  triggers=[TriggerCount(name=t.name, counted=t.counted, duplicates=t.duplicates,
                                                         event_counter=t.event_counter) for t in tallies]
                                  if named else [])
        return Response(accepted.model_dump_json(), 202, media_type="application/json")

    events_route.handle = post_events
    return app


class EventsRoute:
    """``POST /v1/events`` served straight from a middleware, the hot path: FastAPI's router, its
    exception and exit-stack middleware and its request scope cost more than the handler itself (a
    stub intake served 4,230 requests a second on a core through them, 5,900 past them; issue 21).
    The route is still declared on the app (its OpenAPI document; any other method or path falls
    through to FastAPI). An exception is answered by the app's own handler for it, looked up as
    Starlette does (by the exception's classes in order), so both ways answer alike."""

    PATH = "/v1/events"

    def __init__(self, handlers: Mapping[Any, Callable[[Request, Any], Response | Awaitable[Response]]]) -> None:
        self.handlers = handlers  # the app's, filled as build_app declares them
        self.handle: Callable[[Request], Awaitable[Response]] | None = None  # set once the route is declared

    @classmethod
    def adding(cls, app: FastAPI) -> EventsRoute:
        route = cls(app.exception_handlers)
        app.add_middleware(_EventsMiddleware, route=route)
        return route

    async def answer(self, request: Request) -> Response:
        assert self.handle is not None, "the events route was added without its handler"
        try:
            return await self.handle(request)
        except ClientDisconnect:
            raise  # BodyLimit ends the request quietly: no one to answer, no line per client
        except Exception as error:
            for kind in type(error).__mro__:
                if kind is Exception:
                    # Starlette's outermost middleware answers it with the app's 500 handler and
                    # re-raises, so the traceback is logged, as for every other route.
                    break
                handler = self.handlers.get(kind)
                if handler is not None:
                    answer = handler(request, error)
                    return await answer if inspect.isawaitable(answer) else answer
            raise


class _EventsMiddleware:
    def __init__(self, app: Any, route: EventsRoute) -> None:
        self.app, self.route = app, route

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == EventsRoute.PATH and scope["method"] == "POST":
            request = Request(scope, receive)
            await (await self.route.answer(request))(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Every request body is bounded: 413 (`error_answer`) past ``limit`` bytes, declared or streamed. A client
    gone before its body was all in (it hung up, or the server's request deadline closed it) ends
    the request quietly: there is no one to answer, and a traceback per slow client would let any
    client write the log."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self._bounded(scope, receive, send)
        except ClientDisconnect:
            log.debug("a client went away before its request body was all in")

    async def _bounded(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit():
            if int(declared) > self.limit:
                await error_answer(scope["path"], 413, f"the body is {int(declared)} bytes; at most {self.limit} "
                                   "are accepted")(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server reads no more than it declared
            return
        # A streamed body (no Content-Length): read it here, up to the limit, and hand it on whole, so
        # an oversized one is a 413 whichever route would have parsed it.
        messages, seen = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # gone before the body's end: nothing to hand on, no one to answer
            if message["type"] != "http.request":
                break
            messages.append(message)
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await error_answer(scope["path"], 413, f"the body is over {self.limit} bytes, the most "
                                   "accepted")(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        queue = iter(messages)

        async def replay() -> Any:
            return next(queue, None) or await receive()

        await self.app(scope, replay, send)

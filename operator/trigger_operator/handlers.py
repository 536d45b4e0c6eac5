"""kopf registrations: what the operator reacts to, on one screen. Thin: each hands the event to
the scheduler.

Only ``on.event`` handlers are used: they write nothing to the objects (no finalizers, no
``last-handled-configuration`` annotation, no progress annotations), so Argo CD sees no drift and
every write the operator makes is a status patch of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from typing import Any

import kopf
from kopf._cogs.structs.references import NamespaceName, match_namespace

from trigger_operator.api import GROUP, LABEL_TRIGGER, PLURAL, VERSION
from trigger_operator.config import OperatorConfig
from trigger_operator.controller.leader import Elector
from trigger_operator.controller.loop import Scheduler
from trigger_operator.controller.shards import ShardElector
from trigger_operator.intake.committer import EventCommitter
from trigger_operator.kube.api import KubeApi, load_client_config
from trigger_operator.kube.caller import KubeCallerApi
from trigger_operator.metrics import Metrics
from trigger_operator.web.admission import add_admission_routes, approval_key
from trigger_operator.web.app import build_app, build_probe_app, build_webhook_app
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.ratelimit import Limits
from trigger_operator.web.server import api_tls, server

log = logging.getLogger("trigger_operator")
CONFIG = OperatorConfig.from_env()
API_TLS = api_tls(CONFIG.http)  # both or neither: a ConfigurationError at start, not a plain port by surprise
WATCHED: tuple[str, ...] = ()  # the -n patterns given to kopf.run (set by the CLI); empty: all namespaces


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our Events are posted by the scheduler, with stable reasons
    settings.watching.server_timeout = 300  # re-establish watches every few minutes
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 4, 8, 16, 32, 60]
    # Chosen on day one, though the on.event handlers here store nothing: should a state-tracking
    # handler ever be added, its bookkeeping uses our own prefix (never kopf.zalando.org/...) and
    # ignores Argo CD's tracking annotation, and a later switch cannot duplicate runs.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP, v1=False)
    settings.persistence.diffbase_storage = _WatchOnlyEssence(
        prefix=GROUP, key="last-handled-configuration", v1=False,
        ignored_fields=[("metadata", "annotations", "argocd.argoproj.io/tracking-id")])
    # Server-side filter: only our Jobs.
    settings.watching.label_selectors["batch", "jobs"] = LABEL_TRIGGER
    load_client_config()
    metrics = Metrics()
    api = memo["api"] = KubeApi(CONFIG.kube, observe=metrics.kube_request, review_threads=CONFIG.http.review_threads)
    key = approval_key(CONFIG.sources)  # one key for the webhook that signs and the checks that verify
    scheduler = Scheduler(api, CONFIG, metrics=metrics, approval_key=key)
    if WATCHED:  # the same patterns, matched as kopf matches them (one source of their meaning)
        scheduler.watched = lambda namespace: any(match_namespace(NamespaceName(namespace), p) for p in WATCHED)
    if CONFIG.leader.enabled:
        lease_namespace = CONFIG.leader.namespace or CONFIG.actions.namespace
        elector: Elector | ShardElector
        if CONFIG.leader.shards > 1:
            elector = ShardElector(api, CONFIG.leader, lease_namespace, _identity(), on_start=scheduler.lead,
                                   on_renewed=scheduler.take_back)
        else:
            elector = Elector(api, CONFIG.leader, lease_namespace, _identity(), on_start=scheduler.lead,
                              on_stop=lambda: None, on_renewed=scheduler.take_back)
        scheduler.owns, scheduler.leading = elector.owns, elector.leading
        memo["elector_task"] = asyncio.create_task(elector.run(), name="leader-election")
    metrics.watch(phases=scheduler.store.phases, queue_depth=lambda: len(scheduler.queue), next_due=scheduler.next_due,
                  failing=scheduler.store.failing, leading=scheduler.leading)
    # Read the catalog before any Trigger is reconciled, so that a restart never reports Triggers
    # as lacking a template only because the ConfigMap is read a moment later.
    await scheduler.load_catalog()
    memo["scheduler"] = scheduler
    memo["task"] = task = asyncio.create_task(scheduler.run(), name="scheduler")
    committer = EventCommitter(api, triggers_in=scheduler.store.triggers_in, latest=scheduler.store.trigger,
                               committed=lambda body: scheduler.store.on_trigger(None, body), clock=scheduler.clock,
                               metrics=metrics, know=scheduler.store.know)
    memo["caller"] = caller = KubeCallerApi()
    http = CONFIG.http
    limits = Limits.of(http)
    authorizer = Authorizer(api, ttl_seconds=http.auth_cache_seconds, cache_entries=http.auth_cache_entries,
                            limits=limits, url_access=api.review_url_access)
    health = _Health(scheduler, task)
    app = build_app(intake=committer, health=health, max_body_bytes=http.max_body_bytes,
                    authorizer=authorizer, caller=caller, metrics=metrics, limits=limits,
                    events_audience=http.events_audience, metrics_auth=http.metrics_auth)
    memo["web"] = web = server(app, host=http.host, port=http.port, tls_cert=API_TLS[0], tls_key=API_TLS[1],
                               http=http)
    memo["web_task"] = asyncio.create_task(web.serve(), name="http")
    # The probes on a port of their own too (plain HTTP, as controller-runtime's): the kubelet never
    # waits behind the API's clients, so a flood there cannot fail the liveness probe and restart us.
    memo["probes"] = probes = server(build_probe_app(health), host=http.host, port=http.probe_port, http=http)
    memo["probes_task"] = asyncio.create_task(probes.serve(), name="probes")
    if CONFIG.http.tls_cert and CONFIG.http.tls_key:
        webhook_app = build_webhook_app(max_body_bytes=http.max_body_bytes, admission=lambda app: (
            add_admission_routes(app, api=api, action_types=lambda: scheduler.catalog, clock=scheduler.clock,
                                 approval_key=key, default_sources=lambda: scheduler.default_sources)))
        memo["webhooks"] = webhooks = server(webhook_app, host=CONFIG.http.host, port=CONFIG.http.webhook_port,
                                             tls_cert=CONFIG.http.tls_cert, tls_key=CONFIG.http.tls_key, http=http)
        memo["webhooks_task"] = asyncio.create_task(webhooks.serve(), name="webhooks")
        log.info("admission webhooks on https://%s:%d/admission/{validate,mutate}", CONFIG.http.host,
                 CONFIG.http.webhook_port)
    log.info("HTTP API on %s://%s:%d (events: POST /v1/events, docs: /docs, /openapi.json); probes also on "
             "http://%s:%d/{healthz,readyz}", "https" if API_TLS[0] else "http", CONFIG.http.host, CONFIG.http.port,
             CONFIG.http.host, CONFIG.http.probe_port)
    log.info("scheduler started with %d workers; actions from ConfigMap %s/%s", CONFIG.scheduler.workers,
             CONFIG.actions.namespace, CONFIG.actions.config_map)


def _identity() -> str:
    """This replica's name in the Lease: the pod's name (the chart passes it) and a random suffix,
    so that a restarted container never mistakes its predecessor's lease for its own."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class _WatchOnlyEssence(kopf.AnnotationsDiffBaseStorage):
    """kopf builds an object's "essence" (a deep copy of its body, for on.create/update/delete
    handlers to diff) on every watch event; our on.event handlers never read it, and the copies
    were the largest share of the operator's CPU at 1,000 runs a minute (the bench's profile).
    A state-tracking handler added later would see no change at all with this: replace it then."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()


class _Health:
    def __init__(self, scheduler: Scheduler, task: asyncio.Task[None]) -> None:
        self._scheduler, self._task = scheduler, task

    def alive(self) -> bool:
        return not self._task.done()

    def ready(self) -> tuple[bool, str]:
        return self._scheduler.ready() if self.alive() else (False, "the scheduler stopped")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    election: asyncio.Task[None] | None = memo.get("elector_task")
    if election is not None:  # cancelled, it hands the lease back: a successor starts at once
        election.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(election, timeout=5)
    for name in ("web", "probes", "webhooks"):
        running = memo.get(name)
        if running is not None:
            running.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(memo[f"{name}_task"], timeout=10)
    task: asyncio.Task[None] | None = memo.get("task")
    if task is not None:
        task.cancel()
    for closing in (memo.get("caller"), getattr(memo.get("scheduler"), "reader", None)):
        if closing is not None:
            with contextlib.suppress(Exception):
                await closing.close()
    api: KubeApi | None = memo.get("api")
    if api is not None:
        api.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def trigger_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["scheduler"].store.on_trigger(event.get("type"), event["object"])


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_TRIGGER: kopf.PRESENT})
async def job_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["scheduler"].store.on_job(event.get("type"), event["object"])

"""kopf registrations: what the operator reacts to, on one screen. Thin: each hands the event to
the scheduler.

Only ``on.event`` handlers are used: they write nothing to the objects (no kopf finalizers, no
``last-handled-configuration`` annotation, no progress annotations), so Argo CD sees no drift and
every write the operator makes is a status patch of its own, except one finalizer of ours,
``trigger-operator.io/notify``, on Triggers with ``spec.notifications`` (notify/finalizer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import kopf

from trigger_operator.api import GROUP, PLURAL, VERSION
from trigger_operator.config import OperatorConfig
from trigger_operator.controller.leader import Elector
from trigger_operator.controller.loop import Scheduler
from trigger_operator.controller.shards import JobShards, ShardElector
from trigger_operator.intake.committer import EventCommitter
from trigger_operator.intake.inbox import Inbox
from trigger_operator.intake.jetstream import JetStreamIntake
from trigger_operator.kube.api import KubeApi, load_client_config
from trigger_operator.kube.caller import KubeCallerApi
from trigger_operator.kube.watch import JobWatch
from trigger_operator.metrics import Metrics
from trigger_operator.notify.notifier import Concerned, Notifier
from trigger_operator.notify.sender import Sender
from trigger_operator.web.admission import add_admission_routes, approval_key
from trigger_operator.web.app import build_app, build_probe_app, build_webhook_app
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.ratelimit import Limits
from trigger_operator.web.server import api_tls, server

log = logging.getLogger("trigger_operator")
WATCH_TIMEOUT_SECONDS = 300  # kopf's Trigger watch and our Job watch end and resume this often


@dataclass(frozen=True)
class Options:
    """What the environment and the command line decide, handed to ``kopf.run`` in its memo
    (``memo["options"]``): the settings, the API port's TLS pair, the ``-n`` patterns."""

    config: OperatorConfig
    api_tls: tuple[str, str]
    watched: tuple[str, ...] = ()  # the -n patterns given to kopf.run; empty: all namespaces

    @classmethod
    def from_env(cls, namespaces: Iterable[str] = ()) -> Options:
        """Reads and checks the settings: a ConfigurationError names the one that is wrong (a TLS
        pair is both or neither, never a plain port by surprise)."""
        config = OperatorConfig.from_env()
        return cls(config=config, api_tls=api_tls(config.http), watched=tuple(namespaces))


@dataclass
class Operator:
    """The composition root: every long-lived part, built once by `start` and kept in kopf's memo
    (``memo["operator"]``) for the watch handlers and `stop`."""

    api: KubeApi
    scheduler: Scheduler
    caller: KubeCallerApi
    servers: dict[str, Any] = field(default_factory=dict)  # name -> uvicorn server
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # name -> its task
    notifier: Notifier | None = None  # outbound notifications (notify/), in the background
    jobs: JobWatch | None = None  # our Jobs' watch (kube/watch.py); kopf watches the Triggers


def watches(patterns: Iterable[str]) -> Callable[[str], bool]:
    """Whether kopf's watches cover a namespace, for the ``-n`` patterns kopf.run was given (all
    without any): kopf's syntax, comma-separated globs where ``!`` excludes and a first exclusion
    implies a leading ``*`` (kopf's match_namespace, which it does not export)."""
    compiled = [[glob.strip() for glob in pattern.split(",")] for pattern in patterns]
    if not compiled:
        return lambda namespace: True

    def one(namespace: str, globs: list[str]) -> bool:
        if not globs or globs[0].startswith("!"):
            globs = ["*", *globs]
        matches = first = fnmatch.fnmatch(namespace, globs[0])
        for glob in globs[1:]:
            if glob.startswith("!"):
                matches = matches and not fnmatch.fnmatch(namespace, glob.lstrip("!"))
            else:
                matches = matches or (first and fnmatch.fnmatch(namespace, glob))
        return matches

    return lambda namespace: any(one(namespace, globs) for globs in compiled)


def plain_namespaces(patterns: Iterable[str]) -> tuple[str, ...]:
    """The namespaces the ``-n`` patterns name, when they are all plain names (the chart's
    watch.namespaces): each gets a Job watch of its own, within the Role the chart gives there.
    Empty otherwise: one watch of all namespaces, filtered by `watches` (globs and exclusions then
    need the right to list and watch Jobs in all namespaces)."""
    names = [glob.strip() for pattern in patterns for glob in pattern.split(",")]
    if any(not name or any(c in name for c in "*?[]!") for name in names):
        return ()
    return tuple(dict.fromkeys(names))


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """The composition root: kopf's settings, then the controller, the event intake and the servers,
    each built once from the typed options cli.py put in the memo, kept in memo['operator']."""
    _tune(settings)
    options: Options = memo["options"]
    config = options.config
    load_client_config()
    metrics = Metrics()
    api = KubeApi(config.kube, observe=metrics.kube_request, review_threads=config.http.review_threads)
    key = approval_key(config.sources)  # one key for the webhook that signs and the checks that verify
    operator = memo["operator"] = await _start_controller(api, options, metrics, key)
    committer = _start_intake(operator, config, metrics)
    _start_servers(operator, options, committer, metrics, key)
    log.info("scheduler started with %d workers; actions from ConfigMap %s/%s", config.scheduler.workers,
             config.actions.namespace, config.actions.config_map)


def _tune(settings: kopf.OperatorSettings) -> None:
    settings.posting.enabled = False  # our Events are posted by the scheduler, with stable reasons
    settings.watching.server_timeout = WATCH_TIMEOUT_SECONDS  # re-establish watches every few minutes
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


async def _start_controller(api: KubeApi, options: Options, metrics: Metrics, key: bytes | None) -> Operator:
    """The elector (if any) first, then the scheduler with the elector's answers; its catalog read
    before any Trigger is reconciled; the notifier beside it."""
    config = options.config
    elector: Elector | ShardElector | None = None
    shards = JobShards(config.leader.shards if config.leader.enabled else 1,
                       owns=lambda namespace, name: elector is not None and elector.owns(namespace, name))

    def on_held(held: frozenset[int]) -> None:  # sharded: the Job watch follows the shards held
        selectors = shards.hold(held)
        scheduler.store.forget_unkept()
        jobs.follow(selectors)

    if config.leader.enabled:
        # The elector calls the scheduler back (built next, with the elector's answers).
        lease_namespace = config.leader.namespace or config.actions.namespace
        if config.leader.shards > 1:
            elector = ShardElector(api, config.leader, lease_namespace, _identity(), on_start=lambda: scheduler.lead(),
                                   on_renewed=lambda: scheduler.take_back(), on_held=on_held)
        else:
            elector = Elector(api, config.leader, lease_namespace, _identity(), on_start=lambda: scheduler.lead(),
                              on_stop=lambda: None, on_renewed=lambda: scheduler.take_back())
    scheduler = Scheduler(api, config, metrics=metrics, approval_key=key, watched=watches(options.watched),
                          owns=elector.owns if elector is not None else lambda namespace, name: True,
                          leading=elector.leading if elector is not None else lambda: True, keeps=shards.keeps)
    jobs = JobWatch(scheduler.store.on_job, namespaces=plain_namespaces(options.watched),
                    accepts=watches(options.watched), timeout_seconds=WATCH_TIMEOUT_SECONDS)
    if shards.count <= 1:  # sharded: the elector's on_held starts it, with the shards held
        jobs.follow(shards.hold(frozenset()))
    operator = Operator(api=api, scheduler=scheduler, caller=KubeCallerApi(), jobs=jobs)
    if elector is not None:
        operator.tasks["elector"] = asyncio.create_task(elector.run(), name="leader-election")
    metrics.watch(triggers=scheduler.store.all_triggers, queue_depth=lambda: len(scheduler.queue),
                  next_due=scheduler.next_due, leading=scheduler.leading)
    # Read the catalog before any Trigger is reconciled, so that a restart never reports Triggers
    # as lacking a template only because the ConfigMap is read a moment later.
    await scheduler.load_catalog()
    operator.tasks["scheduler"] = asyncio.create_task(scheduler.run(), name="scheduler")
    # Outbound notifications: delivered beside the scheduler, never on its path (docs/notifications.md).
    concerned = Concerned()  # the Triggers with notifications or the notify finalizer, not all
    scheduler.store.follow_triggers(concerned.changed)
    operator.notifier = notifier = Notifier(
        api, Sender(api, config.sources), triggers=concerned,
        owns=scheduler.owns, wrote=scheduler.store.wrote, clock=scheduler.clock, approval_key=key,
        approval_required=config.sources.approval == "required", metrics=metrics,
        delete_grace=dt.timedelta(seconds=config.notifications.delete_grace_seconds))
    operator.tasks["notifier"] = asyncio.create_task(notifier.run(), name="notifier")
    return operator


def _start_intake(operator: Operator, config: OperatorConfig, metrics: Metrics) -> EventCommitter:
    """The event committer (HTTP and JetStream count through it)."""
    api, scheduler = operator.api, operator.scheduler
    inbox = None
    if config.events.inbox:  # the shared inbox: one create acknowledges a commit across Triggers
        inbox = Inbox(api, config.events.inbox_namespace or config.actions.namespace, latest=scheduler.store.trigger,
                      committed=lambda body: scheduler.store.on_trigger(None, body),
                      spec_of=lambda body: committer.spec_of(body), clock=scheduler.clock,
                      sweep_seconds=config.events.inbox_sweep_seconds, metrics=metrics)
        operator.tasks["inbox"] = asyncio.create_task(inbox.run(), name="events inbox folder")
    committer = EventCommitter(api, follow=scheduler.store.follow_triggers, latest=scheduler.store.trigger,
                               committed=lambda body: scheduler.store.on_trigger(None, body), clock=scheduler.clock,
                               metrics=metrics, know=scheduler.store.know, inbox=inbox)
    if config.jetstream.url:  # events from the admin's JetStream stream, counted by the same committer
        jetstream = JetStreamIntake(config.jetstream, committer, metrics=metrics, leading=scheduler.leading)
        operator.tasks["jetstream"] = asyncio.create_task(jetstream.run(), name="jetstream")
    return committer


def _start_servers(operator: Operator, options: Options, committer: EventCommitter, metrics: Metrics,
                   key: bytes | None) -> None:
    """The API (events, the seed's REST API, metrics), the probes on their own port, the webhooks."""
    api, scheduler, caller, http = operator.api, operator.scheduler, operator.caller, options.config.http
    limits = Limits.of(http)
    authorizer = Authorizer(api, ttl_seconds=http.auth_cache_seconds, cache_entries=http.auth_cache_entries,
                            limits=limits, url_access=api.review_url_access)
    health = _Health(scheduler, operator.tasks["scheduler"])
    app = build_app(intake=committer, health=health, max_body_bytes=http.max_body_bytes,
                    authorizer=authorizer, caller=caller, metrics=metrics, limits=limits,
                    events_audience=http.events_audience, metrics_auth=http.metrics_auth)
    web = operator.servers["web"] = server(app, host=http.host, port=http.port, tls_cert=options.api_tls[0],
                                           tls_key=options.api_tls[1], http=http)
    operator.tasks["web"] = asyncio.create_task(web.serve(), name="http")
    # The probes on a port of their own too (plain HTTP, as controller-runtime's): the kubelet never
    # waits behind the API's clients, so a flood there cannot fail the liveness probe and restart us.
    probes = server(build_probe_app(health), host=http.host, port=http.probe_port, http=http)
    operator.servers["probes"] = probes
    operator.tasks["probes"] = asyncio.create_task(probes.serve(), name="probes")
    if http.tls_cert and http.tls_key:
        webhook_app = build_webhook_app(max_body_bytes=http.max_body_bytes, admission=lambda app: (
            add_admission_routes(app, api=api, action_types=lambda: scheduler.catalog, clock=scheduler.clock,
                                 approval_key=key, default_sources=lambda: scheduler.default_sources)))
        webhooks = operator.servers["webhooks"] = server(webhook_app, host=http.host, port=http.webhook_port,
                                                         tls_cert=http.tls_cert, tls_key=http.tls_key, http=http)
        operator.tasks["webhooks"] = asyncio.create_task(webhooks.serve(), name="webhooks")
        log.info("admission webhooks on https://%s:%d/admission/{validate,mutate}", http.host, http.webhook_port)
    log.info("HTTP API on %s://%s:%d (events: POST /v1/events, docs: /docs, /openapi.json); probes also on "
             "http://%s:%d/{healthz,readyz}", "https" if options.api_tls[0] else "http", http.host, http.port,
             http.host, http.probe_port)


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
    operator: Operator | None = memo.get("operator")
    if operator is None:  # start failed before it built anything
        return
    election = operator.tasks.get("elector")
    if election is not None:  # cancelled, it hands the lease back: a successor starts at once
        election.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(election, timeout=5)
    for name, running in operator.servers.items():
        running.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(operator.tasks[name], timeout=10)
    for name in ("scheduler", "notifier", "jetstream"):
        task = operator.tasks.get(name)
        if task is not None:
            task.cancel()
    closers: list[Any] = [operator.caller, operator.scheduler.checks.reader]
    if operator.jobs is not None:
        closers.append(operator.jobs)
    if operator.notifier is not None:
        closers.append(operator.notifier.sender)
    for closing in closers:
        with contextlib.suppress(Exception):
            await closing.close()
    await operator.api.aclose()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def trigger_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    operator: Operator = memo["operator"]
    operator.scheduler.store.on_trigger(event.get("type"), event["object"])
    if event.get("type") == "DELETED" and operator.notifier is not None:
        # trigger.deleted of a Trigger deleted before our finalizer was on it (docs/notifications.md)
        operator.notifier.on_deleted(event["object"])



"""Operator settings: typed, defaulted, documented, read once from ``TRIGGER_OPERATOR_*`` variables.

Each field of each topic is set by ``TRIGGER_OPERATOR_<TOPIC>_<FIELD>`` (e.g.
``TRIGGER_OPERATOR_SCHEDULER_WORKERS=16``); a bad value stops start-up with a message naming the
variable.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints


class ConfigurationError(ValueError):
    pass


@dataclass(frozen=True)
class SchedulerSettings:
    workers: int = 64
    """Triggers reconciled at once. Each waits mostly on the API (a status write, then a Job
    create, one after the other), so this bounds the API calls the scheduler has in flight. 16
    capped a thundering minute near 16 / (2 x call latency): ~60 Jobs/s at 1,000 Triggers, where
    64 made ~100/s on the same control plane (`make bench-quick`)."""

    retry_seconds: float = 5.0
    """Delay before a Trigger whose reconcile hit an API error is tried again; doubled per failure in
    a row, up to 60 s (controller/result.py, BACKOFF_CAP_SECONDS: well under the 5 min create grace)."""

    routine_events: bool = False
    """Also post the Events of routine runs (JobCreated of a scheduled run, JobSucceeded after a
    success). Off: failures, refusals, phase changes, recoveries and runs someone asked for (run
    now, events, conditions) are Events; routine runs are in status and the metrics, and two Events
    a run would be most of the operator's API calls (and of etcd's Events) at scale."""

    resync_seconds: float = 600.0
    """How often the Jobs in memory are checked against a fresh list (one LIST per namespace with
    Triggers): a watch re-list after an outage reports no deletions."""

    create_within_seconds: float = 30.0
    """A Job create goes out only this soon after the start of the pass that decided it, or not at
    all (that pass is dropped and decided afresh): a replica paused mid-pass (SIGSTOP, a frozen
    node, a long GC) must not act on a decision that other replicas have overtaken meanwhile. An
    announced run's create goes first only this soon after its moment: past it, its status write
    goes first (two calls). 30 s, not 10 as before issue 21: a minute of 5,000 Triggers takes some
    17 s of creates at the API server's pace on 2 cores, and at 10 s the rest of each burst fell back
    to write-then-create and halved its rate (`make bench`); the name hold's margin is 30 s."""

    name_hold_seconds: float = 60.0
    """Our finalizer stays on a Job until it is this old, even counted and deleted, so its name stays
    taken: a create decided before the Job existed is sent within ``create_within_seconds`` and meets
    AlreadyExists instead of running the moment again. The difference between the two is how long
    such a create may still be on its way (a slow network, a pause after the check) and clock skew
    between the operator and the API server. Most Jobs live longer; it holds back the fast ones."""

    create_first: bool = True
    """At a moment an earlier guarded status write announced (``status.nextScheduledAt``), create its
    Job first, then write: one API call between the moment and its Job (docs/exactly-once.md, "One
    API call between a moment and its Job"); that write is left to the next pass, after the other
    creates due, when the pass does nothing else (no switch of its own). Off: every run is listed by
    its status write before its Job is created, as before; a run another replica created first is
    still listed and counted, so replicas may differ while a rollout switches it."""

    def __post_init__(self) -> None:
        if self.create_within_seconds >= self.name_hold_seconds:
            raise ConfigurationError(
                f"TRIGGER_OPERATOR_SCHEDULER_CREATE_WITHIN_SECONDS={self.create_within_seconds:g} must be less than "
                f"TRIGGER_OPERATOR_SCHEDULER_NAME_HOLD_SECONDS={self.name_hold_seconds:g}: a Job's name must stay "
                "taken for longer than a create decided before the Job existed may still be sent")


@dataclass(frozen=True)
class ActionSettings:
    namespace: str = "trigger-operator-system"
    """Namespace of the ConfigMap that maps action types to Job templates."""

    config_map: str = "trigger-operator-actions"
    """Name of that ConfigMap. Each key is an action type; each value a Job template in YAML
    (``metadata`` and ``spec``, as in a CronJob's ``jobTemplate``)."""

    poll_seconds: float = 10.0
    """How often that ConfigMap is read (one GET). Read rather than watched: it lives in the
    operator's own namespace, which an operator limited to other namespaces (``-n``) never watches."""


@dataclass(frozen=True)
class KubeSettings:
    threads: int = 64
    """Kubernetes API calls in flight at once for reconciles (the client is synchronous: one
    thread each, one pooled connection each); as many as scheduler workers, so none waits for a
    thread. Events are posted on two threads of their own."""

    component: str = "trigger-operator"
    """Name the operator gives as the source of the Events it posts."""


@dataclass(frozen=True)
class HttpSettings:
    port: int = 8080
    """The API port: event intake, the seed's API, /openapi.json, /metrics, /healthz and /readyz."""

    probe_port: int = 8081
    """A port of the probes alone (/healthz, /readyz), as controller-runtime's health probe address:
    the kubelet's probes never compete with the API's clients for connections (the chart probes
    here; the API port keeps the probes too)."""

    host: str = "0.0.0.0"
    """Address to bind (``make run`` binds 127.0.0.1)."""

    max_body_bytes: int = 1024 * 1024
    """Largest request body accepted; larger ones get 413 before they are read."""

    rate_per_client: float = 500.0
    """Requests a second one client (a Bearer token, or an address without one) may make,
    sustained; more get 429 with Retry-After. Probes, /metrics and the webhooks are not limited."""

    burst_per_client: float = 1000.0
    """Requests one client may make at once, before its rate applies."""

    auth_cache_seconds: float = 10.0
    """How long a TokenReview or SubjectAccessReview answer is reused for the same token."""

    webhook_port: int = 8443
    """The TLS port of the admission webhooks (served only with a certificate and key)."""

    tls_cert: str = ""
    """Path of the webhooks' certificate (PEM); empty: no webhook server."""

    tls_key: str = ""
    """Path of its private key (PEM)."""

    rate_per_address: float = 1000.0
    """Requests a second one client address may make, before any token is looked at (a flood of
    random tokens from one address is refused here, before it costs a TokenReview)."""

    burst_per_address: float = 2000.0
    """Requests one address may make at once, before its rate applies."""

    reviews_per_address: float = 20.0
    """TokenReviews a second one address may cause with tokens not yet in the cache; more get 429."""

    review_threads: int = 8
    """Threads of their own for TokenReviews and SubjectAccessReviews, so that a flood of them never
    takes the threads that create Jobs."""

    auth_cache_entries: int = 10_000
    """Review answers kept (least recently used dropped first)."""

    max_connections: int = 1000
    """Connections served at once on each port; more get 503 (uvicorn's limit_concurrency)."""

    header_timeout_seconds: float = 10.0
    """A connection that has not sent a whole request head within this is closed (slowloris)."""

    request_timeout_seconds: float = 30.0
    """A connection that has not sent a whole request, head and body, within this of its first byte
    (or of the connection, for its first request) is closed: a body that never ends holds no slot."""

    connections_per_address: int = 64
    """Connections one peer address may hold open on each port; more are closed as they are
    accepted, so one pod cannot take every slot of ``max_connections``. The API server calling the
    webhooks is one address per replica of it, and 64 is ample for it: its calls are short and
    each is bounded by its own webhook timeout (at most 30 s), so it holds a few at once."""

    reviews_total: float = 200.0
    """TokenReviews a second all addresses together may cause with tokens not yet in the cache (a
    bucket of its own, after the per-address one): addresses rotated by the thousand still cost a
    bounded number of reviews. Tokens in the cache are never refused by it."""

    api_tls_cert: str = ""
    """With a key, the HTTP port serves TLS with this certificate (PEM): tokens then never cross the
    network in the clear. Empty: plain HTTP (put TLS in front, e.g. a mesh or an ingress)."""

    api_tls_key: str = ""
    """Path of that certificate's private key (PEM)."""

    events_audience: str = ""
    """When set, tokens sent to /v1/events must be bound to this audience (``kubectl create token
    SA --audience ...``): a token captured from an event sender is then no API server token."""

    metrics_auth: bool = False
    """Serve /metrics only to callers whose token may ``get`` the non-resource URL /metrics (a
    TokenReview and a SubjectAccessReview, as controller-runtime's secure metrics serving): the
    per-Trigger series name every tenant's failing Triggers."""


@dataclass(frozen=True)
class SourcesSettings:
    """Where condition sources may be read from, how much of an answer is read, and who approved a
    source that the operator reads with its own rights (docs/security.md)."""

    allowed_urls: str = ""
    """Comma-separated URL prefixes (``https://prometheus.example.com/``); when set, an http or
    prometheus source's URL must start with one of them. Empty: any URL whose addresses pass the
    network rules below."""

    allowed_networks: str = ""
    """Comma-separated CIDRs opened despite the default refusal of loopback, link-local, private,
    shared and reserved addresses (e.g. the Service range, for an in-cluster Prometheus)."""

    denied_networks: str = ""
    """Comma-separated CIDRs refused besides those (e.g. the cluster's Pod and Service ranges when
    they are public addresses)."""

    max_answer_bytes: int = 1024 * 1024
    """Most bytes of a source's answer read, after decompression (a ConfigMap value likewise);
    a larger one is a failed check."""

    max_vector_length: int = 4096
    """Most numbers in a vector value; a longer one is a failed check."""

    approval: str = "required"
    """``required``: a configMap or object source, or an http source's tokenSecret, is read only
    when the admission webhook recorded that whoever last set it may ``get`` that object itself.
    ``off``: read with the operator's rights for any author (a cluster whose Trigger authors are all
    trusted; ``make run`` against a cluster without the webhooks)."""

    approval_key_file: str = ""
    """File holding the key that signs approvals (the chart makes it a Secret); empty: none, so no
    source that needs approval is read while ``approval`` is ``required``."""

    def __post_init__(self) -> None:
        if self.approval not in ("required", "off"):
            raise ConfigurationError(f"TRIGGER_OPERATOR_SOURCES_APPROVAL={self.approval!r}: expected required or off")


@dataclass(frozen=True)
class LeaderSettings:
    enabled: bool = False
    """Schedule only while holding a Lease, so that of several replicas one schedules at a time
    (README, "High availability"); every replica serves the HTTP API and events. The chart turns it
    on; one process run by hand (``make run``, the tests) needs none."""

    namespace: str = ""
    """Namespace of the Lease; empty: the actions ConfigMap's (the operator's own namespace)."""

    name: str = "trigger-operator"
    """Name of the Lease (one per install)."""

    duration_seconds: float = 10.0
    """How long another replica's lease, seen unchanged, is respected before it is taken over:
    the take-over time after a leader dies without releasing it."""

    renew_deadline_seconds: float = 7.0
    """A leader that has not renewed for this long stops acting (less than the duration, so it
    stops before another may start)."""

    retry_seconds: float = 2.0
    """How often the lease is read and renewed (one GET and one PUT per period for the leader)."""

    shards: int = 1
    """More than 1: the sharded mode (README, "Scale out"). The Triggers are split into this many
    shards by a hash of namespace/name, each a Lease ``<name>-shard-<k>``, and the replicas share
    the shards evenly (each also renews a Lease ``<name>-member-<identity>``, so that all know who
    is alive). Each round costs a replica one LIST and one write per Lease it holds. Choose a
    multiple of the usual replica counts (6 splits evenly over 1, 2, 3 and 6 replicas)."""


@dataclass(frozen=True)
class JetStreamSettings:
    """Events read from a NATS JetStream stream the admin runs (docs/events.md, "From a JetStream
    stream"): one stream, one durable pull consumer, a message's namespace in its subject."""

    url: str = ""
    """The NATS server (``nats://nats.nats.svc:4222``; ``tls://`` for TLS). Empty: no JetStream intake."""

    stream: str = ""
    """The stream to read (the admin's; the operator never creates or changes it). Required with a
    ``url``: the operator does not start without it."""

    consumer: str = "trigger-operator"
    """The durable pull consumer's name. Created on the stream when missing (explicit acks, subjects
    ``<subject_prefix>.>``, ``ack_wait_seconds``, ``max_ack_pending``); an existing one is read only if
    its settings keep these bounds (explicit acks, at most 1,000 unacknowledged, that one filter
    subject): intake/jetstream.py, ``consumer_refusals``."""

    subject_prefix: str = "trigger-events"
    """A message on ``<subject_prefix>.<namespace>`` counts for the event Triggers of that namespace.
    Give each tenant publish rights on its own subject alone (NATS permissions): that is the tenancy."""

    credentials_file: str = ""
    """A NATS credentials file (JWT and NKey seed, ``.creds``) to connect with; empty: none."""

    batch: int = 500
    """Messages asked for in one pull; the next pull waits until they are all stored and acknowledged."""

    max_ack_pending: int = 1000
    """Messages the consumer hands out unacknowledged at most (when the operator creates it). At most
    the 1,000 event ids a Trigger remembers, so a redelivery after a crash is recognised."""

    ack_wait_seconds: float = 30.0
    """How long an unacknowledged message waits before JetStream redelivers it (when the operator
    creates the consumer): after a crash, a new reader waits this long before reading new messages."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", self.subject_prefix):
            raise ConfigurationError(f"TRIGGER_OPERATOR_JETSTREAM_SUBJECT_PREFIX={self.subject_prefix!r}: expected "
                                     "dot-separated tokens of letters, digits, '-' or '_' (no wildcard)")
        for name in ("stream", "consumer"):
            value = getattr(self, name)
            if value and not re.fullmatch(r"[A-Za-z0-9_-]+", value):
                raise ConfigurationError(f"TRIGGER_OPERATOR_JETSTREAM_{name.upper()}={value!r}: expected letters, "
                                         "digits, '-' or '_'")


@dataclass(frozen=True)
class EventSettings:
    """Event intake (docs/events.md)."""

    inbox: bool = False
    """The shared inbox (docs/events.md, "The shared inbox"): a 202 waits for one create of an
    inbox object holding the group commit of every Trigger, folded into each Trigger's status right
    after, instead of a guarded status write per Trigger. Off: the 202 waits for the Trigger's own
    status write (``status.eventCounter`` holds the count when the sender reads it)."""

    inbox_namespace: str = ""
    """Where the inbox objects (ConfigMaps) live; empty: the actions ConfigMap's, the operator's own
    namespace, where no Trigger author writes (the chart's Role grants create, list, delete there)."""

    inbox_sweep_seconds: float = 10.0
    """How often every inbox object is listed and folded (another replica's, a crashed one's); a
    replica folds its own as soon as they are stored, and lists the inbox at start."""


@dataclass(frozen=True)
class NotificationSettings:
    """Outbound notifications (docs/notifications.md)."""

    delete_grace_seconds: float = 600.0
    """How long a deleted Trigger with ``spec.notifications`` waits, at most, for its
    ``trigger.deleted`` and the events still owed to be delivered (its finalizer
    ``trigger-operator.io/notify``); then it goes, and what is still owed is dead-lettered. Bounded
    so that a sink that is down never holds a deletion (or a GitOps prune) for long."""


@dataclass(frozen=True)
class OperatorConfig:
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    actions: ActionSettings = field(default_factory=ActionSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    sources: SourcesSettings = field(default_factory=SourcesSettings)
    jetstream: JetStreamSettings = field(default_factory=JetStreamSettings)
    events: EventSettings = field(default_factory=EventSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        topics = {f.name: _load(get_type_hints(cls)[f.name], f"TRIGGER_OPERATOR_{f.name.upper()}_", env)
                  for f in dataclasses.fields(cls)}
        return cls(**topics)


T = TypeVar("T")


def _load(topic: type[T], prefix: str, env: Mapping[str, str]) -> T:
    values: dict[str, Any] = {}
    hints = get_type_hints(topic)
    for f in dataclasses.fields(topic):  # type: ignore[arg-type]
        name = prefix + f.name.upper()
        if name not in env:
            continue
        kind = hints[f.name]
        try:
            values[f.name] = _boolean(env[name]) if kind is bool else kind(env[name])
        except ValueError:
            raise ConfigurationError(f"{name}={env[name]!r}: expected a {kind.__name__}") from None
        if kind in (int, float) and not (math.isfinite(values[f.name]) and values[f.name] > 0):
            raise ConfigurationError(f"{name}={env[name]!r}: must be positive")
    return topic(**values)


def _boolean(text: str) -> bool:
    """``bool("false")`` is True: spell it out."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.strip().lower())
    if value is None:
        raise ValueError(text)
    return value

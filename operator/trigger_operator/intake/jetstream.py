"""Event intake from a NATS JetStream stream the admin already runs (issue 23 part 4, docs/events.md).

Admin-configured, not per Trigger: the operator reads ONE stream (``TRIGGER_OPERATOR_JETSTREAM_*``)
through one durable pull consumer. A message's namespace is its subject, ``<prefix>.<namespace>``;
it counts for the Triggers of that namespace exactly as an HTTP event with ``X-Namespace`` does,
through the same path: `read_delivery` reads it, `EventCommitter.count` matches and stores it. Who
may publish on which subject is NATS's own permission, as RBAC ``create triggers/events`` is HTTP's.

Exactly once: a message is acknowledged only after the committer says its count is stored (the
promise of the HTTP 202). A crash before the ack redelivers it after the consumer's AckWait, and the
(source, id) de-duplication of the Trigger's status (the last `RECENT_EVENT_IDS` ids) counts it
once. For that, a redelivery must come back before 1,000 later events counted for the same Trigger
push its id out: the consumer holds at most ``max_ack_pending`` (<= `RECENT_EVENT_IDS`) messages
unacknowledged, a replica that starts, or regains the lead, while some are pending waits one AckWait
before its next fetch (they are all due then, and JetStream hands due redeliveries out before new
messages), and only a replica that schedules (`leading`) consumes, so one replica reads at a time
(one per shard holder when sharded: docs/events.md says what that costs). An existing durable
consumer whose settings break these bounds (`consumer_refusals`) is refused, named, not used as is.

Malformed messages are terminated (counted in a metric, never redelivered); a subject that does not
end in a namespace's name is acknowledged and dropped (a metric, one log line per subject, no byte
of the payload). Bounded: one batch of at most ``batch`` messages in flight; the next fetch waits
for its commit, so a slow API server slows the intake, never the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trigger_operator.api import NAMESPACE_PATTERN
from trigger_operator.config import ConfigurationError, JetStreamSettings
from trigger_operator.events.cloudevents import STRUCTURED, EventError, Occurrence, read_delivery
from trigger_operator.events.counting import applies_to
from trigger_operator.intake.committer import NotStored, TriggerTally
from trigger_operator.metrics import Metrics
from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import RECENT_EVENT_IDS

log = logging.getLogger("trigger_operator.intake.jetstream")
NAMESPACE = re.compile(NAMESPACE_PATTERN)
FETCH_SECONDS = 1.0  # a fetch waits at most this for messages (then the lag gauge reads 0)
RETRY_SECONDS = (1, 2, 4, 8, 16, 30)  # after a lost connection or a failed consumer lookup
NAK_DELAY_SECONDS = 1.0  # a message whose count could not be stored comes back this soon
LOGGED_SUBJECTS = 1000  # subjects remembered as logged (each logged once); cleared whole when full


# What became of a message (the metric's ``outcome`` label).
COUNTED, DUPLICATE, UNMATCHED, MALFORMED, FOREIGN = "counted", "duplicate", "unmatched", "malformed", "foreign-subject"


def namespace_of_subject(subject: str, prefix: str) -> str | None:
    """The namespace a subject ``<prefix>.<namespace>`` names; None for any other subject (a deeper
    one, an empty last token, or one that is no namespace's name)."""
    head, dot, namespace = subject.rpartition(".")
    if not dot or head != prefix or not NAMESPACE.fullmatch(namespace):
        return None
    return namespace


def read_message(data: bytes, headers: Mapping[str, str] | None, stream: str, sequence: int) -> Occurrence:
    """One message as one event: a structured JSON CloudEvent body, or binary mode (``ce-*`` NATS
    headers, any body). Without an ``id`` it gets ``<stream>:<stream sequence>`` and, without a
    ``source``, ``nats://<stream>``: a redelivery is then the same event, de-duplicated as any.
    A sender's own source is kept (filters may read it). Raises `EventError` naming the field."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    if "ce-specversion" in lowered:
        lowered.setdefault("ce-id", f"{stream}:{sequence}")
        lowered.setdefault("ce-source", f"nats://{stream}")
        return read_delivery("", lowered, data)[0]
    try:
        payload: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        payload = None  # read_delivery names the error below
    if isinstance(payload, dict):
        payload.setdefault("id", f"{stream}:{sequence}")
        payload.setdefault("source", f"nats://{stream}")
        data = json.dumps(payload).encode()
    return read_delivery(STRUCTURED, {}, data)[0]


def outcomes(events: Sequence[Occurrence], specs: Sequence[TriggerSpec],
             tallies: Sequence[TriggerTally]) -> dict[str, int]:
    """Messages of one namespace by outcome, after their count: ``unmatched`` matched no Trigger;
    of the others, as many as the Triggers' duplicates (at most) are ``duplicate`` and the rest
    ``counted`` (a message counted for one Trigger and a duplicate for another is counted)."""
    matched = sum(1 for event in events if any(applies_to(spec, event) for spec in specs))
    duplicates = min(matched, max((t.duplicates for t in tallies), default=0))
    return {COUNTED: matched - duplicates, DUPLICATE: duplicates, UNMATCHED: len(events) - matched}


def consumer_refusals(config: Any, settings: JetStreamSettings) -> list[str]:
    """Why an existing durable consumer (its nats-py ``ConsumerConfig``) cannot be read exactly once,
    each naming the consumer's setting; [] when it can. The operator creates its own consumer right;
    one made by hand (or by an older operator) must be fixed or deleted, never read as it is."""
    problems = []
    policy = getattr(config.ack_policy, "value", config.ack_policy)
    if policy != "explicit":
        problems.append(f"ack_policy is {policy!r}, not 'explicit': a message must stay unacknowledged "
                        "until its count is stored")
    pending = config.max_ack_pending
    if pending is None or not 0 < pending <= RECENT_EVENT_IDS:
        problems.append(f"max_ack_pending is {pending}, not 1 to {RECENT_EVENT_IDS} (the event ids a Trigger "
                        "remembers): a redelivery must find its id")
    wanted = f"{settings.subject_prefix}.>"
    subjects = [config.filter_subject] if config.filter_subject else list(config.filter_subjects or [])
    if subjects != [wanted]:
        problems.append(f"its filter subjects are {subjects or 'none (the whole stream)'}, not [{wanted!r}] "
                        "(TRIGGER_OPERATOR_JETSTREAM_SUBJECT_PREFIX)")
    if not config.ack_wait or config.ack_wait <= 0:
        problems.append(f"ack_wait is {config.ack_wait}: a redelivery's delay must be known")
    return problems


class ConsumerRefused(ConfigurationError):
    """An existing durable consumer whose settings break the exactly-once bounds."""


class Counter(Protocol):
    """What the intake needs of `EventCommitter`."""

    def candidates(self, namespace: str) -> list[tuple[tuple[str, str], TriggerSpec]]: ...

    async def count(self, namespace: str, events: Sequence[Occurrence]) -> list[TriggerTally]: ...


class Message(Protocol):
    """What the intake needs of a nats-py message."""

    subject: str
    data: bytes
    headers: dict[str, str] | None

    @property
    def metadata(self) -> Any: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | None = None) -> None: ...

    async def term(self) -> None: ...


@dataclass
class _Read:
    message: Message
    namespace: str
    event: Occurrence


class JetStreamIntake:
    """The consumer: `run` connects, makes sure the durable consumer exists, and pulls batches for
    ever (reconnecting with backoff), each counted through the committer before it is acknowledged."""

    def __init__(self, settings: JetStreamSettings, committer: Counter, *, metrics: Metrics | None = None,
                 leading: Callable[[], bool] = lambda: True) -> None:
        if not settings.stream:
            raise ConfigurationError("TRIGGER_OPERATOR_JETSTREAM_STREAM is required with "
                                     "TRIGGER_OPERATOR_JETSTREAM_URL")
        if settings.max_ack_pending > RECENT_EVENT_IDS:
            raise ConfigurationError(
                f"TRIGGER_OPERATOR_JETSTREAM_MAX_ACK_PENDING={settings.max_ack_pending} must be at most "
                f"{RECENT_EVENT_IDS} (the event ids a Trigger remembers): a redelivery must find its id")
        self._settings = settings
        self._committer = committer
        self._metrics = metrics
        self._leading = leading
        self._logged: set[tuple[str, str]] = set()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the connection, the consumer lookup: tried again
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("JetStream intake: %s: %s; trying again in %ds", type(error).__name__, error, delay)
                await asyncio.sleep(delay)

    async def _consume(self) -> None:
        import nats  # the shell's client; imported here so that the pure helpers above need none
        from nats.js.api import AckPolicy, ConsumerConfig
        from nats.js.errors import NotFoundError

        s = self._settings
        options: dict[str, Any] = {"max_reconnect_attempts": -1, "error_cb": _connection_error,
                                   "name": "trigger-operator"}
        if s.credentials_file:
            options["user_credentials"] = s.credentials_file
        client = await nats.connect(s.url, **options)
        try:
            js = client.jetstream()
            try:
                info = await js.consumer_info(s.stream, s.consumer)
            except NotFoundError:
                info = await js.add_consumer(s.stream, ConsumerConfig(
                    durable_name=s.consumer, ack_policy=AckPolicy.EXPLICIT, filter_subject=f"{s.subject_prefix}.>",
                    ack_wait=s.ack_wait_seconds, max_ack_pending=s.max_ack_pending))
                log.info("JetStream intake: created the durable consumer %s on stream %s", s.consumer, s.stream)
            problems = consumer_refusals(info.config, s)
            if problems:
                raise ConsumerRefused(f"the durable consumer {s.consumer} on stream {s.stream} is not read: "
                                      + "; ".join(problems) + ". Fix it, or delete it and the operator creates "
                                      "it right")
            subscription = await js.pull_subscribe_bind(s.consumer, s.stream)
            log.info("JetStream intake: reading stream %s (subjects %s.<namespace>) at %s as consumer %s",
                     s.stream, s.subject_prefix, _safe_url(s.url), s.consumer)
            await self.read(js, subscription, info.config.ack_wait, (nats.errors.TimeoutError, TimeoutError))
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection: nothing more to do
                await client.close()

    async def read(self, js: Any, subscription: Any, ack_wait: float,
                   nothing: tuple[type[BaseException], ...] = (TimeoutError,)) -> None:
        """Pulls batches for ever while leading. Each time this replica takes the lead (first, or
        again after another replica read), it waits one AckWait when messages are unacknowledged:
        another reader's, maybe counted, are due then and come before new ones, so their ids are
        still remembered. ``nothing``: the fetch's errors that mean no message came."""
        s = self._settings
        settled = False
        while True:
            if not self._leading():
                settled = False
                await asyncio.sleep(FETCH_SECONDS)
                continue
            if not settled:
                info = await js.consumer_info(s.stream, s.consumer)
                if info.num_ack_pending:
                    log.info("JetStream intake: %d messages of a previous reader are unacknowledged; waiting "
                             "%.0f s (AckWait) for their redelivery before reading new ones",
                             info.num_ack_pending, ack_wait)
                    await asyncio.sleep(ack_wait)
                settled = True
                continue  # still leading after the wait?
            try:
                messages = await subscription.fetch(s.batch, timeout=FETCH_SECONDS)
            except nothing:  # nothing to read (nats-py raises one of these)
                self._lag(0)
                continue
            await self.handle(messages)

    async def handle(self, messages: Sequence[Message]) -> None:
        """One batch: read, counted per namespace, each acknowledged once its count is stored."""
        s = self._settings
        by_namespace: dict[str, list[_Read]] = {}
        for message in messages:
            namespace = namespace_of_subject(message.subject, s.subject_prefix)
            if namespace is None:
                self._once(FOREIGN, message.subject, "JetStream intake: dropped messages on subject %r: not "
                           "%s.<namespace>", message.subject, s.subject_prefix)
                self._outcome(FOREIGN)
                await message.ack()
                continue
            sequence = message.metadata.sequence.stream
            try:
                event = read_message(message.data, message.headers, s.stream, sequence)
            except EventError as error:
                # The fields and the kinds of error only: a message (a decoder's) may quote the payload.
                self._once(MALFORMED, message.subject, "JetStream intake: terminated a malformed message on %r "
                           "(stream sequence %d): %s", message.subject, sequence, _fields(error))
                self._outcome(MALFORMED)
                await message.term()
                continue
            by_namespace.setdefault(namespace, []).append(_Read(message, namespace, event))
        if messages:
            self._lag(messages[-1].metadata.num_pending)
        await asyncio.gather(*(self._count(namespace, reads) for namespace, reads in by_namespace.items()))

    async def _count(self, namespace: str, reads: list[_Read]) -> None:
        events = [r.event for r in reads]
        try:
            tallies = await self._committer.count(namespace, events)
        except NotStored as error:
            log.warning("JetStream intake: %d messages for namespace %s not stored (%s); redelivered in %.0f s",
                        len(reads), namespace, error, NAK_DELAY_SECONDS)
            for r in reads:
                await r.message.nak(delay=NAK_DELAY_SECONDS)
            return
        for r in reads:
            await r.message.ack()
        specs = [spec for _, spec in self._committer.candidates(namespace)]
        for outcome, n in outcomes(events, specs, tallies).items():
            self._outcome(outcome, n)

    def _outcome(self, outcome: str, n: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.jetstream_messages(outcome, n)

    def _lag(self, pending: int) -> None:
        if self._metrics is not None:
            self._metrics.jetstream_pending(pending)

    def _once(self, kind: str, subject: str, message: str, *args: object) -> None:
        if (kind, subject) in self._logged:
            return
        if len(self._logged) >= LOGGED_SUBJECTS:
            self._logged.clear()
        self._logged.add((kind, subject))
        log.warning(message, *args)


async def _connection_error(error: Exception) -> None:
    log.warning("JetStream intake: connection: %s: %s", type(error).__name__, error)


def _fields(error: EventError) -> str:
    return ", ".join(f"{'.'.join(str(p) for p in d['loc'])} ({d['type']})" for d in error.detail)


def _safe_url(url: str) -> str:
    """The server's URL without any user or password in it (the log is no place for a secret)."""
    return re.sub(r"//[^@/]*@", "//", url)

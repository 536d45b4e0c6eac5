"""Prometheus metrics of the operator, served at ``/metrics`` (README, "Metrics").

Label values are bounded sets (action type, trigger type, run kind, outcome, phase, source kind,
event result, API verb and resource): no Trigger or Job name is a label of a counter or histogram,
so cardinality does not grow with the number of Triggers or runs. The one exception is two gauges
that exist only for a Trigger whose last run failed (an alert must say which): they are as many as
the failing Triggers, and vanish when a run succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from trigger_operator import __version__
from trigger_operator.model.status import Execution

LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series (they double a scrape)
        self.registry = CollectorRegistry()
        r = self.registry
        Gauge("trigger_operator_build_info", "The running version.", ["version"], registry=r).labels(__version__).set(1)
        self._started = Counter("trigger_operator_executions_started", "Runs whose Job was created.",
                                ["action_type", "trigger_type", "run_kind"], registry=r)
        self._finished = Counter("trigger_operator_executions_finished", "Runs counted in status, by outcome.",
                                 ["action_type", "trigger_type", "outcome"], registry=r)
        self._lateness = Histogram("trigger_operator_schedule_lateness_seconds",
                                   "Job created minus the scheduled moment (scheduled runs).", ["trigger_type"],
                                   buckets=LATENESS_BUCKETS, registry=r)
        self._duration = Histogram("trigger_operator_job_duration_seconds", "Job start to end, for runs counted.",
                                   ["action_type", "outcome"], buckets=DURATION_BUCKETS, registry=r)
        self._events = Counter("trigger_operator_events", "Event deliveries, by what became of them.",
                               ["result"], registry=r)
        self._checks = Counter("trigger_operator_condition_checks", "Reads of condition sources.",
                               ["source", "result"], registry=r)
        self._requests = Counter("trigger_operator_kube_requests", "Kubernetes API calls made by the operator "
                                 "(not kopf's watches), by outcome: the HTTP code, or error.",
                                 ["verb", "resource", "code"], registry=r)
        # Outbound notifications (notify/notifier.py, docs/notifications.md).
        self._deliveries = Counter("trigger_operator_notification_deliveries",
                                   "Attempts to deliver a notification to a sink, by outcome: delivered (2xx), "
                                   "failed (retried with backoff) or rejected (a 4xx that is final).",
                                   ["outcome"], registry=r)
        self._dead_letters = Counter("trigger_operator_notification_dead_letters",
                                     "Notifications given up for a sink (status.notifications.deadLetters).",
                                     registry=r)
        self._pending = Gauge("trigger_operator_notifications_pending",
                              "Notifications waiting for at least one sink, over the Triggers this replica delivers "
                              "for.", registry=r)
        # The JetStream intake (intake/jetstream.py, docs/events.md).
        self._jetstream = Counter("trigger_operator_jetstream_messages",
                                  "JetStream messages consumed, by outcome: counted, duplicate, unmatched (no "
                                  "Trigger), malformed (terminated) or foreign-subject (not <prefix>.<namespace>).",
                                  ["outcome"], registry=r)
        self._jetstream_pending = Gauge("trigger_operator_jetstream_pending",
                                        "Messages of the stream not yet delivered to the consumer (its lag), as of "
                                        "the last pull.", registry=r)
        self._request_seconds = Histogram("trigger_operator_kube_request_duration_seconds",
                                          "Latency of the operator's Kubernetes API calls.", ["verb", "resource"],
                                          buckets=REQUEST_BUCKETS, registry=r)

    def watch(self, *, triggers: Callable[[], Iterable[Mapping[str, Any]]], queue_depth: Callable[[], int],
              next_due: Callable[[], float | None], leading: Callable[[], bool]) -> None:
        """Gauges read at scrape time from the scheduler: ``triggers`` are the store's Trigger bodies,
        as last seen, which the gauges summarize (phases, failing Triggers, groupBy keys)."""
        self.registry.register(_Scheduler(lambda: phases(triggers()), queue_depth, next_due,
                                          lambda: failing(triggers()), leading, lambda: event_keys(triggers())))

    def run_started(self, action_type: str, trigger_type: str, run_kind: str, lateness_seconds: float | None) -> None:
        self._started.labels(action_type, trigger_type, run_kind).inc()
        if lateness_seconds is not None:
            self._lateness.labels(trigger_type).observe(max(0.0, lateness_seconds))

    def runs_finished(self, action_type: str, trigger_type: str, executions: Iterable[Execution]) -> None:
        for e in executions:
            self._finished.labels(action_type, trigger_type, e.outcome.value).inc()
            if e.duration_ms is not None:
                self._duration.labels(action_type, e.outcome.value).observe(e.duration_ms / 1000)

    def events(self, result: str, count: int = 1) -> None:
        if count:
            self._events.labels(result).inc(count)

    def notification(self, outcome: str) -> None:
        self._deliveries.labels(outcome).inc()

    def dead_letters(self, count: int) -> None:
        if count:
            self._dead_letters.inc(count)

    def notifications_pending(self, count: int) -> None:
        self._pending.set(count)

    def jetstream_messages(self, outcome: str, count: int = 1) -> None:
        if count:
            self._jetstream.labels(outcome).inc(count)

    def jetstream_pending(self, count: int) -> None:
        self._jetstream_pending.set(count)

    def check(self, source: str, ok: bool) -> None:
        self._checks.labels(source, "ok" if ok else "error").inc()

    def kube_request(self, verb: str, resource: str, outcome: str, seconds: float) -> None:
        """A `kube.api.RequestObserver`: called from the client's worker threads (the client
        library's metrics are thread-safe)."""
        self._requests.labels(verb, resource, outcome).inc()
        self._request_seconds.labels(verb, resource).observe(seconds)


Failing = tuple[str, str, int, bool]  # namespace, Trigger, consecutive failures, stopped in phase Failed
Keys = tuple[str, str, int]  # namespace, Trigger, keys held (groupBy)


def phases(triggers: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Triggers by phase, as last seen."""
    counts: dict[str, int] = {}
    for body in triggers:
        phase = str((body.get("status") or {}).get("phase") or "Unknown")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def failing(triggers: Iterable[Mapping[str, Any]]) -> list[Failing]:
    """(namespace, name, consecutive failures, stopped in Failed) of each Trigger whose last run
    failed, as last seen: per-Trigger series exist only while a run fails (bounded labels)."""
    found = []
    for body in triggers:
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        failures = status.get("consecutiveFailures")
        failures = failures if isinstance(failures, int) else 0  # a hand-edited status may hold anything
        stopped = status.get("phase") == "Failed"
        if failures > 0 or stopped:
            found.append((str(meta.get("namespace")), str(meta.get("name")), failures, stopped))
    return found


def event_keys(triggers: Iterable[Mapping[str, Any]]) -> list[Keys]:
    """(namespace, name, keys held) of each groupBy Trigger counting for any key, as last seen."""
    found = []
    for body in triggers:
        meta, rows = body.get("metadata") or {}, (body.get("status") or {}).get("eventKeyState")
        if isinstance(rows, list) and rows:
            found.append((str(meta.get("namespace")), str(meta.get("name")), len(rows)))
    return found


class _Scheduler(Collector):
    def __init__(self, phases: Callable[[], Mapping[str, int]], queue_depth: Callable[[], int],
                 next_due: Callable[[], float | None], failing: Callable[[], Iterable[Failing]],
                 leading: Callable[[], bool], event_keys: Callable[[], Iterable[Keys]]) -> None:
        self._phases, self._depth, self._next_due, self._failing = phases, queue_depth, next_due, failing
        self._leading, self._event_keys = leading, event_keys

    def collect(self) -> Iterable[GaugeMetricFamily]:
        by_phase = GaugeMetricFamily("trigger_operator_triggers", "Triggers by phase.", labels=["phase"])
        for phase, n in sorted(self._phases().items()):
            by_phase.add_metric([phase], n)
        yield by_phase
        failures = GaugeMetricFamily("trigger_operator_trigger_consecutive_failures",
                                     "Runs failed in a row, for each Trigger whose last run failed.",
                                     labels=["namespace", "trigger"])
        stopped = GaugeMetricFamily("trigger_operator_trigger_stopped",
                                    "1 for each Trigger stopped in phase Failed (maxConsecutiveFailures reached).",
                                    labels=["namespace", "trigger"])
        for namespace, name, count, is_stopped in self._failing():
            failures.add_metric([namespace, name], count)
            if is_stopped:
                stopped.add_metric([namespace, name], 1)
        yield failures
        yield stopped
        keys = GaugeMetricFamily("trigger_operator_event_keys",
                                 "Keys a groupBy Trigger counts for now (at most its maxKeys), for each Trigger "
                                 "holding any.", labels=["namespace", "trigger"])
        for namespace, name, count in self._event_keys():
            keys.add_metric([namespace, name], count)
        yield keys
        yield GaugeMetricFamily("trigger_operator_leading", "1 while this replica schedules (holds the Lease, "
                                "a shard's Lease when sharded, or runs without election), 0 while it follows.",
                                value=int(self._leading()))
        yield GaugeMetricFamily("trigger_operator_queue_depth", "Triggers waiting in the scheduler's queue.",
                                value=self._depth())
        due = self._next_due()
        if due is not None:
            yield GaugeMetricFamily("trigger_operator_next_due_timestamp_seconds",
                                    "When the scheduler next wakes (unix seconds).", value=due)

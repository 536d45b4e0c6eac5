"""Scenario: the JetStream intake beside the HTTP intake, in one run (issue 23 part 4).

One event Trigger (a threshold never reached: the intake alone is measured) and a real nats-server
(hack/build-nats.sh). Three measurements on the same operator:

- **JetStream drain**: N messages published while the operator is stopped, then the operator
  started: messages/s = N / (last one stored - first one stored), read from the Trigger's
  ``status.eventCounter`` polled every 20 ms.
- **JetStream latency**: messages published at a steady rate with the operator running; a
  message's latency is its publish (the stream's acknowledgement) to the first poll at which the
  counter includes it (messages are counted in stream order here: one Trigger, one reader), so it
  is exact to the poll's period and the GET's latency (a few ms).
- **HTTP**: bench/scenarios/events.py's senders (single structured CloudEvents, 202 once stored) for
  the same time: events/s and request-to-202 latency.

Every counter must end equal to what was sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import nats
from tests.harness import grant, service_account_token
from tests.integration.servers import add_stream, nats_server

from bench.common import Bench, log, rounded, summary, trigger_body, wait_until
from bench.scenarios.events import SEND, UNLIMITED, send

NAMESPACE = "bj-0"
STREAM = "BENCH"
PREFIX = "trigger-events"
EVENT_TYPE = "bench.e0"  # events.send's type for its first Trigger


async def _publish(url: str, subject: str, first: int, count: int, per_second: float = 0) -> list[float]:
    """Publishes ``count`` CloudEvents (ids ``first``..), each awaited until the stream stored it;
    returns each one's time (monotonic) of that acknowledgement."""
    client = await nats.connect(url)
    times: list[float] = []
    try:
        js = client.jetstream()
        started = time.monotonic()
        for k in range(first, first + count):
            body = json.dumps({"specversion": "1.0", "id": f"js-{k}", "source": "//bench", "type": EVENT_TYPE})
            await js.publish(subject, body.encode())
            times.append(time.monotonic())
            if per_second:
                ahead = started + (k - first + 1) / per_second - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
    finally:
        await client.close()
    return times


async def _add_stream(url: str) -> None:
    await add_stream(url, STREAM, [f"{PREFIX}.>"])


class _Watch:
    """Polls the Trigger's counter every 20 ms in a thread, recording when each value was first seen."""

    def __init__(self, bench: Bench, namespace: str) -> None:
        self.bench, self.namespace = bench, namespace
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def counter(self) -> int:
        body = self.bench.custom.get_namespaced_custom_object("trigger-operator.io", "v1alpha1", self.namespace,
                                                              "triggers", "js")
        return int((body.get("status") or {}).get("eventCounter") or 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.counter()
            if not self.seen or value != self.seen[-1][1]:
                self.seen.append((time.monotonic(), value))
            time.sleep(0.02)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def first_at_least(self, value: int) -> float | None:
        return next((t for t, v in self.seen if v >= value), None)


def run(bench: Bench, n: int = 20_000, seconds: float = 15, rate: float = 1000, senders: int = 64) -> dict[str, Any]:
    namespace = bench.namespace(NAMESPACE)
    token = service_account_token(bench.kube, namespace, "ingest")
    grant(bench.kube, namespace, "ingest", SEND)
    bench.custom.create_namespaced_custom_object("trigger-operator.io", "v1alpha1", namespace, "triggers", trigger_body(
        "js", namespace, {"eventType": EVENT_TYPE, "eventThreshold": 1_000_000_000}, trigger_type="event"))
    folder = bench.logs / "nats"
    folder.mkdir(parents=True, exist_ok=True)
    with nats_server(folder) as url:
        asyncio.run(_add_stream(url))
        subject = f"{PREFIX}.{namespace}"
        log(f"publishing {n} messages while the operator is stopped")
        asyncio.run(_publish(url, subject, 0, n))
        operator = bench.operator(namespace, env={"TRIGGER_OPERATOR_JETSTREAM_URL": url,
                                                  "TRIGGER_OPERATOR_JETSTREAM_STREAM": STREAM, **UNLIMITED})
        watch = _Watch(bench, namespace)
        with watch:
            operator.start()
            wait_until("the backlog stored", lambda: watch.counter() >= n, lambda: f"{watch.counter()}/{n}",
                       timeout=600)
            time.sleep(0.1)
            first, last = watch.first_at_least(1), watch.first_at_least(n)
            drain = n / (last - first) if first is not None and last is not None and last > first else None
            log(f"drained {n} messages: {rounded(drain, 1)}/s; now {rate:.0f} messages/s for {seconds:.0f}s")
            steady = int(rate * seconds)
            published = asyncio.run(_publish(url, subject, n, steady, per_second=rate))
            wait_until("the steady messages stored", lambda: watch.counter() >= n + steady,
                       lambda: f"{watch.counter() - n}/{steady}", timeout=300)
            time.sleep(0.1)
        latencies = [seen - sent for k, sent in enumerate(published)
                     if (seen := watch.first_at_least(n + k + 1)) is not None]
        log("HTTP: warming up (authentication cached, connections open), as the events scenario does")
        _, warm, _ = send(f"{operator.url}/v1/events", namespace, token, 1, senders, 2)
        log(f"HTTP: single CloudEvents from {senders} senders for {seconds:.0f}s")
        http_latencies, acknowledged, other = send(f"{operator.url}/v1/events", namespace, token, 1,
                                                   senders, seconds)
        http_total = sum(acknowledged.values())
        final = watch.counter()
    expected = n + steady + http_total + sum(warm.values())
    result: dict[str, Any] = {
        "n": n, "jetstream": {"drain_messages_per_s": rounded(drain, 1), "steady_rate_per_s": rate,
                              "steady_messages": steady, "publish_to_stored": summary(latencies)},
        "http": {"senders": senders, "seconds": seconds, "acknowledged": http_total,
                 "answers_other_than_202": dict(other), "events_per_s": rounded(http_total / seconds, 1),
                 "request_to_202": summary(http_latencies)},
        "counter": final, "expected": expected, "counter_matches": final == expected}
    stored = result["jetstream"]["publish_to_stored"]
    log(f"jetstream: drain {result['jetstream']['drain_messages_per_s']}/s, publish->stored p50 "
        f"{stored['p50_s']}s p99 {stored['p99_s']}s; "
        f"http: {result['http']['events_per_s']}/s, p50 {result['http']['request_to_202']['p50_s']}s p99 "
        f"{result['http']['request_to_202']['p99_s']}s; counter matches: {result['counter_matches']}")
    return result

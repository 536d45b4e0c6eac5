"""Scenario 4, events: N event Triggers (one event type each, a threshold never reached, so the
intake alone is measured) and many concurrent senders (asyncio + httpx, one connection each)
posting single structured CloudEvents, each with an id of its own, to the operator's
``/v1/events`` with a ServiceAccount token allowed to ``create triggers/events``, for a fixed time.
Durable events/s = events acknowledged with 202 (stored in status before the answer) per second;
acknowledgement latency = request sent to 202 received; then each Trigger's
``status.eventCounter`` must equal the events acknowledged for it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from tests.harness import grant, service_account_token

from bench.common import (
    OPERATOR_NAMESPACE,
    OUT,
    Bench,
    Phases,
    Usage,
    create_all,
    log,
    rounded,
    summary,
    trigger_body,
    wait_until,
)
from bench.profile import summarize_profile
from bench.scenarios.thundering import requests_delta
from trigger_operator.events import inbox

NAMESPACE = "be-0"
BATCH = 100
SEND = [{"apiGroups": ["trigger-operator.io"], "resources": ["triggers/events"], "verbs": ["create"]}]


async def send(url: str, namespace: str, token: str, n: int, senders: int, seconds: float, batch: int = 1
               ) -> tuple[list[float], Counter[int], Counter[str]]:
    """Senders post for ``seconds``: one structured CloudEvent per request, or with ``batch`` > 1
    that many in one batched-mode request (each for the next Trigger in turn). Every event has an
    id never used before (a reused id is acknowledged again but, rightly, not counted again)."""
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    acknowledged: Counter[int] = Counter()
    other: Counter[str] = Counter()
    kind = "application/cloudevents+json" if batch == 1 else "application/cloudevents-batch+json"
    headers = {"content-type": kind, "x-namespace": namespace,
               "authorization": f"Bearer {token}"}
    # A client per sender, each with its one connection: one client pooling 64 connections spends
    # most of its CPU looking over its pool per request (httpcore), so the sender, not the
    # operator, was the limit on a busy machine (py-spy of the bench: its loop 67% busy).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    deadline = time.monotonic() + seconds
    sequence = iter(range(10**9))

    async def sender(j: int) -> None:
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            while time.monotonic() < deadline:
                ks = [next(sequence) for _ in range(batch)]
                events = [{"specversion": "1.0", "id": f"bench-{run}-{k}", "source": "//bench",
                           "type": f"bench.e{k % n}", "count": 1} for k in ks]
                body = json.dumps(events[0] if batch == 1 else events)
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as error:
                    other[type(error).__name__] += 1
                    continue
                if response.status_code == 202:
                    latencies.append(time.perf_counter() - started)
                    for k in ks:
                        acknowledged[k % n] += 1
                else:
                    other[str(response.status_code)] += 1
    await asyncio.gather(*(sender(j) for j in range(senders)))
    return latencies, acknowledged, other


def run(bench: Bench, n: int = 100, senders: int = 64, seconds: float = 30, profile: bool = False,
        inbox: bool = False) -> dict[str, Any]:
    """``inbox``: with the shared event inbox on (TRIGGER_OPERATOR_EVENTS_INBOX=true), off by default."""
    namespace = bench.namespace(NAMESPACE)
    token = service_account_token(bench.kube, namespace, "ingest")
    grant(bench.kube, namespace, "ingest", SEND)
    log(f"creating {n} event Triggers")
    create_all(bench.kube, [("trigger-operator.io", "v1alpha1", namespace, "triggers", trigger_body(
        f"e{i:04d}", namespace, {"eventType": f"bench.e{i}", "eventThreshold": 1_000_000_000}, trigger_type="event"))
        for i in range(n)], what="event Triggers")
    operator = bench.operator(namespace, env={"TRIGGER_OPERATOR_EVENTS_INBOX": "true" if inbox else "false"}).start()
    assert operator.process is not None
    pid = operator.process.pid
    active = [0]

    def all_active() -> bool:
        items = bench.custom.list_namespaced_custom_object("trigger-operator.io", "v1alpha1", namespace, "triggers")
        active[0] = sum(1 for t in items["items"] if (t.get("status") or {}).get("phase") == "Active")
        return active[0] >= n
    wait_until("event Triggers Active", all_active, lambda: f"{active[0]}/{n}", timeout=300)
    url = f"{operator.url}/v1/events"
    log("warming up: one event to each Trigger (authentication cached, connections open)")
    asyncio.run(send(url, namespace, token, n, min(senders, n), 2))
    baseline = counters(bench, namespace)  # (after the inbox's folds, when it is on)
    phases = Phases(bench, operator).start()
    phases.begin("single")
    log(f"sending single CloudEvents from {senders} concurrent senders for {seconds:.0f}s")
    usage = Usage(operator.process.pid).begin()
    before = bench.metrics(operator)
    started = time.monotonic()
    latencies, acknowledged, other = asyncio.run(send(url, namespace, token, n, senders, seconds))
    elapsed = time.monotonic() - started
    used = usage.end()
    phases.end("single")
    requests = requests_delta(before, bench.metrics(operator))
    phases.begin("batched")
    log(f"then batches of {BATCH} events per request from {senders} senders for {seconds / 2:.0f}s")
    usage_b = Usage(operator.process.pid).begin()
    started_b = time.monotonic()
    latencies_b, acknowledged_b, other_b = asyncio.run(send(url, namespace, token, n, senders, seconds / 2, BATCH))
    elapsed_b = time.monotonic() - started_b
    used_b = usage_b.end()
    phases.end("batched")
    machine = phases.figures()
    acknowledged.update(acknowledged_b)
    profiled: dict[str, Any] | None = None
    if profile:
        log(f"profiling single CloudEvents from {senders} senders for {seconds:.0f}s (not measured)")
        profiled = {}

        async def profiled_phase() -> None:
            spy = asyncio.create_task(asyncio.to_thread(profile_events, pid, int(seconds)))
            _, acked, _ = await send(url, namespace, token, n, senders, seconds)
            acknowledged.update(acked)
            profiled.update(await spy)
        asyncio.run(profiled_phase())
    time.sleep(2)
    stored = counters(bench, namespace)
    wrong: dict[str, dict[str, int]] = {}
    for i in range(n):
        name = f"e{i:04d}"
        counted = stored.get(name, 0) - baseline.get(name, 0)
        if counted != acknowledged[i]:
            wrong[name] = {"acknowledged": acknowledged[i], "stored": counted}
    total = len(latencies)
    batched = {"batch": BATCH, "seconds": rounded(elapsed_b, 1), "acknowledged": sum(acknowledged_b.values()),
               "requests_acknowledged": len(latencies_b), "answers_other_than_202": dict(other_b),
               "events_per_s": rounded(sum(acknowledged_b.values()) / elapsed_b, 1),
               "request": {**summary(latencies_b), **used_b}}
    result: dict[str, Any] = {
        "n": n, "inbox": inbox, "senders": senders, "seconds": rounded(elapsed, 1), "acknowledged": total,
        "not_acknowledged": sum(other.values()), "answers_other_than_202": dict(other),
        "events_per_s": rounded(total / elapsed, 1), "counters_match": not wrong,
        "counter_mismatches": dict(list(wrong.items())[:10]), "trigger": {**summary(latencies), **used},
        "batched": batched, "requests": requests, "machine": machine, "profile": profiled}
    result["targets"] = {"at_least_2000_per_s": bool((result["events_per_s"] or 0) >= 2000),
                         "p99_ack_under_250ms": bool((result["trigger"]["p99_s"] or 1e9) < 0.25),
                         "counters_equal_sent": not wrong}
    log(f"events: {total} acknowledged in {elapsed:.1f}s ({result['events_per_s']}/s), other answers {dict(other)}, "
        f"p50 {result['trigger']['p50_s']}s p99 {result['trigger']['p99_s']}s; batched {batched['events_per_s']}/s; "
        f"counters match: {not wrong}")
    return result


def counters(bench: Bench, namespace: str) -> dict[str, int]:
    """The Triggers' counters; with the shared inbox on (docs/events.md), once it is folded empty:
    a 202 then means stored in the inbox, and the counter follows within a fold."""
    wait_until("the event inbox folded", lambda: not bench.kube.core.list_namespaced_config_map(
        OPERATOR_NAMESPACE, label_selector=inbox.LABEL).items, lambda: "objects left", timeout=60)
    items = bench.custom.list_namespaced_custom_object("trigger-operator.io", "v1alpha1", namespace, "triggers")
    return {t["metadata"]["name"]: int((t.get("status") or {}).get("eventCounter") or 0) for t in items["items"]}


def profile_events(pid: int, seconds: int) -> dict[str, Any]:
    """py-spy on the operator through a phase of single events after the measured ones (sampling
    cannot slow what was measured), 50 Hz: collapsed stacks of the thread holding the GIL
    (``--gil``) and of every thread, idle ones too (``--idle``: where requests wait)."""
    spy = shutil.which("py-spy") or str(OUT.parents[1] / ".venv" / "bin" / "py-spy")
    common = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50", "--threads",
              "--nonblocking", "--format", "raw"]
    files = {"gil": OUT / "events-profile.collapsed", "all": OUT / "events-profile-all.collapsed"}
    procs = [subprocess.Popen([*common, "--gil", "-o", str(files["gil"])], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE),
             subprocess.Popen([*common, "--idle", "-o", str(files["all"])], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)]
    errors = [p.communicate(timeout=seconds + 60)[1].decode(errors="replace")[-500:] for p in procs]
    if not files["gil"].exists():
        return {"error": errors[0]}
    (OUT / "events-profile.txt").write_text(summarize_profile(files["gil"].read_text()))
    return {"seconds": seconds, "files": ["events-profile.txt", "events-profile.collapsed",
                                          "events-profile-all.collapsed"]}

"""Scenario 4, events: N event Triggers (one event type each, a threshold never reached, so the
intake alone is measured) and many concurrent senders (a Go program, one connection each)
posting single structured CloudEvents, each with an id of its own, to the operator's
``/v1/events`` with a ServiceAccount token allowed to ``create triggers/events``, for a fixed time.
Durable events/s = events acknowledged with 202 (stored in status before the answer) per second;
acknowledgement latency = request sent to 202 received; then each Trigger's
``status.eventCounter`` must equal the events acknowledged for it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tests.harness import grant, service_account_token

from bench.common import (
    LOAD_PIDS,
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
# Every sender is one identity from one address, which the HTTP limits hold to 500 and 1,000
# requests a second by default (docs/rest-api.md): the bench measures the intake, not the limiter.
UNLIMITED = {f"TRIGGER_OPERATOR_HTTP_{name}": "1000000" for name in (
    "RATE_PER_CLIENT", "BURST_PER_CLIENT", "RATE_PER_ADDRESS", "BURST_PER_ADDRESS")}
BATCH = 100
SEND = [{"apiGroups": ["trigger-operator.io"], "resources": ["triggers/events"], "verbs": ["create"]}]


SENDER = Path(__file__).resolve().parents[1] / "sender"  # the Go senders (bench/sender/main.go)


def sender_binary() -> Path:
    """The Go senders, built once into the cache, keyed by their source and Go's version."""
    version = subprocess.run(["go", "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256("".join([(SENDER / "go.mod").read_text(), (SENDER / "main.go").read_text(), version])
                            .encode()).hexdigest()[:10]
    cache = Path(os.environ.get("TRIGGER_OPERATOR_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                                  Path.home() / ".cache") / "trigger-operator")
    binary = cache / "bin" / f"bench-sender-{digest}"
    if not binary.exists():
        log(f"building the Go event senders into {binary} (seconds, once)")
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-trimpath", "-o", f"{binary}.tmp", "."], cwd=SENDER, check=True,
                       env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"})
        os.replace(f"{binary}.tmp", binary)
    return binary


def send(url: str, namespace: str, token: str, n: int, senders: int, seconds: float, batch: int = 1
         ) -> tuple[list[float], Counter[int], Counter[str]]:
    """Senders post for ``seconds``: one structured CloudEvent per request, or with ``batch`` > 1
    that many in one batched-mode request (each for the next Trigger in turn). Every event has an
    id never used before (a reused id is acknowledged again but, rightly, not counted again).

    The senders are a Go program, each on one kept-alive connection: the asyncio + httpx senders
    before it used as much of the 2 cores as the operator (47% of a core at 460 events/s), and their
    own loop's delays counted as the operator's acknowledgement latency."""
    with tempfile.NamedTemporaryFile("w", suffix=".token") as token_file:
        token_file.write(token)
        token_file.flush()
        process = subprocess.Popen([str(sender_binary()), "-url", url, "-namespace", namespace, "-token-file",
                                    token_file.name, "-n", str(n), "-senders", str(senders), "-seconds",
                                    str(seconds), "-batch", str(batch), "-run", uuid.uuid4().hex[:8]],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        LOAD_PIDS.append(process.pid)  # its CPU is the phase's `senders`
        stdout, stderr = process.communicate(timeout=seconds + 120)
    if process.returncode != 0:
        raise RuntimeError(f"the event senders failed ({process.returncode}): {stderr[-2000:]}")
    out = json.loads(stdout)
    return (out["latencies"], Counter({int(k): v for k, v in out["acknowledged"].items()}),
            Counter(out["other"]))


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
    operator = bench.operator(namespace, env={"TRIGGER_OPERATOR_EVENTS_INBOX": "true" if inbox else "false",
                                              **UNLIMITED}).start()
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
    send(url, namespace, token, n, min(senders, n), 2)
    baseline = counters(bench, namespace)  # (after the inbox's folds, when it is on)
    phases = Phases(bench, operator).start()
    phases.begin("single")
    log(f"sending single CloudEvents from {senders} concurrent senders for {seconds:.0f}s")
    usage = Usage(operator.process.pid).begin()
    before = bench.metrics(operator)
    started = time.monotonic()
    latencies, acknowledged, other = send(url, namespace, token, n, senders, seconds)
    elapsed = time.monotonic() - started
    used = usage.end()
    phases.end("single")
    requests = requests_delta(before, bench.metrics(operator))
    phases.begin("batched")
    log(f"then batches of {BATCH} events per request from {senders} senders for {seconds / 2:.0f}s")
    usage_b = Usage(operator.process.pid).begin()
    started_b = time.monotonic()
    latencies_b, acknowledged_b, other_b = send(url, namespace, token, n, senders, seconds / 2, BATCH)
    elapsed_b = time.monotonic() - started_b
    used_b = usage_b.end()
    phases.end("batched")
    machine = phases.figures()
    acknowledged.update(acknowledged_b)
    profiled: dict[str, Any] | None = None
    if profile:
        profiled = {}
        stem = "events-inbox" if inbox else "events"
        for phase, batch, span in (("single", 1, seconds), ("batched", BATCH, seconds / 2)):
            log(f"profiling the {phase} phase again for {span:.0f}s (not measured)")
            into: dict[str, Any] = {}
            name = stem if batch == 1 else f"{stem}-batched"
            spy = threading.Thread(target=lambda into=into, span=span, name=name: into.update(
                profile_events(pid, int(span), name)))
            spy.start()
            _, acked, _ = send(url, namespace, token, n, senders, span, batch)
            acknowledged.update(acked)
            spy.join()
            profiled[phase] = into
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


def profile_events(pid: int, seconds: int, stem: str = "events") -> dict[str, Any]:
    """py-spy on the operator through a phase (single events, or batches) after the measured ones (sampling
    cannot slow what was measured), 50 Hz: collapsed stacks of the thread holding the GIL
    (``--gil``) and of every thread, idle ones too (``--idle``: where requests wait)."""
    spy = shutil.which("py-spy") or str(OUT.parents[1] / ".venv" / "bin" / "py-spy")
    common = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50", "--threads",
              "--nonblocking", "--format", "raw"]
    files = {"gil": OUT / f"{stem}-profile.collapsed", "all": OUT / f"{stem}-profile-all.collapsed"}
    procs = [subprocess.Popen([*common, "--gil", "-o", str(files["gil"])], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE),
             subprocess.Popen([*common, "--idle", "-o", str(files["all"])], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)]
    errors = [p.communicate(timeout=seconds + 60)[1].decode(errors="replace")[-500:] for p in procs]
    if not files["gil"].exists():
        return {"error": errors[0]}
    (OUT / f"{stem}-profile.txt").write_text(summarize_profile(files["gil"].read_text()))
    return {"seconds": seconds, "files": [f"{stem}-profile.txt", f"{stem}-profile.collapsed",
                                          f"{stem}-profile-all.collapsed"]}

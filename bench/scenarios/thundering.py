"""Scenario 1, thundering_minute: N Triggers and N CronJobs, all ``* * * * *``, the same Job
template, each side in namespaces of its own, on one control plane.

The CronJob side runs in a kube-controller-manager of its own with only the cronjob controller at
its default settings (the cluster's manager runs every other controller), so both sides' CPU and
memory are their own. A watcher thread with its own watch on Jobs records when each Job appears
(client-side arrival, the same clock for both sides); lateness is that minus the moment the Job
is for (our ``trigger-operator.io/scheduled-time`` annotation, CronJob's
``batch.kubernetes.io/cronjob-scheduled-timestamp``; the name suffixes as a fallback: our unix
seconds, CronJob's unix minutes). A moment of the measured minutes with no Job by the end of the
window (last moment + 60 s) is missed; a second Job (another uid) for the same moment is a
duplicate. Before all that, on the still empty control plane, the raw limit: a plain client with
32 threads creates N Jobs of the same template. After it all, the raw limit in the burst: the
operator stopped, the same plain client (on as many threads as the operator has workers) creates N
Jobs at the next minute, while the CronJobs fire and the Jobs of the minutes before still run,
seen by the same watch: what the control plane gives any client where the operator works.

With ``replicas`` R > 1 the Trigger side is the sharded mode: R operator processes and R shards
(README, "Scale out"), measured once each holds its shard; their CPU and requests are summed, their
memory is the largest one's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import localcluster
from bench import figures
from bench.common import (
    JOB_SPEC,
    OUT,
    RAW_BURST_NAMESPACE,
    TICKS_PER_S,
    Bench,
    CpuSampler,
    Usage,
    Watcher,
    control_plane_pids,
    create_all,
    log,
    parse_time,
    percentile,
    rounded,
    scheduler_defaults,
    scrape,
    sleep_until,
    summary,
    sustained_rate,
    trigger_body,
    wait_namespaces_gone,
    wait_until,
)
from bench.profile import summarize_profile
from trigger_operator.jobs.render import TriggerRef, render_job, scheduled_job_name
from trigger_operator.model.status import RunKind

SIDES = ("trigger", "cronjob")
PREFIX = {"trigger": "bt-", "cronjob": "bc-", "raw": "br-"}
CRON_SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"
OUR_SCHEDULED = "trigger-operator.io/scheduled-time"


@dataclass(frozen=True)
class Seen:
    side: str
    namespace: str
    owner: str
    moment: float
    uid: str
    arrival: float


class JobLog:
    """Every Job of either side, once, as the watch first reported it."""

    def __init__(self) -> None:
        self.seen: dict[str, Seen] = {}
        self.lock = threading.Lock()

    def on_event(self, kind: str, job: dict[str, Any], arrival: float) -> None:
        meta = job.get("metadata") or {}
        uid, namespace = meta.get("uid", ""), meta.get("namespace", "")
        if kind not in ("ADDED", "MODIFIED") or uid in self.seen:
            return
        side = next((s for s, p in PREFIX.items() if namespace.startswith(p)), None)
        if side is None:
            return
        name, annotations = meta.get("name", ""), meta.get("annotations") or {}
        stem, _, suffix = name.rpartition("-")
        if side == "raw":  # raw_in_burst's: one Job each (one owner for all), the moment in our annotation
            owner, moment = name, parse_time(annotations.get(OUR_SCHEDULED)) or 0.0
        elif side == "trigger":
            owner = (meta.get("labels") or {}).get("trigger-operator.io/trigger", stem)
            moment = parse_time(annotations.get(OUR_SCHEDULED)) or float(suffix)
        else:
            owner = next((r["name"] for r in meta.get("ownerReferences") or [] if r.get("kind") == "CronJob"), stem)
            moment = parse_time(annotations.get(CRON_SCHEDULED)) or float(suffix) * 60
        with self.lock:
            self.seen[uid] = Seen(side, namespace, owner, moment, uid, arrival)

    def of(self, side: str, moments: list[float]) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen.values() if s.side == side and s.moment in moments]

    def progress(self, moments: list[float]) -> str:
        parts = []
        for m in moments:
            if m <= time.time():
                parts.append(f"{time.strftime('%H:%M', time.localtime(m))}: "
                             + ", ".join(f"{side} {len(self.of(side, [m]))}" for side in SIDES))
        return "; ".join(parts) or "waiting for the first moment"


def namespaces_per_side(n: int) -> int:
    return 1 if n <= 100 else 4


def raw_limit(bench: Bench, n: int) -> dict[str, Any]:
    """How fast a plain client on 32 threads creates N Jobs of the template: with the responses left
    unparsed (the API server's own limit: ``raw_create_per_s``), then again with the typed client
    (``BatchV1Api``, each answer made into a V1Job, as most Python code does: ``raw_typed_create_per_s``,
    at most 1,000 Jobs: that limit is the client's CPU, not N)."""
    namespace = bench.namespace("bench-raw")

    def job(name: str) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": JOB_SPEC}
    log(f"raw limit: creating {n} Jobs with a plain client on 32 threads, responses unparsed")
    started = time.time()
    done = create_all(bench.kube, [("batch", "v1", namespace, "jobs", job(f"raw-{i:05d}")) for i in range(n)],
                      what="raw Jobs")
    elapsed = max(done) - started
    typed_n = min(n, 1000)
    log(f"raw limit: {n} Jobs in {elapsed:.1f}s; {typed_n} more with the typed client (BatchV1Api, V1Job answers)")
    batch, lock = bench.kube.batch, threading.Lock()
    typed: list[float] = []

    def create_typed(i: int) -> None:
        batch.create_namespaced_job(namespace, job(f"rawt-{i:05d}"))
        with lock:
            typed.append(time.time())
    typed_started = time.time()
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(create_typed, range(typed_n)))
    typed_elapsed = max(typed) - typed_started
    result = {"raw_create_per_s": rounded(sustained_rate(done), 1), "raw_elapsed_s": rounded(elapsed, 2),
              "raw_create_per_s_overall": rounded(n / elapsed, 1),
              "raw_typed_create_per_s": rounded(sustained_rate(typed), 1),
              "raw_typed_elapsed_s": rounded(typed_elapsed, 2)}
    log(f"raw limit: unparsed {result['raw_create_per_s']}/s sustained ({elapsed:.1f}s), typed "
        f"{result['raw_typed_create_per_s']}/s ({typed_elapsed:.1f}s); deleting them (and their pods)")
    bench.kube.core.delete_namespace(namespace)
    wait_namespaces_gone(bench.kube, [namespace], timeout=300)
    return result


def start_operators(bench: Bench, replicas: int) -> list[Any]:
    """One operator, or ``replicas`` of them in the sharded mode with a shard each, once each holds one."""
    glob = f"{PREFIX['trigger']}*"
    if replicas <= 1:
        log(f"starting the operator (watching {glob})")
        return [bench.operator(glob).start()]
    log(f"starting {replicas} operators in the sharded mode, {replicas} shards (watching {glob})")
    operators = [bench.operator(glob, name=f"operator-{i}", env={
        "TRIGGER_OPERATOR_LEADER_ENABLED": "true", "TRIGGER_OPERATOR_LEADER_SHARDS": str(replicas),
        "POD_NAME": f"operator-{i}"}).start() for i in range(replicas)]
    wait_until("every replica holding a shard", lambda: all(
        bench.metrics(op).get("trigger_operator_leading") == 1.0 for op in operators), lambda: "", timeout=120,
        every=2)
    return operators


def summed(samples: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for sample in samples:
        for key, value in sample.items():
            total[key] += value
    return dict(total)


def combined_usage(used: list[dict[str, float | None]]) -> dict[str, Any]:
    """Several operator processes as one side: CPU summed, memory of the largest (and the sum)."""
    if len(used) == 1:
        return used[0]

    def values(key: str) -> list[float]:
        return [v for u in used if isinstance(v := u.get(key), (int, float))]
    return {"cpu_s": rounded(sum(values("cpu_s")), 2), "cpu_pct_of_core": rounded(sum(values("cpu_pct_of_core")), 1),
            "window_s": used[0].get("window_s"), "peak_rss_mb": max(values("peak_rss_mb"), default=None),
            "rss_mb": rounded(sum(values("rss_mb")), 1), "replicas": len(used),
            "cpu_pct_of_core_each": [u.get("cpu_pct_of_core") for u in used]}


def run(bench: Bench, n: int, minutes: int = 2, profile: bool = False, replicas: int = 1) -> dict[str, Any]:
    raw = raw_limit(bench, n)
    log("starting the CronJob side: a kube-controller-manager with only --controllers=cronjob (defaults)")
    kcm = localcluster.start_controller_manager(bench.cluster, "kcm-cronjob", "cronjob")
    k = namespaces_per_side(n)
    spaces = {side: [bench.namespace(f"{PREFIX[side]}{i}") for i in range(k)] for side in SIDES}
    jobs = JobLog()
    watcher = Watcher(bench.kube, "batch", "v1", "jobs", jobs.on_event).start_and_wait()
    operators = start_operators(bench, replicas)
    pids = [op.process.pid for op in operators if op.process is not None]
    items: list[tuple[str, str, str, str, dict[str, Any]]] = []
    for i in range(n):
        t_ns, c_ns = spaces["trigger"][i % k], spaces["cronjob"][i % k]
        items.append(("trigger-operator.io", "v1alpha1", t_ns, "triggers", trigger_body(
            f"t{i:05d}", t_ns, {"cronExpression": "* * * * *"}, concurrencyPolicy="Allow",
            successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1)))
        items.append(("batch", "v1", c_ns, "cronjobs", {
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": f"c{i:05d}", "namespace": c_ns},
            "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Allow", "successfulJobsHistoryLimit": 1,
                     "failedJobsHistoryLimit": 1, "jobTemplate": {"spec": JOB_SPEC}}}))
    log(f"creating {n} Triggers in {k} namespace(s) and {n} CronJobs in {k} other(s)")
    create_all(bench.kube, items, what="Triggers and CronJobs")

    def scheduled() -> int:
        listing = bench.custom.list_cluster_custom_object("trigger-operator.io", "v1alpha1", "triggers")
        return sum(1 for t in listing["items"] if (t.get("status") or {}).get("nextScheduledAt"))
    count = [0]

    def all_scheduled() -> bool:
        count[0] = scheduled()
        return count[0] >= n
    wait_until("Triggers with a nextScheduledAt", all_scheduled, lambda: f"{count[0]}/{n}", timeout=600, every=10)

    first = math.ceil((time.time() + 8) / 60) * 60
    moments = [float(first + 60 * m) for m in range(minutes)]
    end = moments[-1] + 60
    log(f"measuring the {minutes} minute(s) from {time.strftime('%H:%M:%S', time.localtime(first))} "
        f"(window ends {time.strftime('%H:%M:%S', time.localtime(end))})")
    sampler = CpuSampler({**control_plane_pids(bench.cluster), "operator": pids, "bench": [os.getpid()]})
    sleep_until(first - 3, "first measured moment")
    sampler.start()
    served_before = scrape(bench)  # before the window: its few MB cost no burst
    sleep_until(first - 1, "first measured moment")
    ours, theirs = [Usage(pid).begin() for pid in pids], Usage(kcm).begin()
    before = summed([bench.metrics(op) for op in operators])
    sleep_until(end, "measured window", lambda: jobs.progress(moments), every=10)
    used = {"trigger": combined_usage([u.end() for u in ours]), "cronjob": theirs.end()}
    after = summed([bench.metrics(op) for op in operators])
    samples = sampler.stop()
    served_after = scrape(bench)
    since, until = (served_before or (first - 1, {}))[0], (served_after or (end, {}))[0]
    write_events = bench.operator_write_events(min(since, first - 1), max(until, end))
    writes: dict[str, int] = {}
    for at, key in write_events:
        if first - 1 <= at <= end:
            writes[key] = writes.get(key, 0) + 1
    writes = dict(sorted(writes.items(), key=lambda kv: -kv[1]))
    served: dict[str, Any] = {}
    if served_before and served_after:  # the operator's writes over the same span as the API server's figures
        served = {**figures.served(served_before[1], served_after[1], until - since),
                  "operator_writes_per_s": round(sum(1 for at, _ in write_events if since <= at <= until)
                                                 / (until - since), 1)}
    limit = machine_figures(samples, moments, first - 1, end, jobs,
                            [(at, key) for at, key in write_events if first - 1 <= at <= end], served)
    profiled: dict[str, Any] | None = None
    if profile:
        profiled = profile_minute(pids[0], end)
    in_burst = raw_in_burst(bench, n, operators, jobs)
    watcher.stop()
    out = results(n, minutes, moments, jobs, raw, used, writes, requests_delta(before, after), profiled)
    out["trigger"]["stages"] = stages(bench.job_creates(PREFIX["trigger"], first - 60), moments,
                                      lambda name: float(name.rpartition("-")[2]), jobs.of("trigger", moments))
    return {**out, **against_raw_in_burst(out, in_burst), "machine": limit, "scheduler_settings": scheduler_defaults()}


def raw_in_burst(bench: Bench, n: int, operators: list[Any], jobs: JobLog) -> dict[str, Any]:
    """The raw limit where the operator works: the operator stopped, at the next minute a plain
    client on as many threads as the operator has workers creates the N Jobs the operator would
    make of the template (`render_job`), while
    the CronJobs fire and the Jobs of the minutes before still run their pods (the Job controller,
    kwok and the scheduler busy with them, as in each measured burst). Seen by the same watch as
    both sides, so its lateness is measured as theirs; with the machine's cores over that burst.
    Against the raw limit on the empty control plane, this is what the rest of the cluster's work
    leaves any client; against the Trigger side, what the operator leaves on the table."""
    for operator in operators:
        operator.stop()
    moment = float(math.ceil((time.time() + 5) / 60) * 60)
    namespace = bench.namespace(RAW_BURST_NAMESPACE)  # PREFIX["raw"]: the JobLog's side "raw"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
    # The very Jobs the operator makes (render_job: our labels, annotations, finalizer, the owner
    # reference, the run's environment), owned by a Trigger of that namespace that nobody runs.
    owner = bench.custom.create_namespaced_custom_object(
        "trigger-operator.io", "v1alpha1", namespace, "triggers",
        trigger_body("rb", namespace, {"cronExpression": "0 0 1 1 *"}))["metadata"]["uid"]
    ref = TriggerRef(namespace, "rb", owner, "cluster", {})
    at = dt.datetime.fromtimestamp(moment, dt.UTC)
    items = [("batch", "v1", namespace, "jobs", render_job(
        ref, name=scheduled_job_name(f"t{i:05d}", at), kind=RunKind.SCHEDULED, scheduled_time=at,
        template={"spec": JOB_SPEC})) for i in range(n)]
    threads = int(scheduler_defaults()["TRIGGER_OPERATOR_SCHEDULER_WORKERS"])
    sampler = CpuSampler({**control_plane_pids(bench.cluster), "bench": [os.getpid()]})
    sleep_until(moment - 2, "the raw client's minute")
    sampler.start()
    sleep_until(moment, "the raw client's minute")
    log(f"raw limit in the burst: {n} Jobs at {stamp} with a plain client on {threads} threads")
    create_all(bench.kube, items, threads=threads, what="raw Jobs in the burst")
    wait_until("the raw Jobs seen by the watch", lambda: len(jobs.of("raw", [moment])) >= n,
               lambda: f"{len(jobs.of('raw', [moment]))}/{n}", timeout=300, every=1)
    seen = jobs.of("raw", [moment])
    late = [s.arrival - moment for s in seen]
    last = max(s.arrival for s in seen)
    samples = sampler.stop()
    return {"threads": threads, "moment": stamp, "jobs": len(seen), **summary(late),
            "create_per_s": rounded(sustained_rate([s.arrival for s in seen]), 1),
            "burst": figures.cores(samples, figures.burst_windows([moment], {moment: last}), TICKS_PER_S),
            "stages": stages(bench.job_creates(RAW_BURST_NAMESPACE, moment - 60), [moment], lambda _: moment, seen)}


def stages(creates: dict[tuple[str, str], tuple[float, float]], moments: list[float],
           moment_of: Callable[[str], float], seen: list[Seen]) -> dict[str, Any]:
    """Where a Job's lateness goes, after its moment: until the API server received its create,
    until it answered (both from its audit log), until the watch saw the Job (``seen``, the
    lateness measured). The API server's answer to its Job seen is the watch's delivery, the
    same for every client; the moment to its create received is the client's own."""
    received, answered = [], []
    for (_, name), (got, done) in creates.items():
        with contextlib.suppress(ValueError):
            moment = moment_of(name)
            if moment in moments:
                received.append(got - moment)
                answered.append(done - moment)
    return {"received": summary(received), "answered": summary(answered),
            "seen": summary([s.arrival - s.moment for s in seen]), "creates": len(received)}


def against_raw_in_burst(out: dict[str, Any], in_burst: dict[str, Any]) -> dict[str, Any]:
    """The Trigger side against the raw client in the burst: the same two targets as against the
    empty control plane's raw limit (`against_raw`), beside them."""
    rate, ours = in_burst.get("create_per_s"), out["trigger_create_per_s"]
    ratio = rounded(ours / rate, 3) if ours and rate else None
    return {"raw_in_burst": in_burst, "trigger_over_raw_in_burst": ratio,
            "targets_in_burst": against_raw(out["n"], out["trigger"]["p99_with_misses_s"], ratio, rate,
                                            "raw in the burst")}


def against_raw(n: int, p99: float | None, ratio: float | None, rate: float | None, of: str) -> dict[str, Any]:
    """Issue 21's two targets against a raw create ``rate`` (``of`` names it): p99 within 1.25 x N /
    rate, and the Trigger side's creates (``ratio`` of that rate) at least 80% of it."""
    limit = 1.25 * n / rate if rate else math.nan
    return {f"p99_limit_s (1.25 N / {of})": rounded(limit, 2),
            "p99_within_limit": bool(p99 is not None and p99 <= limit),
            "create_at_least_80pct_of_raw": bool(ratio is not None and ratio >= 0.8)}


def machine_figures(samples: list[figures.Sample], moments: list[float], since: float, until: float, jobs: JobLog,
                    write_events: list[tuple[float, str]], served: dict[str, Any]) -> dict[str, Any]:
    """Where the limit outside the operator is: cores busy on the machine and each process's share,
    over the measured window and over the bursts (each moment to its Trigger side's last Job, 5 to
    60 s: figures.burst_windows), what the API server served from every client (its own
    apiserver_request_total, ``served``) against the operator's audited writes, and those writes in 2 s
    buckets after each moment."""
    last_job = {m: max((s.arrival for s in jobs.of("trigger", [m])), default=m + 60) for m in moments}
    bursts = figures.burst_windows(moments, last_job)
    timeline = figures.writes_timeline(write_events, moments)
    return {"cores": os.cpu_count(), "window": figures.cores(samples, [(since, until)], TICKS_PER_S),
            "bursts": figures.cores(samples, bursts, TICKS_PER_S),
            "burst_s": [round(b - a, 1) for a, b in bursts], "apiserver": served,
            "writes_timeline": {time.strftime("%H:%M", time.gmtime(m)): buckets for m, buckets in timeline.items()}}


def requests_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The operator's own request metrics over the window, when it has them:
    trigger_operator_kube_requests_total by series, and the mean seconds of each kind of call
    (``mean_s{verb,resource}``, from trigger_operator_kube_request_duration_seconds)."""
    out = {k: v - before.get(k, 0.0) for k, v in after.items()
           if k.startswith("trigger_operator_kube_requests_total") and v - before.get(k, 0.0) > 0}
    prefix = "trigger_operator_kube_request_duration_seconds"
    for key, total in after.items():
        if key.startswith(f"{prefix}_sum"):
            labels = key[len(f"{prefix}_sum"):]
            count = after.get(f"{prefix}_count{labels}", 0.0) - before.get(f"{prefix}_count{labels}", 0.0)
            if count > 0:
                out[f"mean_s{labels}"] = round((total - before.get(key, 0.0)) / count, 4)
    return out


def profile_minute(pid: int, moment: float, seconds: int = 45) -> dict[str, Any]:
    """py-spy on the operator through the burst of the next minute (after the measured ones, so
    sampling cannot slow what was measured), 50 Hz each: a flame graph of every thread that is not
    idle, and collapsed stacks of the thread holding the GIL only (``--gil``: the Python work that
    the event loop and the 32 client threads take turns at)."""
    spy = shutil.which("py-spy") or str(OUT.parents[1] / ".venv" / "bin" / "py-spy")
    sleep_until(moment - 0.5, "profiled minute")
    log(f"profiling the operator (pid {pid}) with py-spy for {seconds}s of the next burst")
    common = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "50", "--threads",
              "--nonblocking"]
    collapsed, svg = OUT / "profile.collapsed", OUT / "profile.svg"
    procs = [subprocess.Popen([*common, "--gil", "--format", "raw", "-o", str(collapsed)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE),
             subprocess.Popen([*common, "-o", str(svg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    errors = [p.communicate(timeout=seconds + 60)[1].decode(errors="replace")[-500:] for p in procs]
    if not collapsed.exists():
        log(f"py-spy wrote nothing: {errors[0]}")
        return {"error": errors[0]}
    text = summarize_profile(collapsed.read_text())
    (OUT / "profile.txt").write_text(text)
    log("profile written to bench/out/profile.txt, profile.svg and profile.collapsed")
    return {"seconds": seconds, "files": ["profile.txt", "profile.svg", "profile.collapsed"]}


def results(n: int, minutes: int, moments: list[float], jobs: JobLog, raw: dict[str, Any],
            used: dict[str, dict[str, float | None]], writes: dict[str, int], requests: dict[str, float],
            profiled: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "minutes": minutes, "replicas": used["trigger"].get("replicas", 1),
                           "moments": [time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(m)) for m in moments], **raw, "_late": {}}
    for side in SIDES:
        groups: dict[tuple[str, str, float], list[Seen]] = defaultdict(list)
        for s in jobs.of(side, moments):
            groups[(s.namespace, s.owner, s.moment)].append(s)
        late = [min(g, key=lambda s: s.arrival).arrival - key[2] for key, g in groups.items()]
        out["_late"][side] = [round(x, 3) for x in late]
        expected = n * minutes
        missed = max(0, expected - len(groups))
        rates = [sustained_rate([s.arrival for s in jobs.of(side, [m])]) for m in moments]
        rates = [r for r in rates if not math.isnan(r)]
        out[side] = {**summary(late), "missed": missed,
                     "duplicated": sum(len(g) - 1 for g in groups.values()), "jobs": len(groups),
                     "expected": expected,
                     "p99_with_misses_s": rounded(percentile(late + [math.inf] * missed, 0.99)),
                     "create_per_s": rounded(sum(rates) / len(rates) if rates else math.nan, 1),
                     "per_moment": [{"moment": time.strftime("%H:%M", time.gmtime(m)),
                                     "jobs": len({(s.namespace, s.owner) for s in jobs.of(side, [m])}),
                                     **summary([s.arrival - m for s in jobs.of(side, [m])])} for m in moments],
                     **used[side]}
    out["trigger_create_per_s"] = out["trigger"]["create_per_s"]
    raw_rate = out.get("raw_create_per_s")
    ours = out["trigger_create_per_s"]
    out["trigger_over_raw"] = rounded(ours / raw_rate, 3) if ours and raw_rate else None
    typed_rate = out.get("raw_typed_create_per_s")
    out["trigger_over_raw_typed"] = rounded(ours / typed_rate, 3) if ours and typed_rate else None
    total_writes = sum(writes.values())
    out["trigger"]["api_writes"] = total_writes
    out["trigger"]["api_writes_by"] = writes
    out["trigger"]["api_writes_per_job"] = rounded(total_writes / out["trigger"]["jobs"], 2) \
        if out["trigger"]["jobs"] else None
    if requests:
        out["trigger"]["kube_requests"] = requests
    p99 = out["trigger"]["p99_with_misses_s"]
    out["targets"] = {
        **against_raw(n, p99, out["trigger_over_raw"], raw_rate, "raw"),
        "p99_below_cronjob": bool(p99 is not None and (out["cronjob"]["p99_with_misses_s"] is None
                                                         or p99 < out["cronjob"]["p99_with_misses_s"])),
        "no_misses_no_duplicates": out["trigger"]["missed"] == 0 and out["trigger"]["duplicated"] == 0,
    }
    if profiled is not None:
        out["profile"] = profiled
    return out

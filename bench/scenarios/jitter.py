"""Scenario jitter (issue 22): N Triggers ``* * * * *`` without jitter, then N with
``jitterSeconds: 30``, on one control plane in one run, with one operator.

Fairness: the two populations are measured IN TURN, never at once, so that each phase's API server
peak is its own (run together, the plain burst at :00 would land on the jittered spread and no peak
could be told apart). Each phase has the same N, Job template, history limits and namespaces
(``bt-plain-*``, ``bt-jitter-*``, as many as thundering_minute's), the same operator process and the
same measured window (the ``minutes`` whole minutes from the first boundary after all N are planned,
to the last one + 60 s; a jittered Job's offset is below 30 s, so it falls in its nominal minute).
Between the phases the plain namespaces are deleted and gone, so the jittered phase runs with N
Triggers on the control plane too. The plain phase runs first: the operator is then the newer
process, which if anything favours the plain side.

Jobs are seen by thundering_minute's independent watch (``JobLog``); lateness is arrival minus the
Job's ``trigger-operator.io/scheduled-time`` (the SHIFTED moment); a Job whose shift is not the one
``timemath.calendar.jitter_offset`` gives its Trigger is counted ``wrong_offset``. The spread is each
Job's arrival after its minute's :00 (first..last, and per 5 s). The API server's request rate comes
from its audit log with every request of every user logged (``AUDIT_ALL_POLICY``): exact receipt
times, one line per request, counted in 1 s buckets (all verbs; a watch counted when it starts).
A scrape of ``apiserver_request_total`` every second was the other way: a multi-megabyte answer
per second on a 2-core machine, itself a request, with buckets as uneven as the scrapes.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import time
from collections import Counter, defaultdict
from typing import Any

from bench.common import (
    GROUP,
    OPERATOR_USER,
    VERSION,
    Bench,
    Usage,
    Watcher,
    create_all,
    log,
    per_second,
    rounded,
    sleep_until,
    summary,
    trigger_body,
    wait_namespaces_gone,
    wait_scheduled,
)
from bench.scenarios.thundering import PREFIX, JobLog, Seen, namespaces_per_side, start_operators
from trigger_operator.timemath.calendar import jitter_offset

JITTER_SECONDS = 30
PHASES = {"plain": 0, "jitter": JITTER_SECONDS}  # phase -> jitterSeconds, measured in this order
BUCKET_S = 5  # the spread's histogram: Jobs per 5 s after :00


def namespace_prefix(phase: str) -> str:
    return f"{PREFIX['trigger']}{phase}-"  # bt-: thundering's JobLog takes them as the Trigger side


def run(bench: Bench, n: int, minutes: int = 2) -> dict[str, Any]:
    jobs = JobLog()
    watcher = Watcher(bench.kube, "batch", "v1", "jobs", jobs.on_event).start_and_wait()
    operator = start_operators(bench, 1)[0]
    assert operator.process is not None
    out: dict[str, Any] = {"n": n, "minutes": minutes, "jitter_seconds": JITTER_SECONDS,
                           "order": list(PHASES)}
    for phase, jitter in PHASES.items():
        namespaces = [bench.namespace(f"{namespace_prefix(phase)}{i}") for i in range(namespaces_per_side(n))]
        out[phase] = measure(bench, phase, jitter, n, minutes, namespaces, jobs, operator.process.pid)
        if phase != list(PHASES)[-1]:
            log(f"{phase}: deleting its namespaces (Triggers, Jobs, pods) before the next phase")
            for namespace in namespaces:
                bench.kube.core.delete_namespace(namespace)
            wait_namespaces_gone(bench.kube, namespaces, timeout=600)
    watcher.stop()
    plain, jittered = out["plain"], out["jitter"]
    out["targets"] = {
        "no_misses_no_duplicates": all(out[p]["missed"] == 0 and out[p]["duplicated"] == 0 for p in PHASES),
        "jitter_offsets_right": jittered["wrong_offset"] == 0,
        # Spread over the 30 s: the arrivals after :00 reach at least the last 5 s of the bound.
        "jitter_spread_over_window": bool(jittered["last_after_00_s"] is not None
                                          and jittered["last_after_00_s"] >= JITTER_SECONDS - BUCKET_S),
        "api_peak_lower_with_jitter": bool(jittered["api_peak_rps"] < plain["api_peak_rps"]),
    }
    return out


def measure(bench: Bench, phase: str, jitter: int, n: int, minutes: int, namespaces: list[str], jobs: JobLog,
            pid: int) -> dict[str, Any]:
    """One phase: N Triggers created, planned, then ``minutes`` measured minutes."""
    schedule: dict[str, Any] = {"cronExpression": "* * * * *", **({"jitterSeconds": jitter} if jitter else {})}
    k = len(namespaces)
    items = [(GROUP, VERSION, namespaces[i % k], "triggers", trigger_body(
        f"t{i:05d}", namespaces[i % k], schedule, concurrencyPolicy="Allow", successfulJobsHistoryLimit=1,
        failedJobsHistoryLimit=1)) for i in range(n)]
    log(f"{phase}: creating {n} Triggers ({schedule}) in {k} namespace(s)")
    create_all(bench.kube, items, what=f"{phase} Triggers")
    wait_scheduled(bench, namespaces, n)
    first = math.ceil((time.time() + 8) / 60) * 60
    moments = [float(first + 60 * m) for m in range(minutes)]
    end = moments[-1] + 60
    log(f"{phase}: measuring the {minutes} minute(s) from {time.strftime('%H:%M:%S', time.localtime(first))}")
    sleep_until(first - 1, f"{phase}: first measured moment")
    usage = Usage(pid).begin()
    sleep_until(end, f"{phase}: measured window", lambda: f"{len(of_phase(jobs, phase, moments))} Jobs", every=10)
    used = usage.end()
    time.sleep(2)  # the audit log's last lines of the window
    requests = bench.requests(first, end)
    writes = bench.operator_writes(first, end)
    return phase_results(phase, jitter, n, moments, of_phase(jobs, phase, moments), requests, used, writes)


def minute_of(moment: float) -> float:
    return math.floor(moment / 60) * 60


def of_phase(jobs: JobLog, phase: str, moments: list[float]) -> list[Seen]:
    """The phase's Jobs whose nominal minute (the shifted moment less its offset, under 60 s) is measured."""
    with jobs.lock:
        return [s for s in jobs.seen.values()
                if s.namespace.startswith(namespace_prefix(phase)) and minute_of(s.moment) in moments]


def phase_results(phase: str, jitter: int, n: int, moments: list[float], seen: list[Seen],
                  requests: list[tuple[float, str]], used: dict[str, float | None],
                  writes: dict[str, int]) -> dict[str, Any]:
    groups: dict[tuple[str, str, float], list[Seen]] = defaultdict(list)
    for s in seen:
        groups[(s.namespace, s.owner, minute_of(s.moment))].append(s)
    firsts = [min(g, key=lambda s: s.arrival) for g in groups.values()]
    late = [s.arrival - s.moment for s in firsts]
    after = [s.arrival - minute_of(s.moment) for s in firsts]
    expected = n * len(moments)
    wrong = sum(1 for s in seen
                if s.moment - minute_of(s.moment) != jitter_offset(s.namespace, s.owner, jitter).total_seconds())
    histogram = Counter(min(int(a // BUCKET_S) * BUCKET_S, 60) for a in after)
    since, until = moments[0], moments[-1] + 60
    everyone = per_second([at for at, _ in requests], since, until)
    operator = per_second([at for at, user in requests if user == OPERATOR_USER], since, until)
    peak = max(range(len(everyone)), key=everyone.__getitem__) if everyone else 0
    top = Counter(user for at, user in requests if int(at - since) == peak).most_common(5)
    # Requests per second in each 5 s of the minute, over the measured minutes: the load's shape.
    shape = [sum(everyone[s] for s in range(len(everyone)) if s % 60 // BUCKET_S == b)
             / (BUCKET_S * len(moments)) for b in range(60 // BUCKET_S)]
    return {
        "jitter_seconds": jitter, "jobs": len(groups), "expected": expected,
        "missed": max(0, expected - len(groups)), "duplicated": len(seen) - len(groups), "wrong_offset": wrong,
        **summary(late),
        "first_after_00_s": rounded(min(after, default=math.nan), 2),
        "last_after_00_s": rounded(max(after, default=math.nan), 2),
        "jobs_per_5s_after_00": {f"{b}-{b + BUCKET_S}" if b < 60 else "60+": histogram.get(b, 0)
                                 for b in range(0, 65, BUCKET_S)},
        "api_peak_rps": everyone[peak] if everyone else 0,
        "api_peak_at": dt.datetime.fromtimestamp(since + peak, dt.UTC).strftime("%H:%M:%S"),
        "api_peak_top_users": dict(top),
        "api_mean_rps": rounded(statistics.fmean(everyone) if everyone else math.nan, 1),
        "api_median_rps": rounded(statistics.median(everyone) if everyone else math.nan, 1),
        "api_rps_per_5s_after_00": [round(x, 1) for x in shape],
        "operator_peak_rps": max(operator, default=0),
        "operator_mean_rps": rounded(statistics.fmean(operator) if operator else math.nan, 1),
        "api_writes": sum(writes.values()), "api_writes_by": writes,
        "moments": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(m)) for m in moments],
        **used,
    }

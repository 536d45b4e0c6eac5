"""The pure arithmetic behind the bench's machine and API server figures (issue 21: where is the
limit outside the operator?): /proc readings into cores, the API server's Prometheus text into
requests per second, the operator's audited writes into time buckets. No I/O: the readings come in
as text or numbers, so tests/unit/test_bench_figures.py checks them on made-up samples."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# /proc/<pid>/stat and /proc/stat count in clock ticks; 100 a second on every Linux we run on
# (os.sysconf("SC_CLK_TCK")), passed in so that this stays pure.
MACHINE = "machine"  # the whole machine's busy ticks in a Sample
OTHER = "other"  # busy, but none of the processes the bench knows: other work on the machine
# pids.json names (hack/localcluster.py) -> the short names the report uses.
SHORT_NAMES = {"kube-apiserver": "apiserver", "kube-controller-manager": "kcm", "kube-scheduler": "scheduler",
               "kcm-cronjob": "kcm-cronjob"}
# The API server's verb label (apiserver_request_total) for each write; reads are GET, LIST, WATCH.
WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "APPLY": "apply", "DELETE": "delete",
               "DELETECOLLECTION": "deletecollection"}


def machine_busy_ticks(proc_stat: str) -> tuple[int, int]:
    """(busy, total) ticks of all CPUs from /proc/stat's first ``cpu`` line: total = user + nice +
    system + idle + iowait + irq + softirq + steal (guest time is already inside user and nice),
    busy = total - idle - iowait (waiting on a disk is not work)."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:9]]
            values += [0] * (8 - len(values))  # old kernels stop before steal
            total = sum(values)
            return total - values[3] - values[4], total
    raise ValueError("/proc/stat has no 'cpu ' line")


def process_ticks(pid_stat: str) -> int:
    """utime + stime of /proc/<pid>/stat (every thread of the process), in ticks. The command name
    in parentheses may hold spaces, so fields are counted after its last ')'."""
    fields = pid_stat[pid_stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


@dataclass(frozen=True)
class Sample:
    """One reading: unix seconds and cumulative ticks by name (MACHINE: busy ticks of all CPUs)."""

    at: float
    ticks: Mapping[str, int]


def cores(samples: Sequence[Sample], windows: Iterable[tuple[float, float]], ticks_per_s: float,
          ) -> dict[str, float | None]:
    """Mean cores busy (1.0 = one core fully busy) of each name over ``windows`` taken together:
    in each window, from the last sample at or before its start (else the first after) to the first
    at or after its end (else the last before), the ticks spent over the seconds between those two
    samples; the windows' CPU seconds and lengths are summed. ``OTHER`` is the machine's busy
    cores less every named process's (floored at 0: readings are not taken at the same instant). A
    name absent from either sample of a window (a process not yet started) counts no ticks there.
    None for every name when no window has two distinct samples."""
    ordered = sorted(samples, key=lambda s: s.at)
    spent: dict[str, float] = {}
    seconds = 0.0
    for start, end in windows:
        before = [s for s in ordered if s.at <= start] or [s for s in ordered if s.at > start][:1]
        after = [s for s in ordered if s.at >= end][:1] or [s for s in ordered if s.at < end][-1:]
        if not before or not after or after[0].at <= before[-1].at:
            continue
        first, last = before[-1], after[0]
        seconds += last.at - first.at
        for name, value in last.ticks.items():
            if name in first.ticks:
                spent[name] = spent.get(name, 0.0) + max(0, value - first.ticks[name]) / ticks_per_s
            else:
                spent.setdefault(name, 0.0)
    if seconds <= 0:
        return {}
    out: dict[str, float | None] = {name: round(cpu / seconds, 3) for name, cpu in spent.items()}
    if MACHINE in spent:
        named = sum(cpu for name, cpu in spent.items() if name != MACHINE)
        out[OTHER] = round(max(0.0, spent[MACHINE] - named) / seconds, 3)
    return out


def burst_windows(moments: Sequence[float], last_job_at: Mapping[float, float], minimum: float = 5.0,
                  maximum: float = 60.0) -> list[tuple[float, float]]:
    """Each moment's burst: from the moment to when the Trigger side's last Job for it was seen,
    at least ``minimum`` s (a burst that quick is mostly ramp) and at most ``maximum`` (the next
    moment); ``maximum`` when none was seen."""
    return [(m, m + min(maximum, max(minimum, last_job_at.get(m, m + maximum) - m))) for m in moments]


# --- the API server's /metrics ---------------------------------------------------------------------

_SERIES = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def request_counts(metrics_text: str) -> dict[tuple[str, str], float]:
    """``apiserver_request_total`` of Prometheus text, summed by (verb, resource[/subresource]) over
    codes, groups, versions and scopes. A request that is not for a resource (``/metrics``,
    ``/healthz``) has resource ``-``."""
    out: dict[tuple[str, str], float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total"):
            continue
        match = _SERIES.match(line)
        if not match or match["name"] != "apiserver_request_total":
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        resource = labels.get("resource") or "-"
        if labels.get("subresource"):
            resource += f"/{labels['subresource']}"
        key = (labels.get("verb", "?"), resource)
        try:
            out[key] = out.get(key, 0.0) + float(match["value"])
        except ValueError:
            continue
    return out


def served(before: Mapping[tuple[str, str], float], after: Mapping[tuple[str, str], float], seconds: float,
           top: int = 8) -> dict[str, Any]:
    """What the API server served between two scrapes of ``request_counts``, per second:
    ``req_per_s`` in all, ``by_verb``, ``writes_per_s`` and the ``top_writes`` (``create jobs``, as
    the audit log's keys), the ``top_resources`` of every verb. A counter that went down (the API
    server restarted) counts from zero."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, not {seconds}")
    delta: dict[tuple[str, str], float] = {}
    for key, value in after.items():
        was = before.get(key, 0.0)
        change = value - was if value >= was else value
        if change > 0:
            delta[key] = change
    by_verb: dict[str, float] = {}
    by_resource: dict[str, float] = {}
    writes: dict[str, float] = {}
    for (verb, resource), count in delta.items():
        by_verb[verb] = by_verb.get(verb, 0.0) + count
        by_resource[resource] = by_resource.get(resource, 0.0) + count
        if verb in WRITE_VERBS:
            write = f"{WRITE_VERBS[verb]} {resource}"
            writes[write] = writes.get(write, 0.0) + count

    def rates(counts: Mapping[str, float], limit: int | None = None) -> dict[str, float]:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return {k: round(v / seconds, 1) for k, v in ranked}
    return {"window_s": round(seconds, 1), "requests": int(sum(delta.values())),
            "req_per_s": round(sum(delta.values()) / seconds, 1), "by_verb": rates(by_verb),
            "writes_per_s": round(sum(writes.values()) / seconds, 1), "top_writes": rates(writes, top),
            "top_resources": rates(by_resource, top)}


# --- the operator's writes over time ---------------------------------------------------------------

def writes_timeline(writes: Iterable[tuple[float, str]], moments: Sequence[float], bucket: float = 2.0,
                    span: float = 60.0) -> dict[float, dict[str, dict[str, int]]]:
    """The operator's writes (received unix seconds, ``verb resource``) after each moment, in
    ``bucket``-second buckets keyed ``"0-2"``, ``"2-4"``, ... up to ``span`` (a write belongs to the
    latest moment at or before it, within ``span``); empty buckets left out."""
    edges = math.ceil(span / bucket)
    ordered = sorted(moments)
    out: dict[float, dict[str, dict[str, int]]] = {m: {} for m in ordered}
    for at, key in writes:
        moment = next((m for m in reversed(ordered) if m <= at), None)
        if moment is None or at - moment >= span:
            continue
        index = min(edges - 1, int((at - moment) // bucket))
        label = f"{index * bucket:g}-{(index + 1) * bucket:g}"
        counts = out[moment].setdefault(label, {})
        counts[key] = counts.get(key, 0) + 1
    return {m: dict(sorted(b.items(), key=lambda kv: float(kv[0].split("-")[0]))) for m, b in out.items()}


def cpu_line(figures: Mapping[str, float | None], cpus: int | None) -> str:
    """``machine 1.96 of 2 cores busy: apiserver 0.92, etcd 0.31, ...`` (largest first, ``other``
    last: work on the machine that is none of the bench's processes)."""
    shares = sorted(((k, v) for k, v in figures.items() if k not in (MACHINE, OTHER) and v is not None),
                    key=lambda kv: -kv[1])
    other = figures.get(OTHER)
    if other is not None:
        shares.append((OTHER, other))
    busy = figures.get(MACHINE)
    head = f"machine {busy:.2f} of {cpus or '?'} cores busy" if busy is not None else "machine ? cores busy"
    return head + ": " + ", ".join(f"{k} {v:.2f}" for k, v in shares)


# --- a scenario's phases (events, conditions) --------------------------------------------------------

OPERATOR_REQUESTS = "trigger_operator_kube_requests_total"


def operator_requests(before: Mapping[str, float], after: Mapping[str, float], seconds: float,
                      top: int = 8) -> dict[str, Any]:
    """The operator's own count of its API calls (``trigger_operator_kube_requests_total`` of its
    /metrics, series text -> value, summed over codes) between two scrapes, per second: ``req_per_s``,
    ``writes_per_s`` (create, update, patch, delete) and the ``top`` calls by ``verb resource`` (the
    audit log's names: ``patch triggers/status``). kopf's own watches and patches are not in it."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, not {seconds}")
    writes = set(WRITE_VERBS.values())
    calls: dict[str, float] = {}
    for series, value in after.items():
        name, _, labels = series.partition("{")
        if name != OPERATOR_REQUESTS:
            continue
        change = value - before.get(series, 0.0)
        if change <= 0:
            continue
        found = dict(_LABEL.findall(labels))
        key = f"{found.get('verb', '?')} {found.get('resource', '?')}"
        calls[key] = calls.get(key, 0.0) + change
    ranked = sorted(calls.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {"req_per_s": round(sum(calls.values()) / seconds, 1),
            "writes_per_s": round(sum(v for k, v in calls.items() if k.split(" ")[0] in writes) / seconds, 1),
            "top": {k: round(v / seconds, 1) for k, v in ranked}}


def phase_line(label: str, phase: Mapping[str, Any], cpus: int | None) -> str:
    """One phase in one line of results.md: its cores (``cpu_line``), then what the API server
    served (requests/s by verb, top resources) against the operator's own requests/s."""
    parts = [f"{label} ({phase.get('window_s', '?')} s): "
             + (cpu_line(phase["cpu"], cpus) if phase.get("cpu") else "machine ? cores busy")]
    served, ours = phase.get("apiserver") or {}, phase.get("operator") or {}
    if served:
        parts.append(f"API server {served.get('req_per_s')} req/s ("
                     + ", ".join(f"{k} {v}" for k, v in (served.get("by_verb") or {}).items()) + "; top "
                     + ", ".join(f"{k} {v}" for k, v in list((served.get("top_resources") or {}).items())[:4])
                     + ")")
    if ours:
        parts.append(f"the operator's own {ours.get('req_per_s')} req/s (writes {ours.get('writes_per_s')}/s: "
                     + ", ".join(f"{k} {v}" for k, v in list((ours.get("top") or {}).items())[:4]) + ")")
    return "; ".join(parts)

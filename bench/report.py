"""results.json -> the table (results.md, also printed) and the plot (results.png)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.figures import cpu_line, phase_line


def _f(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _by_kind(results: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(key, s) for key, s in results["scenarios"].items() if key.split("@")[0] == kind]
    return sorted(found, key=lambda kv: kv[1].get("n", 0))


def markdown(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    dates = sorted(str(s.get("date") or results.get("date", "?")) for s in results["scenarios"].values())
    commits = sorted({str(s.get("commit") or "?").split(" ")[0] for s in results["scenarios"].values()})
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    lines = [f"Measured {span} on {machine.get('cpus', '?')} x {machine.get('cpu_model', '?')}, "
             f"{machine.get('memory_gb', '?')} GB, Linux {machine.get('kernel', '?')}, Python "
             f"{machine.get('python', '?')}, at commits {', '.join(commits)} (each scenario's own in results.json).",
             ""]
    rows = [*_by_kind(results, "thundering_minute"), *_by_kind(results, "thundering_2_shards"),
            *_by_kind(results, "thundering_3_shards")]
    if rows:
        lines += ["**thundering_minute** (and its sharded runs: R operator replicas, a shard each): N Triggers and "
                  "N CronJobs, all `* * * * *`; lateness = Job seen by an "
                  "independent watch minus its scheduled moment, over the measured minutes; CPU over that window.",
                  "",
                  "| N | side | Jobs / expected | missed | dup | p50 s | p99 s | max s | creates/s | "
                  "% of raw | CPU s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, s in rows:
            raw = s.get("raw_create_per_s")
            for side in ("trigger", "cronjob"):
                d = s.get(side, {})
                rate = d.get("create_per_s")
                share = _share(rate, raw)
                p99 = d.get("p99_with_misses_s")
                p99_text = _f(p99, 2) if p99 is not None else f"> window ({_f(d.get('p99_s'), 2)} of seen)"
                label = f"trigger, {s['replicas']} shards" if side == "trigger" and s.get("replicas", 1) > 1 else side
                lines.append(f"| {s['n']} | {label} | {d.get('jobs')} / {d.get('expected')} | {d.get('missed')} | "
                             f"{d.get('duplicated')} | {_f(d.get('p50_s'), 2)} | {p99_text} | "
                             f"{_f(d.get('max_s'), 2)} | {_f(rate)} | {share} | {_f(d.get('cpu_s'))} | "
                             f"{_f(d.get('peak_rss_mb'))} |")
            lines.append(f"| {s['n']} | raw client, 32 threads | {s['n']} Jobs in {_f(s.get('raw_elapsed_s'))} s | "
                         f"| | | | | {_f(raw)} | 100% | | |")
            burst = s.get("raw_in_burst")
            if burst:
                rate = burst.get("create_per_s")
                lines.append(f"| {s['n']} | raw client in the burst, {burst.get('threads')} threads | "
                             f"{burst.get('jobs')} / {s['n']} | | | {_f(burst.get('p50_s'), 2)} | "
                             f"{_f(burst.get('p99_s'), 2)} | {_f(burst.get('max_s'), 2)} | {_f(rate)} | "
                             f"{_share(rate, raw)} | | |")
        lines.append("")
        for _, s in rows:
            t = s.get("trigger", {})
            lines.append(f"- N = {s['n']}: the operator's API writes in the window {t.get('api_writes')} "
                         f"({_f(t.get('api_writes_per_job'), 2)} per Job): "
                         + ", ".join(f"{k} {v}" for k, v in (t.get("api_writes_by") or {}).items()))
            burst = s.get("raw_in_burst") or {}
            if burst.get("create_per_s"):
                limit = next(iter((s.get("targets_in_burst") or {}).values()), None)
                lines.append(f"  - against the raw client in the burst ({_f(burst['create_per_s'])}/s, p99 "
                             f"{_f(burst.get('p99_s'), 2)} s): the Trigger side's creates "
                             f"{_f(100 * (s.get('trigger_over_raw_in_burst') or 0), 0)}% of it, p99 "
                             f"{_f(t.get('p99_with_misses_s'), 2)} s against 1.25 x N / its rate = {_f(limit, 2)} s")
            lines += _stages(t.get("stages"), burst.get("stages"))
            lines += _machine(s)
        lines.append("")
    rows = _by_kind(results, "cold_start")
    if rows:
        lines += ["**cold_start**: the operator started with N Triggers created while it was down (cold), then "
                  "restarted with their statuses right (warm).", "",
                  "| N | start | ready s | all nextScheduledAt right s | API writes | writes per Trigger | CPU s | "
                  "peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
        for _, s in rows:
            for phase in ("cold", "warm"):
                d = s.get(phase, {})
                lines.append(f"| {s['n']} | {phase} | {_f(d.get('ready_s'))} | {_f(d.get('correct_s'))} | "
                             f"{d.get('api_writes')} | {_f(d.get('writes_per_trigger'), 2)} | {_f(d.get('cpu_s'))} | "
                             f"{_f(d.get('peak_rss_mb'))} |")
        lines.append("")
        for _, s in rows:
            for phase in ("cold", "warm"):
                by = (s.get(phase) or {}).get("api_writes_by") or {}
                if by:
                    lines.append(f"- N = {s['n']} {phase}: " + ", ".join(f"{k} {v}" for k, v in by.items()))
        lines.append("")
    rows = _by_kind(results, "idle")
    if rows:
        lines += ["**idle**: N Triggers between firings (an hourly schedule, far away).", "",
                  "| N | window s | CPU s | % of a core | RSS MB | peak RSS MB | API writes |",
                  "|---|---|---|---|---|---|---|"]
        for _, s in rows:
            d = s.get("trigger", {})
            lines.append(f"| {s['n']} | {_f(d.get('window_s'), 0)} | {_f(d.get('cpu_s'), 2)} | "
                         f"{_f(d.get('cpu_pct_of_core'), 2)} | {_f(d.get('rss_mb'))} | {_f(d.get('peak_rss_mb'))} | "
                         f"{d.get('api_writes')} |")
        lines.append("")
    rows = _by_kind(results, "events") + _by_kind(results, "events_inbox")
    if rows:
        lines += ["**events** (and **events_inbox**, the same with the shared inbox on): N event Triggers, "
                  "concurrent senders posting single CloudEvents to /v1/events, then batches.", "",
                  "| N | inbox | senders | acknowledged (202) | other answers | durable events/s | p50 ack ms | "
                  "p99 ack ms | max ack ms | counters = sent | CPU s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, s in rows:
            d = s.get("trigger", {})
            inbox = "on" if s.get("inbox") else "off"
            lines.append(f"| {s['n']} | {inbox} | {s.get('senders')} | {s.get('acknowledged')} | "
                         f"{s.get('not_acknowledged')} | "
                         f"{_f(s.get('events_per_s'))} | {_f(_ms(d.get('p50_s')))} | {_f(_ms(d.get('p99_s')))} | "
                         f"{_f(_ms(d.get('max_s')))} | {_f(s.get('counters_match'))} | {_f(d.get('cpu_s'))} | "
                         f"{_f(d.get('peak_rss_mb'))} |")
            b = s.get("batched") or {}
            r = b.get("request") or {}
            if b:
                lines.append(f"| {s['n']} | {inbox} | {s.get('senders')}, batches of {b.get('batch')} | "
                             f"{b.get('acknowledged')} | "
                             f"{sum((b.get('answers_other_than_202') or {}).values())} | {_f(b.get('events_per_s'))} | "
                             f"{_f(_ms(r.get('p50_s')))} | {_f(_ms(r.get('p99_s')))} | {_f(_ms(r.get('max_s')))} | "
                             f"(both phases) | {_f(r.get('cpu_s'))} | {_f(r.get('peak_rss_mb'))} |")
        lines.append("")
        lines += _phases("Per phase, the machine's cores by process (`senders`: the Go event senders; `bench`: "
                         "the bench process) and the API server's requests against the operator's own:",
                         [(f"{key.split('@')[0]} N = {s['n']}", s) for key, s in rows],
                         {"single": "single events", "batched": "batches"})
    rows = _by_kind(results, "conditions")
    if rows:
        lines += ["**conditions**: N conditional Triggers each checking its ConfigMap every "
                  f"{rows[0][1].get('interval_s')} s, checks and status writes counted in the API server's audit "
                  "log; lateness = gap between a Trigger's checks minus the interval.",
                  "", "| N | window s | checks/s kept | expected/s | p50 late s | p99 late s | max late s | "
                  "within 1 s | status writes/s | per check | CPU s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, s in rows:
            d = s.get("trigger", {})
            lines.append(f"| {s['n']} | {_f(s.get('window_s'), 0)} | {_f(s.get('checks_per_s'))} | "
                         f"{_f(s.get('expected_per_s'))} | {_f(d.get('p50_s'), 2)} | {_f(d.get('p99_s'), 2)} | "
                         f"{_f(d.get('max_s'), 2)} | {_f(s.get('within_1s_pct'), 1, '%')} | "
                         f"{_f(s.get('status_writes_per_s'))} | {_f(s.get('status_writes_per_check'), 3)} | "
                         f"{_f(d.get('cpu_s'))} | "
                         f"{_f(d.get('peak_rss_mb'))} |")
        lines.append("")
        lines += _phases("Over the window, the machine's cores by process and the API server's requests against "
                         "the operator's own:", [(f"N = {s['n']}", s) for _, s in rows], {"window": "window"})
    lines += _jitter(results)
    return "\n".join(lines)


def _jitter(results: dict[str, Any]) -> list[str]:
    """The jitter table: each phase's lateness, spread and peak request rates, then its Jobs per 5 s."""
    rows = _by_kind(results, "jitter")
    if not rows:
        return []
    lines = ["**jitter**: N Triggers `* * * * *` without jitter, then (their namespaces deleted) N with "
             f"`jitterSeconds: {rows[0][1].get('jitter_seconds')}`, on one control plane with one operator, measured "
             "in turn over the same window; lateness = Job seen by an independent watch minus its (shifted) "
             "moment; spread = first..last Job after :00; request rates from the audit log (every request of "
             "every user), per 1 s.", "",
             "| N | jitter s | Jobs / expected | missed | dup | p50 s | p99 s | max s | first..last after :00 s | "
             "API peak req/s | API mean req/s | operator peak req/s | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    histograms = []
    for _, s in rows:
        for phase in s.get("order", ()):
            d = s.get(phase, {})
            lines.append(f"| {s['n']} | {d.get('jitter_seconds')} | {d.get('jobs')} / {d.get('expected')} | "
                         f"{d.get('missed')} | {d.get('duplicated')} | {_f(d.get('p50_s'), 2)} | "
                         f"{_f(d.get('p99_s'), 2)} | {_f(d.get('max_s'), 2)} | {_f(d.get('first_after_00_s'), 1)}.."
                         f"{_f(d.get('last_after_00_s'), 1)} | {d.get('api_peak_rps')} | "
                         f"{_f(d.get('api_mean_rps'))} | {d.get('operator_peak_rps')} | {_f(d.get('cpu_s'))} |")
            spread = d.get("jobs_per_5s_after_00") or {}
            histograms.append((s["n"], phase, d.get("jitter_seconds"), spread, d.get("api_rps_per_5s_after_00")))
    if histograms:
        buckets = list(histograms[0][3])
        lines += ["", "Jobs by seconds after :00 (first of each Trigger and minute), and below each the API "
                  "server's mean requests per second in those 5 s:", "",
                  "| N | jitter s | " + " | ".join(buckets) + " |", "|---|---|" + "---|" * len(buckets)]
        for n, _, jitter, spread, shape in histograms:
            lines.append(f"| {n} | {jitter} | " + " | ".join(str(spread.get(b, 0)) for b in buckets) + " |")
            if shape:
                cells = [_f(float(x), 0) for x in shape] + ["-"] * (len(buckets) - len(shape))  # no "60+" rate
                lines.append("| | req/s | " + " | ".join(cells) + " |")
    lines.append("")
    for _, s in rows:
        targets = s.get("targets") or {}
        lines.append(f"- N = {s['n']}: " + ", ".join(f"{k} {_f(v)}" for k, v in targets.items()))
    lines.append("")
    return lines


def _share(rate: float | None, raw: float | None) -> str:
    """A create rate as a share of the raw one, for the table (``-`` without both)."""
    return f"{100 * rate / raw:.0f}%" if rate and raw else "-"


def _stages(*sides: dict[str, Any] | None) -> list[str]:
    """Where the lateness goes (thundering.stages): the create received, answered, the Job seen."""
    parts = []
    for label, st in zip(("the Trigger side", "the raw client in the burst"), sides, strict=True):
        if st:
            parts.append(f"{label}: " + ", ".join(
                f"{stage} {_f((st.get(stage) or {}).get('p50_s'), 2)} / {_f((st.get(stage) or {}).get('p99_s'), 2)}"
                for stage in ("received", "answered", "seen")))
    return [f"  - seconds after the moment (p50 / p99), create received and answered by the API server "
            f"(its audit log), Job seen by the watch: {'; '.join(parts)}"] if parts else []


def _machine(s: dict[str, Any]) -> list[str]:
    """The limit outside the operator: cores busy and by whom (bursts, then the whole window), and
    what the API server served from every client against the operator's writes."""
    m = s.get("machine") or {}
    label = f"N = {s['n']}" + (f", {s['replicas']} shards" if s.get("replicas", 1) > 1 else "")
    lines = []
    burst = (s.get("raw_in_burst") or {}).get("burst")
    if burst:
        lines.append(f"  - {label}, the raw client's burst (operator stopped): "
                     + cpu_line(burst, m.get("cores")))
    if m.get("bursts"):
        lines.append(f"  - {label} burst ({', '.join(_f(b, 0) for b in m.get('burst_s', []))} s): "
                     + cpu_line(m["bursts"], m.get("cores")))
    if m.get("window"):
        lines.append(f"  - {label} window: " + cpu_line(m["window"], m.get("cores")))
    a = m.get("apiserver") or {}
    if a:
        lines.append(f"  - {label}: API server served {_f(a.get('req_per_s'))} req/s (writes "
                     f"{_f(a.get('writes_per_s'))}/s: "
                     + ", ".join(f"{k} {_f(v)}" for k, v in (a.get("top_writes") or {}).items())
                     + f") of which the operator's writes {_f(a.get('operator_writes_per_s'))}/s; by verb "
                     + ", ".join(f"{k} {_f(v)}" for k, v in (a.get("by_verb") or {}).items()))
    return lines


def _phases(heading: str, rows: list[tuple[str, dict[str, Any]]], names: dict[str, str]) -> list[str]:
    """The phases of each row (``machine`` of events and conditions: phase name -> figures), a line
    each under ``heading`` (``figures.phase_line``); nothing when no row has them."""
    lines = [f"- {phase_line(f'{label} {text}', m[name], m.get('cores'))}" for label, s in rows
             for m in [s.get("machine") or {}] for name, text in names.items() if m.get(name)]
    return [heading, "", *lines, ""] if lines else []


def _ms(seconds: Any) -> float | None:
    return seconds * 1000 if isinstance(seconds, int | float) else None


def plot(results: dict[str, Any], arrivals: dict[str, Any], path: Path) -> None:
    """Left: p50 and p99 lateness by N for both sides, with the 1.25 N / raw line. Right: Jobs
    created against seconds after the moment, at the headline size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    rows = _by_kind(results, "thundering_minute")
    if rows:
        ns = [s["n"] for _, s in rows]
        for side, colour in (("trigger", "tab:blue"), ("cronjob", "tab:orange")):
            for key, style in (("p50_s", ":"), ("p99_with_misses_s", "-")):
                values = [s.get(side, {}).get(key) for _, s in rows]
                left.plot(ns, [v if v is not None else math.nan for v in values], style, marker="o", color=colour,
                          label=f"{side} {key.split('_')[0]}")
                beyond = [(s["n"], s[side].get("max_s")) for (_, s), v in zip(rows, values, strict=True)
                          if v is None and s.get(side, {}).get("missed") and s[side].get("max_s")]
                if beyond:  # more than 1% missed: p99 is past the window; marked at the latest Job seen
                    left.plot([b[0] for b in beyond], [b[1] for b in beyond], "^", color=colour, markersize=10,
                              label=f"{side} p99 beyond the window (misses)")
        limit = [1.25 * s["n"] / s["raw_create_per_s"] if s.get("raw_create_per_s") else math.nan for _, s in rows]
        left.plot(ns, limit, "--", color="grey", label="1.25 x N / raw create rate")
        burst = [s.get("raw_in_burst") or {} for _, s in rows]
        if any(b.get("p99_s") is not None for b in burst):  # the raw client where the operator works
            left.plot(ns, [b.get("p99_s") if b.get("p99_s") is not None else math.nan for b in burst], "-",
                      marker="s", color="tab:green", label="raw client in the burst p99")
        if any(v for _, s in rows for side in ("trigger", "cronjob") for v in [s.get(side, {}).get("p50_s")]):
            left.set_xscale("log")
            left.set_yscale("log")
        left.set_xlabel("N (Triggers, and CronJobs)")
        left.set_ylabel("lateness, s")
        left.set_title("thundering_minute: lateness (p99 counts misses as late)")
        left.legend(fontsize=8)
        left.grid(True, which="both", alpha=0.3)
    for label, series in arrivals.items():
        for side, colour in (("trigger", "tab:blue"), ("cronjob", "tab:orange")):
            values = sorted(series.get(side, []))
            if values:
                right.step(values, range(1, len(values) + 1), where="post", color=colour,
                           label=f"{side} ({label})")
        right.set_title(f"Jobs seen after their moment ({label}, all measured minutes)")
    right.set_xlabel("seconds after the scheduled moment")
    right.set_ylabel("Jobs")
    right.grid(True, alpha=0.3)
    if arrivals:
        right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], arrivals: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (out / "results.md").write_text(text + "\n")
    plot(results, arrivals, out / "results.png")
    return text

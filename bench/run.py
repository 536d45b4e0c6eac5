"""The benchmark harness (issue 10): each scenario on a fresh local control plane
(hack/localcluster.py), progress on stderr, then a table; writes bench/out/results.json,
results.md, results.png (and profile.txt/.svg/.collapsed when thundering_minute runs at N = 1,000).

    python -m bench.run                                     # everything at full sizes (make bench)
    python -m bench.run --scenarios thundering_minute --sizes 1000    # make bench-quick
    python -m bench.run --scenarios thundering_minute,idle --sizes 100,1000

Scenarios and their full sizes: thundering_minute 100, 1000, 5000 (headline 1000);
thundering_2_shards 1000 and thundering_3_shards 1000, 5000 (the same in the sharded mode, 2 and 3 replicas;
thundering_minute at 5000 is its one-replica pair);
cold_start 1000, 5000 (headline 5000); idle 5000; events 100 and events_inbox 100 (the same with the
shared event inbox on); conditions 1000; jitter 1000 (N Triggers without,
then N with a 30 s jitter: lateness, spread and the API server's peak request rate). ``--sizes`` replaces the sizes of
every scenario chosen. In results.json each scenario's headline size is keyed by its name
(``thundering_minute``) and every other size by ``name@N`` (``thundering_minute@100``); when the
headline size was not run, the largest size run takes the plain key.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.common import AUDIT_ALL_POLICY, OUT, ROOT, control_plane, log
from bench.scenarios import cold_start, conditions, events, jetstream, jitter, thundering

FULL_SIZES: dict[str, list[int]] = {"thundering_minute": [100, 1000, 5000], "thundering_2_shards": [1000],
                                    "thundering_3_shards": [1000, 5000], "cold_start": [1000, 5000],
                                    "idle": [5000], "events": [100], "events_inbox": [100], "conditions": [1000],
                                    "jitter": [1000],
                                    "jetstream": [20000]}
SHARED_KCM_ARGS = ("--kube-api-qps=1000", "--kube-api-burst=2000", "--concurrent-job-syncs=20")
HEADLINE = {"thundering_minute": 1000, "thundering_2_shards": 1000, "thundering_3_shards": 1000,
            "cold_start": 5000, "idle": 5000, "events": 100, "events_inbox": 100, "conditions": 1000, "jitter": 1000,
            "jetstream": 20000}
SHARDED = {"thundering_2_shards": 2, "thundering_3_shards": 3}  # the sharded mode: replicas, a shard each


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gb": round(memory / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def commit() -> str:
    """HEAD, with ``+changes`` when the operator's code differs from it (what was measured)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    changed = subprocess.run(["git", "status", "--porcelain", "operator"], cwd=ROOT, capture_output=True, text=True)
    return (head.stdout.strip() or "?") + ("+changes" if changed.stdout.strip() else "")


def run_one(name: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    if name in SHARDED:
        with control_plane(f"{name}-{n}", controllers="*,-cronjob", audit=True,
                           controller_manager_args=SHARED_KCM_ARGS) as bench:
            return thundering.run(bench, n, minutes=args.minutes, replicas=SHARDED[name])
    if name == "thundering_minute":
        # The cluster's own manager runs every controller but cronjob, its client limits lifted
        # (default 20 QPS) so the Job controller keeps up with both sides' Jobs and they run to their
        # end; the cronjob controller runs apart at its defaults (thundering.py).
        with control_plane(f"thundering-{n}", controllers="*,-cronjob", audit=True,
                           controller_manager_args=SHARED_KCM_ARGS) as bench:
            return thundering.run(bench, n, minutes=args.minutes, profile=args.profile and n == 1000)
    if name in ("cold_start", "idle"):
        with control_plane(f"{name}-{n}", audit=True) as bench:
            if name == "cold_start":
                return cold_start.run(bench, n)
            return cold_start.run_idle(bench, n, seconds=args.idle_seconds)
    if name in ("events", "events_inbox"):
        # events_inbox: the same with the shared event inbox on (docs/events.md), side by side.
        with control_plane(f"{name}-{n}") as bench:
            return events.run(bench, n, senders=args.senders, seconds=args.event_seconds,
                              profile=args.profile,
                              inbox=name == "events_inbox")
    if name == "jetstream":
        # N messages drained from a backlog, then a steady rate, beside the HTTP intake (the same operator).
        with control_plane(f"jetstream-{n}") as bench:
            return jetstream.run(bench, n, seconds=args.event_seconds / 2, senders=args.senders)
    if name == "conditions":
        # The operator's ConfigMap reads (its checks) and status writes in the audit log.
        with control_plane(f"conditions-{n}", audit_policy=conditions.AUDIT) as bench:
            return conditions.run(bench, n, seconds=args.condition_seconds)
    if name == "jitter":
        # As thundering_minute's cluster (the Job controller keeps up, no cronjob controller), with
        # every request of every user in the audit log: the API server's request rate per second.
        with control_plane(f"jitter-{n}", controllers="*,-cronjob", audit_policy=AUDIT_ALL_POLICY,
                           controller_manager_args=SHARED_KCM_ARGS) as bench:
            return jitter.run(bench, n, minutes=args.minutes)
    raise ValueError(f"unknown scenario {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(FULL_SIZES),
                        help=f"comma-separated, of {', '.join(FULL_SIZES)} (default: all)")
    parser.add_argument("--sizes", help="comma-separated N for every scenario chosen (default: each one's full sizes)")
    parser.add_argument("--minutes", type=int, default=2,
                        help="measured minutes of thundering_minute and of each jitter phase (default 2)")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="no py-spy minute after thundering_minute at N = 1000, nor profiled phase after events")
    parser.add_argument("--idle-seconds", type=float, default=120)
    parser.add_argument("--senders", type=int, default=64, help="concurrent event senders (default 64)")
    parser.add_argument("--event-seconds", type=float, default=30)
    parser.add_argument("--condition-seconds", type=float, default=120)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--merge", action="store_true",
                        help="keep the scenarios of the results.json already in --out that this run does not redo")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in FULL_SIZES]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(FULL_SIZES)}")
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else None
    plan = [(name, n) for name in chosen for n in (sizes or FULL_SIZES[name])]
    log("plan: " + ", ".join(f"{name} at N = {n}" for name, n in plan))
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit(),
                               "machine": machine(), "args": " ".join(sys.argv[1:]), "scenarios": {}}
    arrivals: dict[str, Any] = {}
    previous = args.out / "results.json"
    if args.merge and previous.exists():
        kept = json.loads(previous.read_text())
        results["scenarios"] = kept.get("scenarios", {})
        results["earlier_runs"] = [*kept.get("earlier_runs", []), {k: kept.get(k) for k in ("date", "commit", "args")}]
        with contextlib.suppress(OSError, ValueError):
            arrivals = json.loads((args.out / "arrivals.json").read_text())
    started = time.monotonic()
    failed = 0
    for name, n in plan:
        ran = [m for nm, m in plan if nm == name]
        kept = results["scenarios"].get(name, {}).get("n")  # merged from an earlier run
        plain = n == HEADLINE[name] or (HEADLINE[name] not in ran and n == max(ran)
                                        and kept in (None, n) and kept != HEADLINE[name])
        key = name if plain else f"{name}@{n}"
        if plain and kept not in (None, n):
            results["scenarios"][f"{name}@{kept}"] = results["scenarios"].pop(name)
        log(f"=== {name} at N = {n} (results key {key!r}; {time.monotonic() - started:.0f}s so far) ===")
        t0 = time.monotonic()
        try:
            section = run_one(name, n, args)
        except Exception as error:  # one scenario failing leaves the others' numbers
            failed += 1
            log(f"{name} at N = {n} failed: {error!r}")
            section = {"n": n, "error": repr(error)}
        late = section.pop("_late", None)
        if late and name == "thundering_minute" and (key == name or not arrivals):
            arrivals = {f"N = {n}": late}
            (args.out / "arrivals.json").write_text(json.dumps(arrivals))
        section["wall_s"] = round(time.monotonic() - t0, 1)
        section["commit"], section["date"] = results["commit"], results["date"]
        results["scenarios"][key] = section
        report.write(results, arrivals, args.out)
        log(f"{name} at N = {n} done in {section['wall_s']:.0f}s; results so far in {args.out}/results.json")
    text = report.write(results, arrivals, args.out)
    print(text)
    log(f"all done in {time.monotonic() - started:.0f}s: {args.out}/results.json, results.md, results.png")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Draws docs/metrics.png (README, "Dashboard") from a real Prometheus scraping the operator.

Starts the local control plane (or uses KUBECONFIG), the operator, and Prometheus (Debian's
package, `make prometheus`) with the shipped alerting rules; applies a few sample Triggers (one
fails on purpose); lets them run for ``--minutes``; then plots what Prometheus recorded:

    python hack/metrics_picture.py [--minutes 4] [--out docs/metrics.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import kubernetes

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "hack")]

from tests.harness import SUCCEEDS, Kube, Operator, actions_config_map, fails, install_crds, new_namespace  # noqa: E402
from tests.integration.servers import prometheus  # noqa: E402
from tests.integration.triggers import trigger  # noqa: E402

import localcluster  # noqa: E402

RULES = ROOT / "helm" / "trigger-operator" / "files" / "alerts.yaml"
QUERIES = {  # panel title -> (PromQL, legend label)
    "Runs started per minute": ("sum by (trigger_type) (rate(trigger_operator_executions_started_total[1m])) * 60",
                                "trigger_type"),
    "Runs finished per minute": ("sum by (outcome) (rate(trigger_operator_executions_finished_total[1m])) * 60",
                                 "outcome"),
    "Schedule lateness p99 (s)": ("histogram_quantile(0.99, sum by (le, trigger_type) "
                                  "(rate(trigger_operator_schedule_lateness_seconds_bucket[1m])))", "trigger_type"),
    "Consecutive failures (alert TriggerRunFailed)": ("trigger_operator_trigger_consecutive_failures", "trigger"),
}


def say(message: str) -> None:
    print(f"[metrics-picture] {message}", flush=True)


@contextmanager
def cluster(folder: Path) -> Iterator[Kube]:
    given = os.environ.get("KUBECONFIG")
    started = None if given else localcluster.up(folder, tie_to_parent=True)
    kubeconfig = Path(given) if given else started.kubeconfig  # type: ignore[union-attr]
    try:
        kube = Kube(kubeconfig=kubeconfig, api=kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))
        install_crds(kube)
        yield kube
    finally:
        if started is not None:
            localcluster.down(started.folder)


def samples(url: str, query: str, start: float, end: float) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query_range", params={"query": query, "start": start, "end": end,
                                                              "step": 5}, timeout=30)
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def plot(url: str, start: float, end: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    for axis, (title, (query, label)) in zip(axes.flat, QUERIES.items(), strict=True):
        for series in samples(url, query, start, end):
            points = [(float(t) - start, float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf")]
            if points:
                axis.plot(*zip(*points, strict=True), label=series["metric"].get(label, "all"))
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(loc="upper left", fontsize="small")
    for axis in axes[1]:
        axis.set_xlabel("seconds since the sample Triggers were applied")
    figure.suptitle("trigger-operator, scraped by a real Prometheus (make metrics-picture)")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "metrics.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, cluster(ROOT / ".cluster-picture") as kube:
        say("control plane ready; starting the operator and Prometheus")
        namespace = new_namespace(kube)
        kube.apply(actions_config_map(namespace))
        operator = Operator(kube, namespace, Path(scratch) / "operator.log").start()
        try:
            with prometheus(Path(scratch), operator.http_port, rule_files=(RULES,)) as url:
                kube.apply(trigger("every-10s", interval=10, pod=SUCCEEDS), namespace)
                kube.apply(trigger("every-minute", cron="* * * * *", pod=SUCCEEDS), namespace)
                kube.apply(trigger("flaky-export", interval=20, maxConsecutiveFailures=100,
                                   pod=fails(1, "upstream answered 503")), namespace)
                start = time.time()
                while (left := start + args.minutes * 60 - time.time()) > 0:
                    say(f"sample Triggers running; {left:.0f} s to go")
                    time.sleep(min(30.0, left))
                plot(url, start, time.time(), args.out)
        finally:
            operator.stop()
    say(f"wrote {args.out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

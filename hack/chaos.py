"""`make chaos`: Triggers of every kind (cron, interval, event, conditional) run by three operator
replicas (leader election on, or ``--shards N``: the sharded mode) while replicas are SIGKILLed at
random, the leader is killed, a replica is frozen with SIGSTOP (a partition), and kube-apiserver and
etcd are each restarted once; steady senders post events to random replicas. Afterwards it proves
from the Jobs and statuses:

- every minute of each cron Trigger (catchUpPolicy All, a 3-minute deadline) ran exactly once;
- each Trigger's executionCount / failedExecutionCount / consecutiveFailures equal what its Jobs show;
- every acknowledged event was counted once (eventCounter = events acknowledged);
- each conditional Trigger ran once per time its ConfigMap value went above the threshold (each
  level is held 80-100 s: longer than the longest stretch that chained faults leave with no replica
  scheduling, 47 s seen, plus a check backed off by the API server's restart, so every change is
  seen; a value that comes and goes while nobody can look is a missed sample, never a double run);
- every Trigger is Active and Ready with a future nextScheduledAt (time-based ones).

It exits non-zero otherwise and prints a one-line summary last. Replay with the seed it prints:

    python hack/chaos.py [--minutes 4] [--seed S] [--triggers 60] [--shards 0] [--inbox]   (CHAOS_ARGS="..." with make)
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import kubernetes

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "hack")]

from tests.chart import chart_identity  # noqa: E402
from tests.harness import (  # noqa: E402
    SUCCEEDS,
    Kube,
    Operator,
    actions_config_map,
    fails,
    grant,
    install_crds,
    new_namespace,
    service_account_token,
    wait_for,
)
from tests.integration.test_events import SEND  # noqa: E402
from tests.integration.test_high_availability import holder  # noqa: E402
from tests.integration.triggers import trigger  # noqa: E402

import localcluster  # noqa: E402
from trigger_operator.controller.shards import shard_lease  # noqa: E402

REPLICAS = ("op-0", "op-1", "op-2")
THRESHOLD = 5  # events per run of each event Trigger
LEVELS = "levels"  # the ConfigMap the conditional Triggers read, a key each
HIGH, LOW, LIMIT = "20", "0", 10  # the values the levels move between, and the Triggers' threshold
HELD = (80.0, 100.0)  # seconds each level is held: longer than chained take-overs, so every change is seen
# Every Job is kept (the schema's maximum history), so that the counts can be checked against them.
KEEP: dict[str, Any] = {"successfulJobsHistoryLimit": 100, "failedJobsHistoryLimit": 100,
                        "maxConsecutiveFailures": 1000}


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Replicas:
    """The operator processes, restartable under the same names."""

    def __init__(self, kube: Kube, namespace: str, identity: Path, logs: Path, lease: str, shards: int,
                 inbox: bool = False) -> None:
        self.kube, self.namespace, self.identity, self.logs, self.lease = kube, namespace, identity, logs, lease
        self.shards, self.inbox = shards, inbox
        self.running: dict[str, Operator] = {}
        self.frozen: set[str] = set()
        self._lock = threading.Lock()  # timers restart and thaw replicas while the senders read

    def start(self, name: str) -> None:
        operator = Operator(self.kube, self.namespace, self.logs / f"{name}.log", kubeconfig=self.identity,
                            env={"TRIGGER_OPERATOR_LEADER_ENABLED": "true", "TRIGGER_OPERATOR_LEADER_NAME": self.lease,
                                 "TRIGGER_OPERATOR_LEADER_SHARDS": str(max(1, self.shards)),
                                 "TRIGGER_OPERATOR_EVENTS_INBOX": str(self.inbox).lower(),
                                 "POD_NAME": name}).start()
        with self._lock:
            self.running[name] = operator

    def names(self) -> list[str]:
        with self._lock:
            return list(self.running)

    def leader(self) -> str | None:
        """The replica that leads; sharded, the one holding the most shards."""
        leases = [self.lease] if self.shards <= 1 else [shard_lease(self.lease, k) for k in range(self.shards)]
        held = Counter(n for lease in leases for n in self.names()
                       if holder(self.kube, self.namespace, lease).startswith(f"{n}-"))
        return held.most_common(1)[0][0] if held else None

    def kill(self, name: str) -> None:
        with self._lock:
            operator = self.running.pop(name)
            self.frozen.discard(name)
        operator.kill()

    def freeze(self, name: str) -> None:
        with self._lock:
            self.frozen.add(name)
            self._signal(name, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        with self._lock:
            if name in self.frozen:
                self.frozen.discard(name)
                self._signal(name, signal.SIGCONT)

    def _signal(self, name: str, sig: signal.Signals) -> None:
        process = self.running[name].process
        assert process is not None
        os.killpg(process.pid, sig)

    def urls(self) -> list[str]:
        with self._lock:
            return [op.url for name, op in self.running.items() if name not in self.frozen]


class Senders(threading.Thread):
    """Posts single CloudEvents (unique ids) to random replicas; a delivery not acknowledged is
    retried with the same id on another replica (de-duplication makes it count once)."""

    def __init__(self, replicas: Replicas, namespace: str, token: str, types: list[str], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.replicas, self.namespace, self.token, self.types, self.rng = replicas, namespace, token, types, rng
        self.acknowledged: Counter[str] = Counter()
        self.unsure: Counter[str] = Counter()  # never acknowledged: may or may not be counted
        self.stop = threading.Event()
        self._ids = itertools.count()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                kind = self.rng.choice(self.types)
                event = {"specversion": "1.0", "id": f"ev-{next(self._ids)}", "source": "//chaos", "type": kind,
                         "collectionid": "col", "count": 1}
                for _ in range(20):
                    urls = self.replicas.urls()
                    if urls and self._post(client, self.rng.choice(urls), event):
                        self.acknowledged[kind] += 1
                        break
                    time.sleep(0.5)
                else:
                    self.unsure[kind] += 1
                time.sleep(0.1)

    def _post(self, client: httpx.Client, url: str, event: dict[str, Any]) -> bool:
        try:
            response = client.post(f"{url}/v1/events", content=json.dumps(event), headers={
                "content-type": "application/cloudevents+json", "x-namespace": self.namespace,
                "authorization": f"Bearer {self.token}"})
        except httpx.HTTPError:
            return False
        return response.status_code == 202


class Levels(threading.Thread):
    """Moves each conditional Trigger's value between LOW and HIGH, each level held for HELD
    seconds, and records the rises: each must make one run."""

    def __init__(self, kube: Kube, namespace: str, names: list[str], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespace, self.names, self.rng = kube, namespace, names, rng
        self.rises: Counter[str] = Counter()  # rises whose level was held its full time
        self.unsure: Counter[str] = Counter()  # a rise cut short at the end: may or may not have run
        self.stop = threading.Event()
        kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": LEVELS},
                                                           "data": {name: LOW for name in names}})

    def run(self) -> None:
        now = time.monotonic()
        level = dict.fromkeys(self.names, LOW)
        until = {name: now + self.rng.uniform(*HELD) for name in self.names}
        while not self.stop.wait(0.5):
            due = [n for n, at in until.items() if at <= time.monotonic()]
            for name in due:
                level[name] = HIGH if level[name] == LOW else LOW
                until[name] = time.monotonic() + self.rng.uniform(*HELD)
            if due:
                self._write({n: level[n] for n in due})
                self.rises.update(n for n in due if level[n] == HIGH)
        ending = [n for n in self.names if level[n] == HIGH]  # rises not held their full time yet
        for name in ending:
            self.rises[name] -= 1
            self.unsure[name] += 1
        self._write(dict.fromkeys(ending, LOW))

    def _write(self, data: dict[str, str]) -> None:
        for _ in range(60):  # the API server may be restarting
            try:
                self.kube.core.patch_namespaced_config_map(LEVELS, self.namespace, {"data": data})
                return
            except Exception:
                time.sleep(1)
        raise RuntimeError("could not write the levels ConfigMap for a minute")


def make_triggers(kube: Kube, namespace: str, n: int, rng: random.Random,
                  minutes: float) -> tuple[list[str], list[str], list[str], list[str]]:
    crons, intervals, events, conditions = [], [], [], []
    shortest = max(10, math.ceil((minutes + 3) * 60 / 90))  # fewer than 100 runs each: none pruned
    for i in range(n):
        pod = fails(1, "chaos failure") if rng.random() < 0.2 else SUCCEEDS
        kube.apply(trigger(f"cron-{i}", cron="* * * * *", pod=pod, catchUpPolicy="All",
                           startingDeadlineSeconds=180, concurrencyPolicy="Allow", **KEEP), namespace)
        crons.append(f"cron-{i}")
        every = rng.choice([shortest, shortest + 5, shortest + 10])
        kube.apply(trigger(f"interval-{i}", interval=every, pod=pod, concurrencyPolicy="Allow", **KEEP), namespace)
        intervals.append(f"interval-{i}")
        manifest = trigger(f"event-{i}", triggerType="event", pod=SUCCEEDS, **KEEP)
        manifest["spec"]["scheduleConfig"] = {"eventType": f"chaos.e{i}", "eventThreshold": THRESHOLD,
                                        "collectionId": "col"}
        kube.apply(manifest, namespace)
        events.append(f"event-{i}")
        manifest = trigger(f"cond-{i}", triggerType="conditional", pod=SUCCEEDS, **KEEP)
        manifest["spec"]["scheduleConfig"] = {"conditionType": "threshold", "metric": "value", "threshold": LIMIT,
                                              "checkIntervalSeconds": 2,
                                              "source": {"configMap": {"name": LEVELS, "key": f"cond-{i}"}}}
        kube.apply(manifest, namespace)
        conditions.append(f"cond-{i}")
    return crons, intervals, events, conditions


def chaos(replicas: Replicas, cluster: localcluster.Cluster, rng: random.Random, minutes: float) -> Counter[str]:
    done: Counter[str] = Counter()
    end = time.monotonic() + minutes * 60
    once = {"restart kube-apiserver": end - minutes * 60 * rng.uniform(0.55, 0.7),
            "restart etcd": end - minutes * 60 * rng.uniform(0.25, 0.4)}
    restarts: list[tuple[float, str]] = []  # replicas to start again, and when

    def pause(seconds: float) -> None:
        """Sleeps, starting killed replicas when due: from this thread, since a child started from
        a timer thread would get the parent-death signal when that thread ends."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            for at, name in [r for r in restarts if r[0] <= time.monotonic()]:
                restarts.remove((at, name))
                replicas.start(name)
            time.sleep(0.2)

    while time.monotonic() < end:
        pause(rng.uniform(8, 16))
        due = [what for what, at in once.items() if time.monotonic() >= at]
        if due:
            what = due[0]
            del once[what]
            say(what)
            localcluster.restart(cluster, what.split()[1])
            done[what] += 1
            continue
        action = rng.choice(["kill a replica", "kill the leader", "freeze a replica"])
        names = [n for n in replicas.names() if n not in replicas.frozen]
        victim = replicas.leader() if action == "kill the leader" else rng.choice(names) if names else None
        if victim is None or victim not in replicas.names():
            continue
        if action == "freeze a replica":
            seconds = rng.uniform(10, 20)
            say(f"SIGSTOP {victim} for {seconds:.0f}s")
            replicas.freeze(victim)
            threading.Timer(seconds, replicas.thaw, args=(victim,)).start()
        else:
            say(f"SIGKILL {victim} ({action})")
            replicas.kill(victim)
            restarts.append((time.monotonic() + rng.uniform(3, 8), victim))
        done[action] += 1
    pause(max([at for at, _ in restarts], default=time.monotonic()) - time.monotonic() + 0.5)
    return done


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def moments_of(jobs: list[Any]) -> list[dt.datetime]:
    return sorted(_time(j.metadata.annotations["trigger-operator.io/scheduled-time"]) for j in jobs
                  if (j.metadata.labels or {}).get("trigger-operator.io/run-kind") == "scheduled")


def verify(kube: Kube, namespace: str, crons: list[str], intervals: list[str], events: list[str],
           conditions: list[str], senders: Senders, levels: Levels, started: dt.datetime,
           stopped: dt.datetime) -> list[str]:
    problems: list[str] = []
    now = dt.datetime.now(dt.UTC)
    first = (started + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    last = (stopped - dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    everything = crons + intervals + events + conditions
    for name in everything:
        status = kube.status(namespace, name)
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        if status.get("phase") != "Active" or ready.get("status") != "True":
            problems.append(f"{name}: phase {status.get('phase')}, Ready {ready.get('status')} {ready.get('reason')}")
        if name in conditions:
            checked = status.get("lastConditionCheckAt")
            if not checked or _time(checked) < now - dt.timedelta(seconds=30):
                problems.append(f"{name}: lastConditionCheckAt {checked} is not recent")
        elif name not in events:
            upcoming = status.get("nextScheduledAt")
            if not upcoming or _time(upcoming) < now - dt.timedelta(seconds=30):
                problems.append(f"{name}: nextScheduledAt {upcoming} is not in the future")
    # Counts are compared with the Jobs once nothing runs any more: paused, every run counted.
    for name in everything:
        kube.patch_spec(namespace, name, {"state": "paused"})
    deadline = time.monotonic() + 180
    nudged = time.monotonic()
    while (busy := [n for n in everything if kube.status(namespace, n).get("active")]) and time.monotonic() < deadline:
        if time.monotonic() - nudged > 20:
            nudge_stuck_pods(kube, namespace)
            nudged = time.monotonic()
        time.sleep(2)
    for name in busy:
        by_name = {j.metadata.name: j for j in kube.jobs(namespace, name)}
        runs = [(r["name"], _job_state(by_name.get(r["name"]))) for r in kube.status(namespace, name)["active"]]
        problems.append(f"{name}: runs still active 180 s after pausing (name, its Job): {runs}")
    for name in everything:
        status = kube.status(namespace, name)
        jobs = kube.jobs(namespace, name)
        succeeded = sum(1 for j in jobs if j.status.succeeded)
        failed = sum(1 for j in jobs if j.status.failed)
        if (status.get("executionCount", 0), status.get("failedExecutionCount", 0)) != (succeeded, failed):
            problems.append(f"{name}: counts {status.get('executionCount')}/{status.get('failedExecutionCount')}, "
                            f"Jobs {succeeded}/{failed}")
        ended = sorted((j for j in jobs if j.status.succeeded or j.status.failed),
                       key=lambda j: j.metadata.creation_timestamp)
        streak = len(list(itertools.takewhile(lambda j: bool(j.status.failed), reversed(ended))))
        if status.get("consecutiveFailures", 0) != streak:
            problems.append(f"{name}: consecutiveFailures {status.get('consecutiveFailures')}, Jobs show {streak}")
        if name in crons:
            seen = Counter(moments_of(jobs))
            expected = [first + dt.timedelta(minutes=k) for k in range(int((last - first).total_seconds() // 60) + 1)]
            missing = [m for m in expected if seen[m] == 0]
            twice = [m for m, c in seen.items() if c > 1]
            if missing or twice:
                problems.append(f"{name}: moments missing {missing}, run twice {twice}")
    for name in conditions:
        ran = len(kube.jobs(namespace, name))
        rises, unsure = levels.rises[name], levels.unsure[name]
        if not rises <= ran <= rises + unsure:
            problems.append(f"{name}: {ran} runs for {rises} rises of its value ({unsure} cut short)")
    for i, name in enumerate(events):
        status = kube.status(namespace, name)
        counted = status.get("eventCounter", 0) + THRESHOLD * status.get("eventFirings", 0)
        acked, unsure = senders.acknowledged[f"chaos.e{i}"], senders.unsure[f"chaos.e{i}"]
        if not acked <= counted <= acked + unsure:
            problems.append(f"{name}: {counted} events counted, {acked} acknowledged ({unsure} unsure)")
    return problems


def nudge_stuck_pods(kube: Kube, namespace: str, older_than: float = 30) -> None:
    """Stands in for a kubelet's retry: kwok v0.7.0 drops a stage (a pod's Ready, its end) whose
    status patch got an error back from the API server while etcd restarted (kubernetes-sigs/kwok
    #816; it retries only failed connections), so the pod stays Running for ever. Touching a pod
    stuck that long makes kwok play its stage again. The operator is not helped: it must still see
    the Job end and count it."""
    now = dt.datetime.now(dt.UTC)
    for pod in kube.core.list_namespaced_pod(namespace).items:
        started = pod.metadata.creation_timestamp
        if pod.status.phase in ("Pending", "Running") and (now - started).total_seconds() > older_than:
            say(f"kwok left pod {pod.metadata.name} {pod.status.phase} for {(now - started).total_seconds():.0f}s: "
                "touching it so that kwok plays its stage again")
            kube.core.patch_namespaced_pod(pod.metadata.name, namespace, {
                "metadata": {"annotations": {"chaos.test/nudged": now.isoformat()}}})


def _job_state(job: Any) -> str:
    if job is None:
        return "no Job"
    st = job.status
    return f"active {st.active or 0}, succeeded {st.succeeded or 0}, failed {st.failed or 0}, " \
           f"created {job.metadata.creation_timestamp:%H:%M:%S}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--triggers", type=int, default=60,
                        help="Triggers of each kind (cron, interval, event, conditional)")
    parser.add_argument("--shards", type=int, default=0, help="run the sharded mode with this many shards")
    parser.add_argument("--inbox", action="store_true",
                        help="events through the shared inbox (the chart's events.inbox=true and its RBAC)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(seed)
    say(f"seed {seed} (replay: CHAOS_ARGS=\"--minutes {args.minutes:g} --seed {seed}\")")
    folder = Path(tempfile.mkdtemp(prefix="chaos-"))
    cluster = localcluster.up(ROOT / f".cluster-chaos-{os.getpid()}", tie_to_parent=True)
    passed = False
    try:
        kube = Kube(kubeconfig=cluster.kubeconfig,
                    api=kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
        install_crds(kube)
        namespace = new_namespace(kube)
        kube.apply(actions_config_map(namespace))
        identity = chart_identity(kube, namespace, folder, sets=(f"sharding.shards={args.shards}",
                                                                 f"events.inbox={str(args.inbox).lower()}"))
        replicas = Replicas(kube, namespace, identity, folder, f"trg-{namespace}", args.shards, args.inbox)
        for name in REPLICAS:
            replicas.start(name)
        wait_for("a leader", replicas.leader, timeout=60)
        say(f"creating {args.triggers} Triggers of each kind")
        # The levels exist before their Triggers: a missing source backs the checks off.
        levels = Levels(kube, namespace, [f"cond-{i}" for i in range(args.triggers)], random.Random(rng.random()))
        crons, intervals, events, conditions = make_triggers(kube, namespace, args.triggers, rng, args.minutes)
        levels.start()
        token = service_account_token(kube, namespace, "sender")
        grant(kube, namespace, "sender", SEND)
        senders = Senders(replicas, namespace, token, [f"chaos.e{i}" for i in range(args.triggers)], rng)
        senders.start()
        started = dt.datetime.now(dt.UTC)
        done = chaos(replicas, cluster, rng, args.minutes)
        senders.stop.set()
        senders.join(timeout=60)
        stopped = dt.datetime.now(dt.UTC)
        say("chaos over: every replica back, then 60 s to settle")
        time.sleep(1)
        for name in REPLICAS:
            replicas.thaw(name)
            if name not in replicas.names():
                replicas.start(name)
        time.sleep(60)
        levels.stop.set()  # the levels moved on through the settling: more rises, seen in calm too
        levels.join(timeout=120)
        problems = verify(kube, namespace, crons, intervals, events, conditions, senders, levels, started, stopped)
        for problem in problems[:40]:
            say(f"PROBLEM {problem}")
        jobs = len(kube.jobs(namespace))
        actions = ", ".join(f"{what} x{n}" for what, n in sorted(done.items()))
        verdict = "PASSED" if not problems else f"FAILED ({len(problems)} problems)"
        mode = (f"{args.shards} shards" if args.shards > 1 else "one leader") + (", inbox" if args.inbox else "")
        print(f"chaos {verdict}: seed {seed}, {args.minutes:g} min, {mode}, {4 * args.triggers} Triggers, {jobs} Jobs, "
              f"{sum(senders.acknowledged.values())} events acknowledged, {sum(levels.rises.values())} condition "
              f"rises; {actions}", flush=True)
        for op in list(replicas.running.values()):
            op.stop()
        passed = not problems
        return 0 if passed else 1
    finally:
        if not passed:  # the components' and operators' logs stay for the post-mortem
            say(f"logs kept in {cluster.folder / 'logs'} and {folder}")
        localcluster.down(cluster.folder, keep_logs=not passed)


if __name__ == "__main__":
    sys.exit(main())

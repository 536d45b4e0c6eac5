"""What every scenario shares: a fresh local control plane, the operator under its own identity,
bulk creation with a plain client, watches that record when objects appear, /proc readings and
the API server's audit log."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from tests.harness import Kube, Operator, actions_config_map, install_crds, token_kubeconfig

import localcluster
from bench import figures
from trigger_operator.config import SchedulerSettings

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "bench" / "out"
GROUP, VERSION = "trigger-operator.io", "v1alpha1"
OPERATOR_NAMESPACE = "bench-operator"
OPERATOR_ACCOUNT = "trigger-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
# The one Job template of both sides (and of the raw creates): pods end at once on kwok's nodes.
JOB_SPEC: dict[str, Any] = {"backoffLimit": 0, "template": {"spec": {
    "restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox:1.37", "command": ["true"]}]}}}
# The namespace of thundering_minute's raw client in the burst: its Job creates are audited too.
RAW_BURST_NAMESPACE = "br-burst"
# Only the operator's writes (and the raw client's creates in the burst) are logged: the audit log
# costs the API server next to nothing else.
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata", "users": [OPERATOR_USER], "verbs": list(WRITE_VERBS)},
                          {"level": "Metadata", "verbs": ["create"], "namespaces": [RAW_BURST_NAMESPACE],
                           "resources": [{"group": "batch", "resources": ["jobs"]}]},
                          {"level": "None"}]}
# Every request of every user, once its response began (a watch) or ended: what the API server
# serves per second, e.g. the jitter scenario's peak request rate. Costs a line of JSON a request.
AUDIT_ALL_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                    "rules": [{"level": "Metadata"}]}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- numbers ---------------------------------------------------------------------------------------

def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values; may be inf when values hold inf."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rounded(value: float | None, digits: int = 3) -> float | None:
    """JSON has no NaN or inf: both become null."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


def summary(values: list[float]) -> dict[str, float | None]:
    return {"p50_s": rounded(percentile(values, 0.5)), "p99_s": rounded(percentile(values, 0.99)),
            "max_s": rounded(max(values, default=math.nan)),
            "mean_s": rounded(statistics.fmean(values) if values else math.nan)}


def sustained_rate(times: list[float]) -> float:
    """Items per second over the central 90% of a burst (first and last 5% left out: the ramp)."""
    if len(times) < 10:
        return math.nan
    ordered = sorted(times)
    lo, hi = int(0.05 * len(ordered)), int(0.95 * len(ordered)) - 1
    span = ordered[hi] - ordered[lo]
    return (hi - lo) / span if span > 0 else math.nan


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- processes ---------------------------------------------------------------------------------------

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/<pid>/stat)."""
    return figures.process_ticks(Path(f"/proc/{pid}/stat").read_text()) / TICKS_PER_S


def memory_mb(pid: int, key: str = "VmHWM") -> float:
    """VmHWM (peak resident) or VmRSS (now) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return math.nan


@dataclass
class Usage:
    """CPU over a window, peak and current memory of one process."""

    pid: int
    cpu_start: float = 0.0
    wall_start: float = 0.0

    def begin(self) -> Usage:
        self.cpu_start, self.wall_start = cpu_seconds(self.pid), time.time()
        return self

    def end(self) -> dict[str, float | None]:
        cpu, wall = cpu_seconds(self.pid) - self.cpu_start, time.time() - self.wall_start
        return {"cpu_s": rounded(cpu, 2), "cpu_pct_of_core": rounded(100 * cpu / wall if wall else math.nan, 1),
                "window_s": rounded(wall, 1), "peak_rss_mb": rounded(memory_mb(self.pid, "VmHWM"), 1),
                "rss_mb": rounded(memory_mb(self.pid, "VmRSS"), 1)}


LOAD_PIDS: list[int] = []  # the load generators the bench started (events' Go senders), added as they start


class CpuSampler(threading.Thread):
    """Every ``every`` s, the cumulative CPU ticks of each named group of processes and the whole
    machine's busy ticks (/proc/stat), as ``figures.Sample``s: who kept the cores busy, over any
    window afterwards (``figures.cores``). A process that has exited keeps its last reading."""

    def __init__(self, pids: dict[str, list[int]], every: float = 0.5) -> None:
        super().__init__(daemon=True, name="cpu-sampler")
        self.pids, self.every = pids, every
        self.samples: list[figures.Sample] = []
        self.last: dict[int, int] = {}
        self.stopping = threading.Event()

    def sample(self) -> figures.Sample:
        ticks: dict[str, int] = {figures.MACHINE: figures.machine_busy_ticks(Path("/proc/stat").read_text())[0]}
        for name, pids in self.pids.items():
            for pid in pids:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    self.last[pid] = figures.process_ticks(Path(f"/proc/{pid}/stat").read_text())
            ticks[name] = sum(self.last.get(pid, 0) for pid in pids)
        return figures.Sample(time.time(), ticks)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append(self.sample())
            self.stopping.wait(self.every)

    def stop(self) -> list[figures.Sample]:
        self.stopping.set()
        self.join(timeout=5)
        self.samples.append(self.sample())  # the window's end has a reading after it
        return self.samples


def control_plane_pids(cluster: localcluster.Cluster) -> dict[str, list[int]]:
    """Every process of the control plane by its short name (pids.json: etcd, apiserver, kcm,
    scheduler, kwok, and any controller manager started beside, e.g. kcm-cronjob)."""
    recorded: dict[str, int] = json.loads(cluster.pids_file.read_text() or "{}")
    return {figures.SHORT_NAMES.get(name, name): [pid] for name, pid in recorded.items()}


def scrape(bench: Bench) -> tuple[float, dict[tuple[str, str], float]] | None:
    """The API server's request counters and when they were read (the middle of the request), or
    None (logged) when its /metrics does not answer: the scenario's other figures still count."""
    started = time.time()
    try:
        counts = bench.apiserver_requests()
        return (started + time.time()) / 2, counts
    except Exception as error:
        log(f"  the API server's /metrics did not answer: {error!r}")
        return None


class Phases:
    """The machine and API server figures of a scenario's phases (events: single, batched;
    conditions: its window): a ``CpuSampler`` over the control plane, the operator and the bench
    process from ``start`` to ``figures``, and around each phase a scrape of the API server's
    ``apiserver_request_total`` and of the operator's own /metrics. The scrapes bound the phase's
    API figures; its CPU is over the phase proper (``begin`` to ``end``, the scrapes outside it)."""

    def __init__(self, bench: Bench, operator: Operator) -> None:
        assert operator.process is not None
        self.bench, self.operator = bench, operator
        self.sampler = CpuSampler({**control_plane_pids(bench.cluster), "operator": [operator.process.pid],
                                   "bench": [os.getpid()], "senders": LOAD_PIDS})
        self.marks: dict[str, dict[str, Any]] = {}

    def start(self) -> Phases:
        self.sampler.start()
        return self

    def begin(self, name: str) -> None:
        mark = self.marks[name] = {"served": scrape(self.bench), "ours": self.bench.metrics(self.operator)}
        mark["begin"] = time.time()

    def end(self, name: str) -> None:
        mark = self.marks[name]
        mark["end"] = time.time()
        mark["served_after"], mark["ours_after"] = scrape(self.bench), self.bench.metrics(self.operator)

    def figures(self) -> dict[str, Any]:
        """Stops the sampler; per phase: ``window_s``, ``cpu`` (cores by process, ``figures.cores``),
        ``apiserver`` (``figures.served`` between the scrapes) and ``operator`` (its own
        ``figures.operator_requests`` over the same span); ``cores`` of the machine beside."""
        samples = self.sampler.stop()
        out: dict[str, Any] = {"cores": os.cpu_count()}
        for name, mark in self.marks.items():
            if "end" not in mark:
                continue
            phase: dict[str, Any] = {"window_s": round(mark["end"] - mark["begin"], 1),
                                     "cpu": figures.cores(samples, [(mark["begin"], mark["end"])], TICKS_PER_S)}
            before, after = mark["served"], mark["served_after"]
            if before and after and after[0] > before[0]:
                seconds = after[0] - before[0]
                phase["apiserver"] = figures.served(before[1], after[1], seconds)
                if mark["ours"] and mark["ours_after"]:
                    phase["operator"] = figures.operator_requests(mark["ours"], mark["ours_after"], seconds)
            out[name] = phase
        return out


# --- the cluster and the operator --------------------------------------------------------------------

def scheduler_defaults(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Every ``TRIGGER_OPERATOR_SCHEDULER_*`` variable at SchedulerSettings' default (config.py is
    their one home), so the bench measures what production runs, not the harness's test values
    (a 15 s name hold, a 5 s create window). One already set in the bench's own environment wins:
    ``TRIGGER_OPERATOR_SCHEDULER_CREATE_FIRST=false make bench`` measures the kill switch."""
    environ = dict(os.environ) if environ is None else environ
    out: dict[str, str] = {}
    for f in dataclasses.fields(SchedulerSettings):
        name = f"TRIGGER_OPERATOR_SCHEDULER_{f.name.upper()}"
        default = getattr(SchedulerSettings(), f.name)
        out[name] = environ.get(name, str(default).lower() if isinstance(default, bool) else str(default))
    return out


@dataclass
class Bench:
    """One scenario's control plane: a plain client with a connection per thread, the operator's
    own ServiceAccount (so its requests can be told apart), and where its logs go."""

    cluster: localcluster.Cluster
    kube: Kube
    operator_kubeconfig: Path
    logs: Path
    operators: list[Operator] = field(default_factory=list)

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return self.kube.custom

    def namespace(self, name: str) -> str:
        with contextlib.suppress(ApiException):
            self.kube.core.create_namespace({"metadata": {"name": name}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # pods need the default ServiceAccount
            try:
                self.kube.core.read_namespaced_service_account("default", name)
                return name
            except ApiException:
                time.sleep(0.3)
        raise RuntimeError(f"no default ServiceAccount in {name}")

    def operator(self, namespaces: str, name: str = "operator", env: dict[str, str] | None = None) -> Operator:
        """The operator as the tests run it (tests/harness.py), watching ``namespaces`` (a glob),
        with the shipped action catalog, the production scheduler settings (``scheduler_defaults``:
        the harness shortens some for tests) and ``env`` over them, under its own ServiceAccount."""
        operator = Operator(self.kube, namespaces, self.logs / f"{name}.log", kubeconfig=self.operator_kubeconfig,
                            env={"TRIGGER_OPERATOR_ACTIONS_NAMESPACE": OPERATOR_NAMESPACE, **scheduler_defaults(),
                                 **(env or {})})
        self.operators.append(operator)
        return operator

    def metrics(self, operator: Operator) -> dict[str, float]:
        """The operator's /metrics as {series: value} (empty when it does not answer)."""
        try:
            with urllib.request.urlopen(f"{operator.url}/metrics", timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[series] = float(value)
        return out

    def operator_writes(self, since: float, until: float | None = None) -> dict[str, int]:
        """The operator's writes in the audit log between two times, by ``verb resource[/sub]``
        (its user and the write verbs: the log may hold every request, AUDIT_ALL_POLICY)."""
        counts: dict[str, int] = {}
        for _, key in self.operator_write_events(since, until):
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def operator_write_events(self, since: float, until: float | None = None) -> list[tuple[float, str]]:
        """Each of the operator's writes in the audit log between two times, as (received unix
        seconds, ``verb resource[/sub]``), in the log's order."""
        out: list[tuple[float, str]] = []
        for at, event in self._completed(since):
            if until is not None and at > until:
                continue
            if (event.get("user") or {}).get("username") != OPERATOR_USER or event.get("verb") not in WRITE_VERBS:
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            out.append((at, f"{event.get('verb')} {resource}"))
        return out

    def job_creates(self, namespace_prefix: str, since: float) -> dict[tuple[str, str], tuple[float, float]]:
        """Each Job created (201) in namespaces starting with ``namespace_prefix`` since ``since``, by
        (namespace, name): when the API server received the create and when it answered it (the
        audit log's requestReceivedTimestamp and stageTimestamp), the API server's own clock."""
        out: dict[tuple[str, str], tuple[float, float]] = {}
        for received, event in self._completed(since, containing=('"create"', '"jobs"')):
            ref = event.get("objectRef") or {}
            if (event.get("verb") != "create" or ref.get("resource") != "jobs" or ref.get("subresource")
                    or not str(ref.get("namespace", "")).startswith(namespace_prefix)
                    or (event.get("responseStatus") or {}).get("code") != 201):
                continue
            out[(ref["namespace"], ref.get("name", ""))] = (received, parse_time(event.get("stageTimestamp")) or 0.0)
        return out

    def _completed(self, since: float, containing: tuple[str, ...] = ()) -> Iterator[tuple[float, dict[str, Any]]]:
        """The audit log's finished requests (stage ResponseComplete) received at ``since`` or later, as
        (received unix seconds, event), in the log's order; ``containing``: only lines holding each of
        these strings are decoded at all (a cheap first cut of a log of many MB)."""
        if not self.cluster.audit_log.exists():
            return
        with self.cluster.audit_log.open() as lines:
            for line in lines:
                if any(text not in line for text in containing):
                    continue
                event = json.loads(line)
                at = parse_time(event.get("requestReceivedTimestamp")) or 0.0
                if event.get("stage") == "ResponseComplete" and at >= since:
                    yield at, event

    def apiserver_requests(self) -> dict[tuple[str, str], float]:
        """The API server's own ``apiserver_request_total`` by (verb, resource), from its /metrics
        (GET with the bench's admin client: a few MB, so twice a window, never a second)."""
        api = self.kube.api
        token = (api.configuration.api_key or {}).get("authorization")  # else the client certificate
        response = api.call_api("GET", f"{api.configuration.host}/metrics",
                                header_params={"Authorization": token} if token else {}, _request_timeout=60)
        if response.status != 200:
            raise RuntimeError(f"GET /metrics of the API server answered {response.status}")
        return figures.request_counts(response.read().decode())

    def requests(self, since: float, until: float) -> list[tuple[float, str]]:
        """Every request the audit log holds received in [since, until), once each (a watch logs
        twice: when its response starts and when it ends), as (received unix seconds, username)."""
        seen: set[str] = set()
        out: list[tuple[float, str]] = []
        if not self.cluster.audit_log.exists():
            return out
        with self.cluster.audit_log.open() as lines:
            for line in lines:
                event = json.loads(line)
                at = parse_time(event.get("requestReceivedTimestamp"))
                audit_id = str(event.get("auditID", ""))
                if at is None or not since <= at < until or audit_id in seen:
                    continue
                seen.add(audit_id)
                out.append((at, str((event.get("user") or {}).get("username", "?"))))
        return out


def per_second(times: Iterable[float], since: float, until: float) -> list[int]:
    """How many of ``times`` fall in each whole second of [since, until) (since's second first)."""
    buckets = [0] * max(0, math.ceil(until - since))
    for at in times:
        if since <= at < until:
            buckets[int(at - since)] += 1
    return buckets


def client(kubeconfig: Path, pool: int = 64) -> kubernetes.client.ApiClient:
    """A client whose connection pool is as large as the threads that share it."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return kubernetes.client.ApiClient(configuration)


@contextlib.contextmanager
def control_plane(name: str, *, controllers: str = "*", audit: bool = False,
                  controller_manager_args: tuple[str, ...] = (),
                  audit_policy: dict[str, Any] | None = None) -> Iterator[Bench]:
    """A fresh local control plane for one scenario (hack/localcluster.py), torn down after. With
    ``audit`` the API server logs the operator's writes (AUDIT_POLICY), or ``audit_policy``'s."""
    folder = ROOT / f".cluster-bench-{os.getpid()}-{name}"
    logs = OUT / "logs" / name
    logs.mkdir(parents=True, exist_ok=True)
    policy = None
    if audit or audit_policy:
        folder.mkdir(parents=True, exist_ok=True)
        policy = folder / "audit-policy.json"  # removed with the cluster's folder
        policy.write_text(json.dumps(audit_policy or AUDIT_POLICY))
    log(f"starting a local control plane for {name} (etcd, kube-apiserver, controller manager, scheduler, kwok; "
        "about a minute)")
    cluster = localcluster.up(folder, tie_to_parent=True, controllers=controllers, audit_policy=policy,
                              controller_manager_args=controller_manager_args)
    operators: list[Operator] = []
    try:
        kube = Kube(kubeconfig=cluster.kubeconfig, api=client(cluster.kubeconfig))
        log("installing the CRDs and the operator's ServiceAccount")
        install_crds(kube)
        bench = Bench(cluster, kube, operator_identity(kube, folder), logs, operators)
        kube.apply(actions_config_map(OPERATOR_NAMESPACE))
        yield bench
    finally:
        for operator in operators:
            operator.stop()
        log(f"stopping the control plane of {name}")
        for path in (folder / "logs").glob("*.log"):
            if path.name != "audit.log":
                with contextlib.suppress(OSError):
                    (logs / f"cluster-{path.name}").write_bytes(path.read_bytes()[-2_000_000:])
        localcluster.down(folder)


def operator_identity(kube: Kube, folder: Path) -> Path:
    """A ServiceAccount bound to cluster-admin and a kubeconfig with its token (valid a day)."""
    with contextlib.suppress(ApiException):
        kube.core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
    kube.core.create_namespaced_service_account(OPERATOR_NAMESPACE, {"metadata": {"name": OPERATOR_ACCOUNT}})
    kubernetes.client.RbacAuthorizationV1Api(kube.api).create_cluster_role_binding({
        "metadata": {"name": "bench-operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE}]})
    token = kube.core.create_namespaced_service_account_token(
        OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, {"spec": {"expirationSeconds": 86400}}).status.token
    return token_kubeconfig(kube, str(token), folder / "operator-kubeconfig")


# --- creating many objects ---------------------------------------------------------------------------

def create_all(kube: Kube, items: list[tuple[str, str, str, str, dict[str, Any]]], threads: int = 32,
               what: str = "objects") -> list[float]:
    """Creates (group, version, namespace, plural, body) items with a plain client on ``threads``
    threads, responses left unparsed; returns when each create was answered (unix seconds)."""
    custom = kube.custom
    done: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()

    def create(item: tuple[str, str, str, str, dict[str, Any]]) -> None:
        group, version, namespace, plural, body = item
        for attempt in range(5):
            try:
                response = custom.create_namespaced_custom_object(group, version, namespace, plural, body,
                                                                  _preload_content=False)
                response.read()  # the body must be read before the connection goes back to the pool
                response.release_conn()
                break
            except ApiException as error:
                if error.status == 409 or attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
        with lock:
            done.append(time.time())
            if len(done) % max(1, len(items) // 5) == 0:
                log(f"  {len(done)}/{len(items)} {what} created ({time.monotonic() - started:.0f}s)")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(create, items))
    return done


def trigger_body(name: str, namespace: str, schedule: dict[str, Any], trigger_type: str = "cron",
                 **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"actionType": "cluster", "triggerType": trigger_type, "scheduleConfig": schedule,
                     "jobTemplate": {"spec": JOB_SPEC}, **spec}}


def wait_scheduled(bench: Bench, namespaces: list[str], n: int, timeout: float = 600) -> bool:
    """Waits until ``n`` Triggers in ``namespaces`` have a ``status.nextScheduledAt`` (the operator
    has planned them all), logging progress every 10 s."""
    count = [0]

    def done() -> bool:
        count[0] = sum(1 for namespace in namespaces for t in bench.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "triggers")["items"] if (t.get("status") or {}).get("nextScheduledAt"))
        return count[0] >= n
    return wait_until("Triggers with a nextScheduledAt", done, lambda: f"{count[0]}/{n}", timeout=timeout, every=10)


def wait_namespaces_gone(kube: Kube, names: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {n.metadata.name for n in kube.core.list_namespace().items} & set(names)
        if not left:
            return
        time.sleep(2)
    log(f"  (namespaces {sorted(left)} still terminating after {timeout:.0f}s; going on)")


# --- watches -----------------------------------------------------------------------------------------

class Watcher(threading.Thread):
    """Its own watch on one resource across namespaces (dicts, never the client's models, so it
    costs little CPU): ``on_event(type, object, arrival unix seconds)`` for each event. Re-lists
    after a 410 Gone; the list's objects are reported as ADDED at list time."""

    def __init__(self, kube: Kube, group: str, version: str, plural: str,
                 on_event: Callable[[str, dict[str, Any], float], None]) -> None:
        super().__init__(daemon=True, name=f"watch-{plural}")
        # A client of its own, so the watch never waits for a connection of the bulk creates.
        self.custom = kubernetes.client.CustomObjectsApi(client(kube.kubeconfig, pool=2))
        self.group, self.version, self.plural, self.on_event = group, version, plural, on_event
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def _list(self) -> str:
        listing = self.custom.list_cluster_custom_object(self.group, self.version, self.plural)
        now = time.time()
        for item in listing.get("items", []):
            self.on_event("ADDED", item, now)
        return str(listing["metadata"]["resourceVersion"])

    def run(self) -> None:
        version = self._list()
        self.ready.set()
        while not self.stopping.is_set():
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(self.custom.list_cluster_custom_object, self.group, self.version,
                                          self.plural, resource_version=version, allow_watch_bookmarks=True,
                                          timeout_seconds=60):
                    now = time.time()
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        version = self._list() if obj.get("code") == 410 else version
                        break
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if kind != "BOOKMARK":
                        self.on_event(kind, obj, now)
                    if self.stopping.is_set():
                        break
            except ApiException as error:
                if error.status == 410:
                    version = self._list()
                else:
                    time.sleep(1)
            except Exception:  # a dropped connection: watch again from the last version
                time.sleep(0.5)
            finally:
                watch.stop()

    def start_and_wait(self) -> Watcher:
        self.start()
        if not self.ready.wait(120):
            raise RuntimeError(f"the watch on {self.plural} did not start")
        return self

    def stop(self) -> None:
        self.stopping.set()


def wait_until(what: str, done: Callable[[], bool], progress: Callable[[], str], timeout: float,
               every: float = 5.0) -> bool:
    """Polls ``done`` each 0.2 s, logging ``progress()`` each ``every`` s; False after ``timeout``."""
    deadline, next_log = time.monotonic() + timeout, time.monotonic() + every
    while time.monotonic() < deadline:
        if done():
            return True
        if time.monotonic() >= next_log:
            log(f"  {what}: {progress()}")
            next_log += every
        time.sleep(0.2)
    log(f"  {what}: gave up after {timeout:.0f}s ({progress()})")
    return False


def sleep_until(moment: float, what: str, progress: Callable[[], str] | None = None, every: float = 10.0) -> None:
    next_log = time.time() + every
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))
        if time.time() >= next_log and moment - time.time() > 1:
            log(f"  {what}: {moment - time.time():.0f}s to go" + (f"; {progress()}" if progress else ""))
            next_log += every

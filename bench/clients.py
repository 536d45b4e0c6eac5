"""Which HTTP client for the operator's hot API calls: a microbenchmark against a real local
control plane (hack/localcluster.py, as `bench.common.control_plane` starts it, without the Job
controller, so that the Jobs stay still and the API server serves only these calls).

Run by hand (one bench at a time on the machine: ``pgrep -f bench`` first)::

    .venv/bin/python -m bench.clients [--calls 1000] [--rounds 2] [--concurrency 64]

For each candidate, in rounds that alternate them (the machine is shared and noisy), it sends
``--calls`` of each hot call with ``--concurrency`` in flight: create a Job (the operator's own
manifest, jobs/render.py), patch a Trigger's status (guarded by its resourceVersion, a worker per
Trigger, as the operator writes), release the Job (the strategic merge patch that removes our
finalizer), delete it (Foreground). It reports, per call and per 1,000 calls, the CPU seconds of
this process (all its threads: ``time.process_time``), the API server's CPU seconds, and the wall
time. The candidates:

- ``kubernetes``: today's path, `KubeApi` itself (the official client on 64 threads, the answer
  read in the thread, ``json.loads`` on the event loop);
- ``httpx``: `httpx.AsyncClient` in the event loop (kube/watch.py's `http_client`: same CA, client
  certificate and per-request token), ``json.loads`` of the answer;
- ``httpx+slim``: the same, the Job answers decoded by jobs/wire.py's msgspec decoder;
- ``aiohttp``: `aiohttp.ClientSession` in the event loop, ``json.loads`` of the answer.

Then the decoders alone, on a real create answer: ``json.loads`` of the whole Job vs the slim
decoder (microseconds, ``min`` of 5 x 2,000). Figures: docs/bench.md, "Where the time goes".
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import ssl
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import kubernetes

from bench.common import GROUP, JOB_SPEC, VERSION, control_plane, control_plane_pids, cpu_seconds, log, trigger_body
from trigger_operator.api import FINALIZER, PLURAL
from trigger_operator.config import KubeSettings
from trigger_operator.jobs.render import TriggerRef, render_job
from trigger_operator.jobs.wire import decode_job
from trigger_operator.kube.api import KubeApi
from trigger_operator.kube.watch import http_client
from trigger_operator.model.status import RunKind

NAMESPACE = "clients"
RELEASE = {"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}}
VERBS = ("create", "status", "release", "delete")


class Candidate(Protocol):
    async def create(self, manifest: Mapping[str, Any]) -> Any: ...
    async def status(self, name: str, resource_version: str, status: Mapping[str, Any]) -> Any: ...
    async def release(self, name: str) -> Any: ...
    async def delete(self, name: str) -> Any: ...
    async def close(self) -> None: ...


class Today:
    """The official client as `KubeApi` runs it (`_call_json`: 64 threads, ``json.loads``), with
    the arguments the hot calls gave it before they moved to `KubeApi`'s event-loop client."""

    def __init__(self) -> None:
        self.api = KubeApi(KubeSettings())

    async def create(self, manifest: Mapping[str, Any]) -> Any:
        return await self.api._call_json(self.api._batch.create_namespaced_job, NAMESPACE, dict(manifest))

    async def status(self, name: str, resource_version: str, status: Mapping[str, Any]) -> Any:
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        return await self.api._call_json(self.api._custom.patch_namespaced_custom_object_status, GROUP, VERSION,
                                         NAMESPACE, PLURAL, name, body, _content_type="application/merge-patch+json")

    async def release(self, name: str) -> Any:
        return await self.api._call_json(self.api._batch.patch_namespaced_job, name, NAMESPACE, RELEASE,
                                         _content_type="application/strategic-merge-patch+json")

    async def delete(self, name: str) -> Any:
        return await self.api._call_json(self.api._batch.delete_namespaced_job, name, NAMESPACE,
                                         propagation_policy="Foreground")

    async def close(self) -> None:
        self.api.close()


def _headers(config: Any) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    for setting in config.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[setting["key"]] = setting["value"]
    return headers


JOBS = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
TRIGGERS = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"


class Httpx:
    def __init__(self, concurrency: int, slim: bool) -> None:
        self.config = kubernetes.client.Configuration.get_default_copy()
        self.http = http_client(self.config, connections=concurrency)
        self.decode_job: Callable[[bytes], Any] = decode_job if slim else json.loads

    async def _send(self, method: str, path: str, body: Any, content_type: str, job: bool | None,
                    params: Mapping[str, str] | None = None) -> Any:
        headers = {**_headers(self.config), "Content-Type": content_type}
        content = None if body is None else json.dumps(body).encode()
        response = await self.http.request(method, path, content=content, headers=headers, params=params)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
        if job is None:  # an answer nobody reads: decoded only as today's path does
            return None if self.decode_job is decode_job else json.loads(response.content)
        return self.decode_job(response.content) if job else json.loads(response.content)

    async def create(self, manifest: Mapping[str, Any]) -> Any:
        return await self._send("POST", JOBS, manifest, "application/json", True)

    async def status(self, name: str, resource_version: str, status: Mapping[str, Any]) -> Any:
        return await self._send("PATCH", f"{TRIGGERS}/{name}/status",
                                {"metadata": {"resourceVersion": resource_version}, "status": status},
                                "application/merge-patch+json", False)

    async def release(self, name: str) -> Any:
        return await self._send("PATCH", f"{JOBS}/{name}", RELEASE, "application/strategic-merge-patch+json", True)

    async def delete(self, name: str) -> Any:
        return await self._send("DELETE", f"{JOBS}/{name}", None, "application/json", None,
                                params={"propagationPolicy": "Foreground"})

    async def close(self) -> None:
        await self.http.aclose()


class Aiohttp:
    def __init__(self, concurrency: int) -> None:
        self.config = kubernetes.client.Configuration.get_default_copy()
        context = ssl.create_default_context(cafile=self.config.ssl_ca_cert or None)
        if self.config.cert_file:
            context.load_cert_chain(self.config.cert_file, self.config.key_file or None)
        self.session = aiohttp.ClientSession(base_url=self.config.host,
                                             connector=aiohttp.TCPConnector(limit=concurrency, ssl=context))

    async def _send(self, method: str, path: str, body: Any, content_type: str) -> Any:
        headers = {**_headers(self.config), "Content-Type": content_type}
        data = None if body is None else json.dumps(body).encode()
        async with self.session.request(method, path, data=data, headers=headers) as response:
            data = await response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return json.loads(data)

    async def create(self, manifest: Mapping[str, Any]) -> Any:
        return await self._send("POST", JOBS, manifest, "application/json")

    async def status(self, name: str, resource_version: str, status: Mapping[str, Any]) -> Any:
        return await self._send("PATCH", f"{TRIGGERS}/{name}/status",
                                {"metadata": {"resourceVersion": resource_version}, "status": status},
                                "application/merge-patch+json")

    async def release(self, name: str) -> Any:
        return await self._send("PATCH", f"{JOBS}/{name}", RELEASE, "application/strategic-merge-patch+json")

    async def delete(self, name: str) -> Any:
        return await self._send("DELETE", f"{JOBS}/{name}?propagationPolicy=Foreground", None, "application/json")

    async def close(self) -> None:
        await self.session.close()


def _status(i: int) -> dict[str, Any]:
    """A status write of the usual size: the next moment, and ten recent runs."""
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"nextScheduledAt": stamp, "lastScheduleTime": stamp, "recentExecutions": [
        {"name": f"t-{k}", "kind": "scheduled", "scheduledTime": stamp, "outcome": "Succeeded", "startedAt": stamp,
         "finishedAt": stamp, "durationMs": 1000} for k in range(10)]}


async def _spread(concurrency: int, n: int, one: Callable[[int], Awaitable[Any]]) -> None:
    """``n`` calls with ``concurrency`` in flight; calls of one worker go one after the other."""
    async def worker(w: int) -> None:
        for i in range(w, n, concurrency):
            await one(i)
    await asyncio.gather(*(worker(w) for w in range(concurrency)))


async def measure(name: str, candidate: Candidate, trigger: TriggerRef, triggers: list[tuple[str, str]], calls: int,
                  concurrency: int, apiserver: int) -> dict[str, dict[str, float]]:
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    prefix = f"{name.replace('+', '-')}-{int(time.time())}"
    jobs = [render_job(trigger, name=f"{prefix}-{i}", kind=RunKind.SCHEDULED, scheduled_time=moment,
                       template={"spec": JOB_SPEC}) for i in range(calls)]
    for job in jobs:
        job["metadata"]["finalizers"] = [FINALIZER]  # as the operator's Jobs have it: the release removes it
    versions = dict(triggers)
    names = [t for t, _ in triggers]

    async def status(i: int) -> None:
        t = names[i % len(names)]
        written = await candidate.status(t, versions[t], _status(i))
        versions[t] = written["metadata"]["resourceVersion"]

    steps: dict[str, Callable[[int], Awaitable[Any]]] = {
        "create": lambda i: candidate.create(jobs[i]),
        "status": status,
        "release": lambda i: candidate.release(jobs[i]["metadata"]["name"]),
        "delete": lambda i: candidate.delete(jobs[i]["metadata"]["name"])}
    out: dict[str, dict[str, float]] = {}
    for verb in VERBS:
        cpu, server, wall = time.process_time(), cpu_seconds(apiserver), time.perf_counter()
        await _spread(min(concurrency, len(names)) if verb == "status" else concurrency, calls, steps[verb])
        out[verb] = {"cpu": time.process_time() - cpu, "apiserver": cpu_seconds(apiserver) - server,
                     "wall": time.perf_counter() - wall}
    return out


def decoders(answer: bytes) -> dict[str, float]:
    """Microseconds to decode one create answer: the whole Job, or the slim view."""
    return {label: min(timeit.repeat(lambda f=f: f(answer), number=2000, repeat=5)) / 2000 * 1e6  # type: ignore[misc]
            for label, f in (("json.loads", json.loads), ("msgspec slim", decode_job))}


async def main_async(args: argparse.Namespace, apiserver: int, kubeconfig: str) -> None:
    kubernetes.config.load_kube_config(config_file=kubeconfig)
    api = KubeApi(KubeSettings())
    try:
        created = [await api._call_json(api._custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE,
                                        PLURAL, trigger_body(f"t{i}", NAMESPACE, {"cronExpression": "0 0 1 1 *"}))
                   for i in range(args.concurrency)]
        first = created[0]["metadata"]
        trigger = TriggerRef(NAMESPACE, first["name"], first["uid"], "cluster", {})
        triggers = [(t["metadata"]["name"], t["metadata"]["resourceVersion"]) for t in created]
    finally:
        api.close()
    makers: dict[str, Callable[[], Candidate]] = {
        "kubernetes": Today, "httpx": lambda: Httpx(args.concurrency, slim=False),
        "httpx+slim": lambda: Httpx(args.concurrency, slim=True), "aiohttp": lambda: Aiohttp(args.concurrency)}
    results: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in makers}
    for r in range(args.rounds):
        for name, make in makers.items():
            candidate = make()
            try:
                await measure(name, candidate, trigger, triggers, args.concurrency, args.concurrency, apiserver)  # warm
                # (the warm-up's Triggers moved on: read their versions back)
                triggers = await _versions(triggers)
                log(f"round {r + 1}: {name}")
                results[name].append(await measure(name, candidate, trigger, triggers, args.calls, args.concurrency,
                                                   apiserver))
                triggers = await _versions(triggers)
            finally:
                await candidate.close()
    report(results, args.calls)
    sample = await _sample_answer(trigger)
    log(f"a create's answer: {len(sample)} bytes; decode µs: " + ", ".join(
        f"{k} {v:.1f}" for k, v in decoders(sample).items()))


async def _versions(triggers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    api = KubeApi(KubeSettings())
    try:
        return [(t, (await api.get_trigger(NAMESPACE, t))["metadata"]["resourceVersion"]) for t, _ in triggers]
    finally:
        api.close()


async def _sample_answer(trigger: TriggerRef) -> bytes:
    config = kubernetes.client.Configuration.get_default_copy()
    async with http_client(config) as http:
        manifest = render_job(trigger, name=f"sample-{int(time.time())}", kind=RunKind.SCHEDULED,
                              scheduled_time=dt.datetime.now(dt.UTC), template={"spec": JOB_SPEC})
        response = await http.post(JOBS, content=json.dumps(manifest).encode(),
                                   headers={**_headers(config), "Content-Type": "application/json"})
        return response.content


def report(results: dict[str, list[dict[str, dict[str, float]]]], calls: int) -> None:
    """Per candidate and call: the median over the rounds of client CPU s, API server CPU s and
    wall s per 1,000 calls, and the client's CPU relative to today's."""
    per = 1000 / calls

    def med(name: str, verb: str, what: str) -> float:
        return statistics.median(r[verb][what] for r in results[name]) * per

    print(f"\nper 1,000 calls, median of {len(next(iter(results.values())))} rounds "
          "(client CPU s / API server CPU s / wall s; client CPU vs kubernetes)")
    print("| candidate | " + " | ".join(VERBS) + " | all four, client CPU |")
    print("|---|" + "---|" * (len(VERBS) + 1))
    base = sum(med("kubernetes", v, "cpu") for v in VERBS)
    for name in results:
        cells = [f"{med(name, v, 'cpu'):.2f} / {med(name, v, 'apiserver'):.2f} / {med(name, v, 'wall'):.2f}"
                 f" ({med(name, v, 'cpu') / med('kubernetes', v, 'cpu'):.0%})" for v in VERBS]
        total = sum(med(name, v, "cpu") for v in VERBS)
        print(f"| {name} | " + " | ".join(cells) + f" | {total:.2f} s ({total / base:.0%}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="calls of each kind per candidate and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=KubeSettings.threads)
    args = parser.parse_args()
    # No Job controller (nor CronJob's): the Jobs stay as created, the API server serves only us.
    with control_plane("clients", controllers="*,-job-controller,-cronjob-controller") as bench:
        bench.namespace(NAMESPACE)
        apiserver = control_plane_pids(bench.cluster)["apiserver"][0]
        asyncio.run(main_async(args, apiserver, str(bench.cluster.kubeconfig)))


if __name__ == "__main__":
    main()

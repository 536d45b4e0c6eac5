"""Our Job watch (kube/watch.py) against the real API server: it sees a Job created, finished and
deleted; it resumes when the API server ends the stream (a short timeoutSeconds) without missing
or repeating a change; and it lists again when its resourceVersion is too old (410)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import kubernetes

import localcluster  # (hack/, on the path through tests/integration/conftest.py)
from tests.harness import SUCCEEDS, Kube, wait_for
from trigger_operator.api import LABEL_TRIGGER
from trigger_operator.jobs.observe import JobPhase, observe_job
from trigger_operator.kube.watch import JobWatch, http_client

WAIT = 60.0  # a safety net for a broken watch, not a measure of speed


def job(name: str, trigger: str = "t") -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {LABEL_TRIGGER: trigger}},
            "spec": {"backoffLimit": 0, "template": SUCCEEDS.pod_template()}}


class Seen:
    """What the watch delivered, and a way to wait for something in it."""

    def __init__(self) -> None:
        self.events: list[tuple[str | None, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    def __call__(self, kind: str | None, body: dict[str, Any]) -> None:
        self.events.append((kind, body))
        self.changed.set()

    async def until(self, what: str, probe: Callable[[], bool]) -> None:
        async def waiting() -> None:
            while not probe():  # looked at on each delivery, and now and then (requests come without one)
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.2)
        try:
            await asyncio.wait_for(waiting(), WAIT)
        except TimeoutError:
            raise AssertionError(f"the watch never delivered {what}; it delivered {self.names()}") from None

    def names(self) -> list[tuple[str | None, str]]:
        return [(kind, body["metadata"]["name"]) for kind, body in self.events]


def watching(kube: Kube, namespace: str, scenario: Callable[[JobWatch, Seen, list[httpx.Request]], Awaitable[None]],
             *, timeout_seconds: int = 300) -> None:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=configuration)

    async def run() -> None:
        requests: list[httpx.Request] = []

        async def record(request: httpx.Request) -> None:
            requests.append(request)
        client = http_client(configuration)
        client.event_hooks["request"].append(record)
        seen = Seen()
        watch = JobWatch(seen, namespaces=(namespace,), timeout_seconds=timeout_seconds,
                         configuration=configuration, client=client)
        try:
            await scenario(watch, seen, requests)
        finally:
            await watch.close()
    asyncio.run(run())


def test_the_watch_sees_a_job_created_finished_and_deleted_across_streams_the_server_ends(
        kube: Kube, namespace: str) -> None:
    async def scenario(watch: JobWatch, seen: Seen, requests: list[httpx.Request]) -> None:
        await asyncio.to_thread(kube.batch.create_namespaced_job, namespace, job("before"))
        unlabelled = {**job("x"), "metadata": {"name": "unlabelled"}}
        await asyncio.to_thread(kube.batch.create_namespaced_job, namespace, unlabelled)
        watch.follow([LABEL_TRIGGER])
        await seen.until("the listed Job", lambda: (None, "before") in seen.names())
        await asyncio.to_thread(kube.batch.create_namespaced_job, namespace, job("during"))
        await seen.until("the new Job's ADDED", lambda: ("ADDED", "during") in seen.names())
        await seen.until("both Jobs finished", lambda: all(
            any(observe_job(b).phase is JobPhase.SUCCEEDED for _, b in seen.events if b["metadata"]["name"] == n)
            for n in ("before", "during")))
        # The server ends each watch after 1 s: the watch must have resumed, from where it was.
        await seen.until("a resumed watch", lambda: sum(1 for r in requests if r.url.params.get("watch")) >= 3)
        await asyncio.to_thread(kube.batch.delete_namespaced_job, "during", namespace,
                                propagation_policy="Background")
        await seen.until("the deletion", lambda: ("DELETED", "during") in seen.names())
        names = seen.names()
        assert all(name != "unlabelled" for _, name in names)  # the label selector is the server's
        assert names.count(("ADDED", "during")) == 1  # resumed from the last resourceVersion, no replay
        assert sum(1 for kind, _ in names if kind is None) == 1  # listed once: no 410, no re-list
        watches = [r.url.params for r in requests if r.url.params.get("watch")]
        versions = [int(p["resourceVersion"]) for p in watches]
        assert versions == sorted(versions) and all(p["allowWatchBookmarks"] == "true" for p in watches)
    watching(kube, namespace, scenario, timeout_seconds=1)


def restart_api_server(kube: Kube) -> None:
    """Restarts the harness's API server (a crash and a start): its watch cache begins again at the
    current revision, so that an older resourceVersion is answered 410. A cluster the harness did not
    start is left alone: its API server's cache began long after revision 1."""
    folder = kube.kubeconfig.parent
    if not (folder / "commands.json").exists():
        return
    cluster = localcluster.Cluster(folder=folder, kubeconfig=kube.kubeconfig, server="",
                                   bin_dir=localcluster.build_binaries())
    localcluster.restart(cluster, "kube-apiserver", down_seconds=0.5)

    def back() -> bool:
        try:
            return kube.core.list_namespace(limit=1) is not None
        except Exception:  # refused while it starts
            return False
    wait_for("the API server back", back, timeout=WAIT)


def test_the_watch_lists_again_when_its_resource_version_is_too_old(kube: Kube, namespace: str) -> None:
    kube.batch.create_namespaced_job(namespace, job("existing"))
    restart_api_server(kube)

    async def scenario(watch: JobWatch, seen: Seen, requests: list[httpx.Request]) -> None:
        # As after a long outage: resume from a resourceVersion the API server no longer keeps.
        task = asyncio.create_task(watch.run(f"/apis/batch/v1/namespaces/{namespace}/jobs", LABEL_TRIGGER, "1"))
        try:
            await seen.until("the Job, listed again", lambda: (None, "existing") in seen.names())
            await asyncio.to_thread(kube.batch.create_namespaced_job, namespace, job("after"))
            await seen.until("a Job created after the re-list", lambda: ("ADDED", "after") in seen.names())
        finally:
            task.cancel()
        first, relist = requests[0].url.params, requests[1].url.params
        assert first["watch"] == "1" and first["resourceVersion"] == "1"
        assert "watch" not in relist and relist["labelSelector"] == LABEL_TRIGGER
        assert ("ADDED", "existing") not in seen.names()  # the old events were not replayed: 410, then a list
    watching(kube, namespace, scenario)

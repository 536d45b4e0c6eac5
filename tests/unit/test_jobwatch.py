"""Our Job watch: what a line is slimmed to (jobs/wire.py), the sharded mode's labels and selectors
(core/sharding.py), which Jobs the store keeps, and the watch's protocol (kube/watch.py) against a
scripted API server: list, watch, resume from the last resourceVersion, re-list on 410, back off."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.unit.conftest import NAMESPACE, TRIGGER_NAME, TRIGGER_UID, at, job_template
from trigger_operator.api import ANNOTATION_SCHEDULED_TIME, FINALIZER, LABEL_SHARD, LABEL_TRIGGER
from trigger_operator.controller.store import Store
from trigger_operator.core.sharding import job_selectors, shard_label, shard_of
from trigger_operator.handlers import plain_namespaces
from trigger_operator.jobs.observe import observe_job
from trigger_operator.jobs.render import TriggerRef, render_job
from trigger_operator.jobs.wire import WireError, decode_event, decode_list
from trigger_operator.kube import watch as watch_module
from trigger_operator.kube.watch import JobWatch
from trigger_operator.model.status import RunKind

REF = TriggerRef(namespace=NAMESPACE, name=TRIGGER_NAME, uid=TRIGGER_UID, action_type="cluster", action_config={})


def job_as_served(name: str = "nightly-1", *, rv: str = "100", conditions: list[dict[str, Any]] | None = None,
                  deleting: bool = False, extra_owner: bool = False) -> dict[str, Any]:
    """A Job as the API server sends it: our manifest plus what the server adds (managedFields,
    defaults, the Job controller's labels, status)."""
    job = render_job(REF, name=name, kind=RunKind.SCHEDULED, scheduled_time=at(), template=job_template())
    meta = job["metadata"]
    meta.update(uid=f"uid-{name}", resourceVersion=rv, generation=1, creationTimestamp="2026-03-02T10:00:00Z")
    meta["labels"].update({"batch.kubernetes.io/job-name": name, "controller-uid": f"uid-{name}"})
    meta["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{" + "x" * 2000 + "}"
    meta["managedFields"] = [{"manager": "trigger-operator", "operation": "Update", "fieldsType": "FieldsV1",
                              "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}}]
    if extra_owner:
        meta["ownerReferences"].insert(0, {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "not-it"})
    if deleting:
        meta["deletionTimestamp"] = "2026-03-02T10:05:00Z"
    job["spec"].update(completions=1, parallelism=1, selector={"matchLabels": {"controller-uid": f"uid-{name}"}})
    job["status"] = {"startTime": "2026-03-02T10:00:01Z", "active": 1, "ready": 0,
                     "uncountedTerminatedPods": {}, "conditions": conditions or []}
    return job


FAILED = [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "early"},
          {"type": "Failed", "status": "True", "lastTransitionTime": "2026-03-02T10:01:00Z",
           "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]
COMPLETE = [{"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-03-02T10:00:30Z"},
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-03-02T10:00:31Z"},
            {"type": "Failed", "status": "False", "lastTransitionTime": "2026-03-02T10:00:31Z"}]


def line(event_type: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": body}).encode()


@pytest.mark.parametrize("job", [
    job_as_served(), job_as_served(conditions=FAILED), job_as_served(conditions=COMPLETE),
    job_as_served(deleting=True, extra_owner=True),
    {**job_as_served(), "status": {}}, {"metadata": {"name": "bare", "namespace": NAMESPACE}},
], ids=["running", "failed", "complete", "deleting", "no-status", "bare"])
def test_a_slimmed_job_reads_as_the_whole_one(job: dict[str, Any]) -> None:
    kind, slim = decode_event(line("MODIFIED", job))
    assert kind == "MODIFIED"
    assert observe_job(slim) == observe_job(job)
    assert observe_job(slim, deleted=True) == observe_job(job, deleted=True)


def test_a_slimmed_job_keeps_only_what_is_read() -> None:
    job = job_as_served(conditions=COMPLETE)
    _, slim = decode_event(line("ADDED", job))
    assert set(slim) == {"metadata", "status"}  # no spec (the pod template)
    assert "managedFields" not in slim["metadata"]
    assert slim["metadata"]["labels"] == {LABEL_TRIGGER: TRIGGER_NAME}
    assert slim["metadata"]["annotations"] == {ANNOTATION_SCHEDULED_TIME: job["metadata"]["annotations"][
        ANNOTATION_SCHEDULED_TIME]}
    assert slim["metadata"]["finalizers"] == [FINALIZER]
    assert [c["type"] for c in slim["status"]["conditions"]] == ["Complete"]
    assert len(json.dumps(slim)) * 4 < len(json.dumps(job))


def test_an_error_line_and_a_bookmark_and_garbage() -> None:
    gone = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version: 1 (2)", "reason": "Expired", "code": 410}
    assert decode_event(line("ERROR", gone)) == ("ERROR", {"code": 410, "reason": "Expired",
                                                           "message": "too old resource version: 1 (2)"})
    bookmark = {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"resourceVersion": "12345"}}
    kind, body = decode_event(line("BOOKMARK", bookmark))
    assert kind == "BOOKMARK" and body["metadata"]["resourceVersion"] == "12345"
    with pytest.raises(WireError):
        decode_event(b"{not json")


def test_a_list_page_decodes_its_items_version_and_continue_token() -> None:
    jobs = [job_as_served("a"), job_as_served("b", conditions=FAILED)]
    page = {"kind": "JobList", "metadata": {"resourceVersion": "77", "continue": "abc"}, "items": jobs}
    items, version, token = decode_list(json.dumps(page).encode())
    assert [i["metadata"]["name"] for i in items] == ["a", "b"] and version == "77" and token == "abc"
    assert [observe_job(i) for i in items] == [observe_job(j) for j in jobs]
    assert decode_list(b'{"metadata": {"resourceVersion": "5"}, "items": null}') == ([], "5", None)


# --- the sharded mode ----------------------------------------------------------------------------

def test_the_shard_label_names_the_shard_and_the_count() -> None:
    for name in ("a", "b", "nightly", "t-0042"):
        assert shard_label(NAMESPACE, name, 6) == f"{shard_of(NAMESPACE, name, 6)}-of-6"
    assert render_job(REF, name="j", kind=RunKind.SCHEDULED, scheduled_time=at(), template=job_template(),
                      shard="2-of-6")["metadata"]["labels"][LABEL_SHARD] == "2-of-6"
    assert LABEL_SHARD not in render_job(REF, name="j", kind=RunKind.SCHEDULED, scheduled_time=at(),
                                         template=job_template())["metadata"]["labels"]


@pytest.mark.parametrize(("held", "shards", "expected"), [
    ((), 1, (LABEL_TRIGGER,)),
    ((0,), 0, (LABEL_TRIGGER,)),
    ((), 4, ()),
    ((3, 1), 4, (f"{LABEL_TRIGGER},{LABEL_SHARD} in (1-of-4,3-of-4)",
                 f"{LABEL_TRIGGER},{LABEL_SHARD} notin (0-of-4,1-of-4,2-of-4,3-of-4)")),
])
def test_the_job_watch_selectors(held: tuple[int, ...], shards: int, expected: tuple[str, ...]) -> None:
    assert job_selectors(held, shards) == expected


def test_the_store_keeps_only_the_jobs_of_triggers_it_keeps_and_forgets_the_others() -> None:
    kept = {TRIGGER_NAME}
    store = Store(None, lambda key: None, keeps=lambda key: key[1] in kept)  # type: ignore[arg-type]
    other = copy.deepcopy(job_as_served("other-1"))
    other["metadata"]["labels"][LABEL_TRIGGER] = "other"
    store.on_job("ADDED", decode_event(line("ADDED", job_as_served()))[1])
    store.on_job("ADDED", decode_event(line("ADDED", other))[1])
    assert set(store.jobs) == {(NAMESPACE, TRIGGER_NAME)}
    kept.clear()
    store.forget_unkept()
    assert store.jobs == {} and store.job_seen_at == {}


@pytest.mark.parametrize(("patterns", "expected"), [
    ((), ()), (("a",), ("a",)), (("a", "b,c", "a"), ("a", "b", "c")),
    (("team-*",), ()), (("a", "!b"), ()), (("a,",), ()),
])
def test_plain_namespaces_get_a_watch_each_and_globs_one_of_all(patterns: tuple[str, ...],
                                                                 expected: tuple[str, ...]) -> None:
    assert plain_namespaces(patterns) == expected


# --- the protocol --------------------------------------------------------------------------------

class Server:
    """A scripted API server: each request is answered by the next of ``answers`` (a function of
    the request), and recorded."""

    def __init__(self, answers: list[Callable[[httpx.Request], httpx.Response]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []
        self.done = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            self.done.set()
            await asyncio.Event().wait()  # hangs, as a watch with nothing to say
        return self.answers.pop(0)(request)


def listed(version: str, *names: str, token: str | None = None) -> Callable[[httpx.Request], httpx.Response]:
    page = {"metadata": {"resourceVersion": version, **({"continue": token} if token else {})},
            "items": [job_as_served(n) for n in names]}
    return lambda request: httpx.Response(200, json=page)


def streamed(*events: tuple[str, dict[str, Any]], status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    content = b"".join(line(kind, body) + b"\n" for kind, body in events)
    return lambda request: httpx.Response(status, content=content)


def with_rv(body: dict[str, Any], rv: str) -> dict[str, Any]:
    body["metadata"]["resourceVersion"] = rv
    return body


def test_the_watch_lists_watches_resumes_and_lists_again_after_410(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "BACKOFFS", (0.0,))
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    server = Server([
        listed("10", "a", token="more"), listed("11", "b"),  # two pages
        streamed(("ADDED", job_as_served("c", rv="12")), ("BOOKMARK", {"metadata": {"resourceVersion": "15"}})),
        lambda request: httpx.Response(500, text="etcd is away"),  # backs off, resumes from 15
        streamed(("DELETED", job_as_served("a", rv="16")), ("ERROR", gone)),  # 410 inside the stream
        listed("20", "b"),
        streamed(status=410),  # 410 as the answer
        listed("30"),
    ])
    seen: list[tuple[str | None, str]] = []

    async def scenario() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="https://api")
        watch = JobWatch(lambda kind, body: seen.append((kind, body["metadata"]["name"])), namespaces=(NAMESPACE,),
                         client=client, timeout_seconds=7, configuration=_Config())
        watch.follow([LABEL_TRIGGER])
        await server.done.wait()
        await watch.close()

    asyncio.run(scenario())
    assert seen == [(None, "a"), (None, "b"), ("ADDED", "c"), ("DELETED", "a"), (None, "b")]
    params = [dict(r.url.params) for r in server.requests]
    assert all(r.url.path == f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs" for r in server.requests)
    assert all(p["labelSelector"] == LABEL_TRIGGER for p in params)
    # The token is asked for per request (a refreshed one is used at once).
    assert [r.headers["Authorization"] for r in server.requests] == [
        f"Bearer the-token-{i}" for i in range(1, len(server.requests) + 1)]
    assert params[1]["continue"] == "more" and "watch" not in params[1]
    watches = [p for p in params if p.get("watch")]
    assert [p["resourceVersion"] for p in watches] == ["11", "15", "15", "20", "30"]
    assert all(p["allowWatchBookmarks"] == "true" and p["timeoutSeconds"] == "7" for p in watches)


def test_a_watch_of_all_namespaces_keeps_only_the_watched_ones_and_follow_replaces_the_selectors() -> None:
    other = with_rv(job_as_served("x"), "3")
    other["metadata"]["namespace"] = "elsewhere"
    server = Server([listed("1", "a"), streamed(("ADDED", other), ("ADDED", with_rv(job_as_served("b"), "4")))])
    seen: list[str] = []

    async def scenario() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="https://api")
        watch = JobWatch(lambda kind, body: seen.append(body["metadata"]["name"]),
                         accepts=lambda namespace: namespace == NAMESPACE, client=client, configuration=_Config())
        watch.follow(["s1", "s2"])
        watch.follow(["s3"])  # the first two never ran
        await server.done.wait()
        await watch.close()

    asyncio.run(scenario())
    assert seen == ["a", "b"]
    assert {r.url.path for r in server.requests} == {"/apis/batch/v1/jobs"}
    assert {r.url.params["labelSelector"] for r in server.requests} == {"s3"}


class _Config:
    """The kubernetes Configuration's auth surface, with a token that a refresh hook would return."""

    username = ""

    def __init__(self) -> None:
        self.asked = 0

    def auth_settings(self) -> dict[str, dict[str, str]]:
        self.asked += 1
        return {"BearerToken": {"type": "api_key", "in": "header", "key": "authorization",
                                "value": f"Bearer the-token-{self.asked}"}}


def test_the_store_keeps_triggers_without_managed_fields_from_the_watch_and_from_our_writes() -> None:
    """managedFields repeat the shape of the whole spec and status (half of a Trigger's memory at
    5,000 Triggers) and nothing reads them from the store; everything else is kept as given."""
    managed = [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {".": {}, "f:triggerType": {}}}, "time": "2026-03-02T10:00:00Z"}]

    def trigger(rv: str, count: int) -> dict[str, Any]:
        return {"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger",
                "metadata": {"name": TRIGGER_NAME, "namespace": NAMESPACE, "uid": TRIGGER_UID, "resourceVersion": rv,
                             "annotations": {"a": "b"}, "managedFields": copy.deepcopy(managed)},
                "spec": {"triggerType": "cron"}, "status": {"executionCount": count}}

    changed: list[tuple[str, str]] = []
    store = Store(None, changed.append)  # type: ignore[arg-type]
    watched = trigger("5", 1)
    store.on_trigger("ADDED", watched)
    kept = store.trigger((NAMESPACE, TRIGGER_NAME))
    assert kept is not None and "managedFields" not in kept["metadata"]
    assert kept["metadata"] == {k: v for k, v in watched["metadata"].items() if k != "managedFields"}
    assert kept["spec"] == watched["spec"] and kept["status"] == watched["status"]
    assert watched["metadata"]["managedFields"] == managed  # the body given is not changed
    written = trigger("6", 2)
    assert store.wrote((NAMESPACE, TRIGGER_NAME), written)
    kept = store.trigger((NAMESPACE, TRIGGER_NAME))
    assert kept is not None and "managedFields" not in kept["metadata"]
    assert kept["metadata"]["resourceVersion"] == "6" and kept["status"] == {"executionCount": 2}
    assert written["metadata"]["managedFields"] == managed
    assert [t["metadata"].get("managedFields") for t in store.triggers_in(NAMESPACE)] == [None]

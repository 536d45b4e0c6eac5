"""The hot calls' protocol (kube/api.py `_send`: create, get, release and delete a Job, patch a
Trigger's status, from the event loop through aiohttp) against a scripted API server on loopback:
the requests as the API server expects them, its refusals classified as the official client's
path classifies them, the in_time check right before a request goes out, the request metrics, the
token asked for per request, and the Job answers slimmed to what the store reads."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kubernetes
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes.client.exceptions import ApiException

from tests.unit.test_jobwatch import COMPLETE, job_as_served
from trigger_operator.api import FINALIZER
from trigger_operator.config import KubeSettings
from trigger_operator.jobs.observe import observe_job
from trigger_operator.kube.api import KubeApi, _classify
from trigger_operator.kube.interface import AlreadyExists, Conflict, NotFound, Rejected, RetryLater, TooLate

JOBS = "/apis/batch/v1/namespaces/ns/jobs"


@dataclass
class Seen:
    """A request as the scripted API server received it."""

    method: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.raw_path.split("?", 1)[0]


Handler = Callable[[Seen], Awaitable[web.Response]]


def status_body(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}


def run(handler: Handler, scenario: Callable[[KubeApi], Awaitable[None]], *, threads: int = 64,
        config: Any | None = None, seen: list[tuple[str, str, str]] | None = None,
        requests: list[Seen] | None = None, host: str | None = None) -> None:
    async def serve(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        got = Seen(request.method, request.raw_path, dict(request.query), headers, await request.read())
        if requests is not None:
            requests.append(got)
        return await handler(got)

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", serve)
        async with TestServer(app, host="127.0.0.1") as server:
            configuration = config or kubernetes.client.Configuration()
            configuration.host = host or f"http://127.0.0.1:{server.port}"
            told = seen if seen is not None else []
            api = KubeApi(KubeSettings(threads=threads), observe=lambda v, r, o, s: told.append((v, r, o)),
                          configuration=configuration)
            try:
                await scenario(api)
            finally:
                await api.aclose()
    asyncio.run(main())


def answering(code: int, body: Any = None) -> Handler:
    async def handler(request: Seen) -> web.Response:
        return web.json_response(body, status=code) if body is not None else web.Response(status=code)
    return handler


# --- refusals: the same classes as the official client's path (`_classify`) -----------------------

REFUSALS = [
    (404, "jobs.batch \"x\" not found", NotFound),
    (409, "jobs.batch \"x\" already exists", AlreadyExists),
    (422, "Job.batch \"x\" is invalid: spec.template: Required value", Rejected),
    (400, "bad request", Rejected),
    (413, "request entity too large", Rejected),
    (403, "jobs is forbidden: User cannot create", Rejected),
    (403, "jobs \"x\" is forbidden: exceeded quota: q, requested: count/jobs.batch=1", RetryLater),
    (500, "etcdserver: request is too large", Rejected),
    (429, "too many requests", ApiException),
    (500, "internal error", ApiException),
    (503, "unavailable", ApiException),
]


@pytest.mark.parametrize(("code", "message", "expected"), REFUSALS, ids=[f"{c}-{e.__name__}" for c, _, e in REFUSALS])
def test_a_create_refused_is_classified_as_the_official_clients(code: int, message: str,
                                                                 expected: type[Exception]) -> None:
    caught: list[BaseException] = []

    async def scenario(api: KubeApi) -> None:
        with pytest.raises(expected) as raised:
            await api.create_job("ns", {"metadata": {"name": "x"}})
        caught.append(raised.value)
    run(answering(code, status_body(code, message)), scenario)
    # The same refusal through the official client's path: the same class, message and status.
    official = _classify(ApiException(status=code, reason="Reason", body=json.dumps(status_body(code, message))))
    expected_class = AlreadyExists if isinstance(official, Conflict) else type(official)
    assert type(caught[0]) is expected_class
    if isinstance(official, Rejected | RetryLater):
        assert str(caught[0]) == str(official) == message
    if isinstance(official, Rejected):
        assert isinstance(caught[0], Rejected) and caught[0].status == official.status == code
    if isinstance(caught[0], ApiException):  # left to the callers as the official client left it
        assert caught[0].status == code and message in str(caught[0].body)


def test_a_missing_job_is_none_or_false_and_a_stale_status_write_a_conflict() -> None:
    async def scenario(api: KubeApi) -> None:
        assert await api.get_job("ns", "x") is None
        assert await api.release_job("ns", "x") is None
        assert await api.delete_job("ns", "x") is False
    run(answering(404, status_body(404, "not found")), scenario)

    async def stale(api: KubeApi) -> None:
        with pytest.raises(Conflict):
            await api.patch_trigger_status("ns", "t", "41", {"lastScheduleTime": None})
    run(answering(409, status_body(409, "the object has been modified")), stale)

    async def gone(api: KubeApi) -> None:
        with pytest.raises(NotFound):
            await api.patch_trigger_status("ns", "t", "41", {})
    run(answering(404, status_body(404, "not found")), gone)


# --- the requests as the API server expects them ----------------------------------------------------

def test_the_hot_calls_send_what_the_official_client_sent() -> None:
    requests: list[Seen] = []
    trigger = {"metadata": {"name": "t", "namespace": "ns", "resourceVersion": "42"}, "status": {"x": 1}}

    async def scenario(api: KubeApi) -> None:
        await api.create_job("ns", {"metadata": {"name": "x"}, "spec": {}})
        await api.patch_trigger_status("ns", "t", "41", {"nextScheduledAt": "2026-03-02T10:00:00Z"})
        await api.release_job("ns", "x")
        await api.delete_job("ns", "x")
        await api.get_job("ns", "x")
    run(answering(200, trigger), scenario, requests=requests)
    create, status, release, delete, get = requests
    assert (create.method, create.path, create.headers["content-type"]) == ("POST", JOBS, "application/json")
    assert json.loads(create.body) == {"metadata": {"name": "x"}, "spec": {}}
    assert (status.method, status.path) == (
        "PATCH", "/apis/trigger-operator.io/v1alpha1/namespaces/ns/triggers/t/status")
    assert status.headers["content-type"] == "application/merge-patch+json"
    assert json.loads(status.body) == {"metadata": {"resourceVersion": "41"},
                                       "status": {"nextScheduledAt": "2026-03-02T10:00:00Z"}}
    assert (release.method, release.path) == ("PATCH", f"{JOBS}/x")
    assert release.headers["content-type"] == "application/strategic-merge-patch+json"
    assert json.loads(release.body) == {"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}}
    assert (delete.method, delete.path, delete.query, delete.body) == (
        "DELETE", f"{JOBS}/x", {"propagationPolicy": "Foreground"}, b"")
    assert (get.method, get.path, get.body) == ("GET", f"{JOBS}/x", b"")
    assert all(r.headers["accept"] == "application/json" for r in requests)


def test_a_name_is_one_path_segment() -> None:
    requests: list[Seen] = []

    async def scenario(api: KubeApi) -> None:
        await api.get_job("ns", "../../secrets/x")
    run(answering(404, status_body(404, "not found")), scenario, requests=requests)
    assert requests[0].raw_path == "/apis/batch/v1/namespaces/ns/jobs/..%2F..%2Fsecrets%2Fx"


def test_the_status_answer_is_the_whole_trigger_and_job_answers_are_slim() -> None:
    served = job_as_served(conditions=COMPLETE)
    trigger = {"metadata": {"name": "t", "resourceVersion": "42", "managedFields": [{"manager": "m"}]},
               "spec": {"schedule": "* * * * *"}, "status": {"recentExecutions": [{"name": "a"}]}}

    async def handler(request: Seen) -> web.Response:
        return web.json_response(trigger if request.path.endswith("/status") else served)

    async def scenario(api: KubeApi) -> None:
        assert await api.patch_trigger_status("ns", "t", "41", {}) == trigger  # the store keeps it whole
        for job in (await api.create_job("ns", {}), await api.release_job("ns", "x"), await api.get_job("ns", "x")):
            assert job is not None
            assert observe_job(job) == observe_job(served)
            assert "spec" not in job and "managedFields" not in job["metadata"]
    run(handler, scenario)


def test_the_token_is_asked_for_per_request() -> None:
    """A rotated token (the in-cluster file re-read, an exec plugin) is used from the next call on."""
    requests: list[Seen] = []
    config = kubernetes.client.Configuration()
    config.api_key = {"authorization": "first"}
    config.api_key_prefix = {"authorization": "Bearer"}

    async def scenario(api: KubeApi) -> None:
        await api.delete_job("ns", "a")
        config.api_key = {"authorization": "second"}
        await api.delete_job("ns", "b")
    run(answering(200, {}), scenario, config=config, requests=requests)
    assert [r.headers["authorization"] for r in requests] == ["Bearer first", "Bearer second"]


# --- in_time, asked right before the request goes out --------------------------------------------------

def test_a_create_too_late_is_never_sent_nor_counted() -> None:
    requests: list[Seen] = []
    seen: list[tuple[str, str, str]] = []

    async def scenario(api: KubeApi) -> None:
        with pytest.raises(TooLate):
            await api.create_job("ns", {"metadata": {"name": "x"}}, in_time=lambda: False)
    run(answering(201, job_as_served()), scenario, seen=seen, requests=requests)
    assert requests == [] and seen == []


def test_in_time_is_asked_once_a_call_may_go_not_when_it_was_queued() -> None:
    """With every place in flight taken, a create waits; its in_time is asked when it may go out,
    and a decision grown too old meanwhile sends nothing."""
    order: list[str] = []
    arrived, release = asyncio.Event(), asyncio.Event()

    async def handler(request: Seen) -> web.Response:
        order.append(f"sent {request.method} {request.path}")
        if request.method == "DELETE":
            arrived.set()
            await release.wait()
        return web.json_response(job_as_served(), status=201)

    async def scenario(api: KubeApi) -> None:
        stale = [False]

        def in_time() -> bool:
            order.append("asked")
            return not stale[0]

        first = asyncio.create_task(api.delete_job("ns", "old"))
        await arrived.wait()  # the one place in flight is taken
        create = asyncio.create_task(api.create_job("ns", {}, in_time=in_time))
        for _ in range(20):
            await asyncio.sleep(0)
        assert order == [f"sent DELETE {JOBS}/old"]  # the create waits for a place, unasked
        stale[0] = True  # the pass grew too old while it waited
        release.set()
        await first
        with pytest.raises(TooLate):
            await create
    run(handler, scenario, threads=1)
    assert order == [f"sent DELETE {JOBS}/old", "asked"]


# --- the request metrics ---------------------------------------------------------------------------------

def test_each_hot_call_is_counted_with_its_verb_resource_and_outcome() -> None:
    seen: list[tuple[str, str, str]] = []

    async def handler(request: Seen) -> web.Response:
        return web.json_response({"metadata": {"name": "x"}}, status=404 if request.method == "GET" else 200)

    async def scenario(api: KubeApi) -> None:
        await api.create_job("ns", {})
        await api.patch_trigger_status("ns", "t", "1", {})
        await api.release_job("ns", "x")
        await api.get_job("ns", "x")
        await api.delete_job("ns", "x")
    run(handler, scenario, seen=seen)
    assert seen == [("create", "jobs", "200"), ("patch", "triggers/status", "200"), ("patch", "jobs", "200"),
                    ("get", "jobs", "404"), ("delete", "jobs", "200")]


def test_an_api_server_away_is_an_error_counted_as_such() -> None:
    seen: list[tuple[str, str, str]] = []
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    async def scenario(api: KubeApi) -> None:
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.delete_job("ns", "x")
    run(answering(200, {}), scenario, seen=seen, host=f"http://127.0.0.1:{port}")
    assert seen == [("delete", "jobs", "error")]

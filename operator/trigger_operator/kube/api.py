"""`ClusterApi` against a real API server: the only module that calls the Kubernetes API for the
controller (kopf watches the Triggers; kube/watch.py our Jobs).

The hot calls of a run (create a Job, patch a Trigger's status, release and delete a Job, and get
one) go out from the event loop through aiohttp (`_send`), and a Job's answer is decoded straight
into the few fields the store reads (jobs/wire.py): on a real control plane that costs the
operator half the CPU of the official client in threads, and httpx cost five to eight times more
(bench/clients.py, docs/bench.md "Where the time goes"). Every other call goes through the
official client, which is synchronous, so each runs in a worker thread. `KubeSettings.threads`
bounds both: the calls in flight through each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import kubernetes
import msgspec
import yarl
from kubernetes.client.exceptions import ApiException

from trigger_operator.api import API_VERSION, FINALIZER, GROUP, KIND, LABEL_TRIGGER, PLURAL, VERSION
from trigger_operator.config import HttpSettings, KubeSettings
from trigger_operator.jobs.wire import decode_job
from trigger_operator.kube.interface import (
    AlreadyExists,
    Body,
    Conflict,
    Identity,
    NotFound,
    Rejected,
    RetryLater,
    TooLate,
)
from trigger_operator.kube.watch import auth_headers, proxy_of, tls_context
from trigger_operator.logs import about
from trigger_operator.model.notice import Notice
from trigger_operator.model.status import cut, format_time

log = logging.getLogger(__name__)
HOT_TIMEOUT_SECONDS = 30.0  # a hot call's connect, and each read of its answer (`KubeApi._send`)
EVENT_THREADS = 2
INBOX_THREADS = 2

RequestObserver = Callable[[str, str, str, float], None]
"""Told of every API call: verb, resource, outcome (the HTTP status code, or ``error`` when no
response came) and seconds taken. The metrics sit above this layer, so they arrive as a callback."""

# The client's method -> (verb, resource), for the request metrics' bounded labels.
_REQUESTS: dict[str, tuple[str, str]] = {
    "get_namespaced_custom_object": ("get", "triggers"),
    "list_namespaced_custom_object": ("list", "triggers"),
    "patch_namespaced_custom_object_status": ("patch", "triggers/status"),
    "create_namespaced_job": ("create", "jobs"),
    "read_namespaced_job": ("get", "jobs"),
    "delete_namespaced_job": ("delete", "jobs"),
    "patch_namespaced_job": ("patch", "jobs"),
    "list_namespaced_job": ("list", "jobs"),
    "list_namespaced_pod": ("list", "pods"),
    "read_namespaced_config_map": ("get", "configmaps"),
    "create_namespaced_config_map": ("create", "configmaps"),
    "list_namespaced_config_map": ("list", "configmaps"),
    "delete_namespaced_config_map": ("delete", "configmaps"),
    "read_namespaced_secret": ("get", "secrets"),
    "create_namespaced_event": ("create", "events"),
    "create_token_review": ("create", "tokenreviews"),
    "create_subject_access_review": ("create", "subjectaccessreviews"),
    "read_namespaced_lease": ("get", "leases"),
    "create_namespaced_lease": ("create", "leases"),
    "replace_namespaced_lease": ("update", "leases"),
    "list_namespaced_lease": ("list", "leases"),
    "delete_namespaced_lease": ("delete", "leases"),
    "_get_path": ("get", "other"),  # discovery, and an object source of any kind
}


def _no_observer(verb: str, resource: str, outcome: str, seconds: float) -> None:
    pass


def load_client_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def _classify(error: ApiException) -> Exception:
    return classify(error.status, error.reason, error.body) or error


def classify(status: int | None, reason: str | None, body: bytes | str | None) -> Exception | None:
    """Our exception for an API server's refusal (its HTTP status, reason phrase and Status body),
    whichever client got it; None where the caller's own error stays (429, most 5xx, no answer)."""
    if status == 409:
        return Conflict(reason)
    if status == 404:
        return NotFound(reason)
    message = _api_message(reason, body)
    if status == 403 and "exceeded quota" in message:
        return RetryLater(message)  # a ResourceQuota frees up as Jobs finish and are pruned
    if status in (400, 403, 413, 422):
        return Rejected(message, status)
    if "request is too large" in message:  # etcd's answer to an object over its bound (HTTP 500)
        return Rejected(message, status)
    return None


def _api_message(reason: str | None, body: bytes | str | None) -> str:
    try:
        return str(json.loads(body).get("message") or reason)  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        return str(reason)


def _segment(name: str) -> str:
    return urllib.parse.quote(name, safe="")  # a name is one path segment, never more


def _jobs(namespace: str) -> str:
    return f"/apis/batch/v1/namespaces/{_segment(namespace)}/jobs"


def _triggers(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{_segment(namespace)}/{PLURAL}"


class KubeApi:
    def __init__(self, settings: KubeSettings, observe: RequestObserver = _no_observer,
                 review_threads: int = HttpSettings.review_threads, configuration: Any | None = None) -> None:
        self._observe = observe
        self._pool = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="kube")
        # Events have their own few threads, so a burst of them never queues a reconcile's calls.
        self._event_pool = ThreadPoolExecutor(max_workers=EVENT_THREADS, thread_name_prefix="kube-events")
        # So have TokenReviews and SubjectAccessReviews: a flood of callers' tokens waits for these
        # threads and never takes the ones that create Jobs.
        self._review_pool = ThreadPoolExecutor(max_workers=review_threads, thread_name_prefix="kube-reviews")
        # And the event inbox's creates (one at a time): a 202 waits for them, never behind the folds'
        # status writes or a burst of Job creates in the main pool.
        self._inbox_pool = ThreadPoolExecutor(max_workers=INBOX_THREADS, thread_name_prefix="kube-inbox")
        # One pooled connection per thread: the client's default pool (5 per CPU) is smaller than
        # the thread pool, and each call beyond it opened, and threw away, a TLS connection.
        configuration = configuration or kubernetes.client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = settings.threads + EVENT_THREADS + review_threads + INBOX_THREADS
        client = self._client = kubernetes.client.ApiClient(configuration)
        self._discovered: dict[str, dict[str, tuple[str, bool]]] = {}  # apiVersion -> kind -> (plural, namespaced)
        self._custom = kubernetes.client.CustomObjectsApi(client)
        self._batch = kubernetes.client.BatchV1Api(client)
        self._core = kubernetes.client.CoreV1Api(client)
        self._authn = kubernetes.client.AuthenticationV1Api(client)
        self._authz = kubernetes.client.AuthorizationV1Api(client)
        self._coordination = kubernetes.client.CoordinationV1Api(client)
        self._component = settings.component
        # The hot calls' client, made in the event loop on first use: as many connections as calls
        # in flight (`_send`'s semaphore), so that none waits for a connection after its in_time.
        self._config = configuration
        self._threads = settings.threads
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the session and semaphore are bound to
        # A proxy in the way (kubeconfig proxy-url, or HTTPS_PROXY unless NO_PROXY): the hot calls go
        # through the official client, as every other call, since aiohttp's proxies differ from
        # urllib3's (no SOCKS, no HTTPS proxy with its own TLS settings).
        self._proxied = proxy_of(configuration) is not None

    def _hot(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        """The session and the bound of calls in flight, made in the running loop (again, if a
        previous one was another loop's, as in tests that run several)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._in_flight is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=self._threads, ssl=tls_context(self._config))
            # Each step bounded, as the Job watch's are; a call as a whole may take longer under load.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=HOT_TIMEOUT_SECONDS,
                                            sock_read=HOT_TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
            self._in_flight, self._loop = asyncio.Semaphore(self._threads), loop
        return self._session, self._in_flight

    async def _send(self, method: str, path: str, verb: str, resource: str, *, body: Any = None,
                    content_type: str = "application/json", params: Mapping[str, str] | None = None,
                    in_time: Callable[[], bool] | None = None,
                    decode: Callable[[bytes], Any] | None = msgspec.json.decode) -> Any:
        """One call from the event loop (aiohttp): at most `KubeSettings.threads` in flight, like the
        threads of `_call_json`; ``in_time`` asked once one may go, right before it is sent; the
        token asked for per request (a rotated one is used); the answer decoded by ``decode``
        (None: not at all). Refusals are classified as `_call_json`'s; what `classify` leaves is
        raised as the official client's `ApiException`, so callers see one error type either way."""
        if self._proxied:
            status, reason, data = await self._send_by_thread(method, path, verb, resource, body, content_type,
                                                              params, in_time)
        else:
            content = msgspec.json.encode(body) if body is not None else None
            session, in_flight = self._hot()
            async with in_flight:
                if in_time is not None and not in_time():
                    raise TooLate(f"{verb} {resource}")
                headers = auth_headers(self._config)
                if content is not None:
                    headers["Content-Type"] = content_type
                url = yarl.URL(self._config.host.rstrip("/") + path, encoded=True)  # our segments are quoted
                started, outcome = time.perf_counter(), "error"
                try:
                    async with session.request(method, url, data=content, headers=headers, params=params,
                                               server_hostname=self._config.tls_server_name or None) as response:
                        data = await response.read()
                        status, reason = response.status, response.reason or ""
                    outcome = str(status)
                finally:
                    self._observe(verb, resource, outcome, time.perf_counter() - started)
        if status >= 300:
            error = classify(status, reason, data)
            if error is not None:
                raise error
            raise ApiException(status=status, reason=reason, body=data.decode(errors="replace"))
        return decode(data) if decode is not None and data else None

    async def _send_by_thread(self, method: str, path: str, verb: str, resource: str, body: Any,
                              content_type: str, params: Mapping[str, str] | None,
                              in_time: Callable[[], bool] | None) -> tuple[int, str, bytes]:
        """`_send`'s call through the official client's REST layer in a worker thread (its proxy,
        TLS and pool, as `_call_json`): ``in_time`` asked in the thread, right before it goes out."""
        url = self._config.host.rstrip("/") + path + (f"?{urllib.parse.urlencode(params)}" if params else "")

        def call() -> tuple[int, str, bytes]:
            if in_time is not None and not in_time():
                raise TooLate(f"{verb} {resource}")
            headers = auth_headers(self._config)
            if body is not None:
                headers["Content-Type"] = content_type  # a JSON type: the REST layer encodes ``body``
            started, outcome = time.perf_counter(), "error"
            try:
                response = self._client.rest_client.request(method, url, headers=headers, body=body,
                                                            _request_timeout=HOT_TIMEOUT_SECONDS)
                data = bytes(response.read() or b"")
                outcome = str(response.status)
                return int(response.status), str(response.reason or ""), data
            except ApiException as error:  # no answer (status 0), or retries given up: as `_call_json`
                outcome = str(error.status or "error")
                raise _classify(error) from error
            finally:
                self._observe(verb, resource, outcome, time.perf_counter() - started)

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def _call_json(self, fn: Callable[..., Any], *args: Any, pool: ThreadPoolExecutor | None = None,
                         in_time: Callable[[], bool] | None = None, **kwargs: Any) -> Any:
        """Like `_call`, but returns the response's JSON as plain data: the client's model
        (de)serialization costs more CPU than everything else the operator does per run. The body
        is read in the worker thread, never on the event loop."""
        verb, resource = _REQUESTS.get(getattr(fn, "__name__", ""), ("other", "other"))

        def call_and_read() -> bytes:
            if in_time is not None and not in_time():  # asked in the thread: the request goes out next
                raise TooLate(f"{verb} {resource}")
            started, outcome = time.perf_counter(), "error"
            try:
                response = fn(*args, _preload_content=False, **kwargs)
                outcome = str(getattr(response, "status", None) or "error")
                return bytes(response.data or b"")
            except ApiException as error:
                outcome = str(error.status or "error")
                raise
            finally:
                self._observe(verb, resource, outcome, time.perf_counter() - started)

        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(pool or self._pool, call_and_read)
        except ApiException as error:
            raise _classify(error) from error
        return json.loads(data) if data else None

    async def _call_or_none(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Body | None:
        """`_call_json`, with None for an object that does not exist (404)."""
        try:
            result: Body = await self._call_json(fn, *args, **kwargs)
        except NotFound:
            return None
        return result

    async def _create(self, fn: Callable[..., Any], namespace: str, body: Mapping[str, Any],
                      in_time: Callable[[], bool] | None = None) -> Body:
        """`_call_json` for a create: a 409 there means the name is taken (`AlreadyExists`)."""
        try:
            result: Body = await self._call_json(fn, namespace, dict(body), in_time=in_time)
        except Conflict as error:
            raise AlreadyExists(str(error)) from error
        return result

    async def _list_all(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[list[Body], str]:
        """Every item of a list call, page by page (500 each), and the last page's resourceVersion."""
        items: list[Body] = []
        token: str | None = None
        while True:
            more: dict[str, Any] = {"_continue": token} if token else {}
            page = await self._call_json(fn, *args, limit=500, **kwargs, **more)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, str((page.get("metadata") or {}).get("resourceVersion", ""))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._event_pool.shutdown(wait=False, cancel_futures=True)
        self._review_pool.shutdown(wait=False, cancel_futures=True)
        self._inbox_pool.shutdown(wait=False, cancel_futures=True)

    # --- Triggers -------------------------------------------------------------------------------

    async def get_trigger(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call_json(self._custom.get_namespaced_custom_object, GROUP, VERSION,
                                                       namespace, PLURAL, name)
        return result

    async def patch_trigger_status(self, namespace: str, name: str, resource_version: str,
                                   status: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of status, applied only if the Trigger still has ``resource_version``
        (else `Conflict`): two writers can never both count the same run."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        result: dict[str, Any] = await self._send(
            "PATCH", f"{_triggers(namespace)}/{_segment(name)}/status", "patch", "triggers/status", body=body,
            content_type="application/merge-patch+json")
        return result

    async def patch_trigger_finalizers(self, namespace: str, name: str, resource_version: str,
                                       finalizers: Sequence[str]) -> dict[str, Any]:
        # A merge patch replaces the whole list: the resourceVersion precondition keeps it from
        # overwriting a finalizer someone else added since our copy (custom resources take no
        # strategic merge patch, which could remove just our entry).
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": list(finalizers)}}
        result: dict[str, Any] = await self._call_json(
            self._custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name, body,
            _content_type="application/merge-patch+json")
        return result

    # --- Jobs and pods --------------------------------------------------------------------------

    # The Job calls' answers are slim Jobs (jobs/wire.py): every caller only hands them to the store
    # (Store.on_job / saw_job), which reads no more than `observe_job` does.

    async def create_job(self, namespace: str, manifest: Mapping[str, Any],
                         in_time: Callable[[], bool] = lambda: True) -> Body:
        try:
            result: Body = await self._send("POST", _jobs(namespace), "create", "jobs", body=manifest,
                                            in_time=in_time, decode=decode_job)
        except Conflict as error:
            raise AlreadyExists(str(error)) from error
        return result

    async def get_job(self, namespace: str, name: str) -> Body | None:
        try:
            result: Body = await self._send("GET", f"{_jobs(namespace)}/{_segment(name)}", "get", "jobs",
                                            decode=decode_job)
        except NotFound:
            return None
        return result

    async def delete_job(self, namespace: str, name: str) -> bool:
        try:
            # Foreground: the pods go first, while our finalizer may keep the Job (and its name) a
            # little longer (core/runs.py, the name hold): a replaced run stops at once. The
            # answer (the Job) is read by no one: not decoded.
            await self._send("DELETE", f"{_jobs(namespace)}/{_segment(name)}", "delete", "jobs",
                             params={"propagationPolicy": "Foreground"}, decode=None)
        except NotFound:
            return False
        return True

    async def release_job(self, namespace: str, name: str) -> Body | None:
        # A strategic merge patch removes just our entry, whatever other finalizers come and go.
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}}
        try:
            result: Body = await self._send("PATCH", f"{_jobs(namespace)}/{_segment(name)}", "patch", "jobs",
                                            body=patch, content_type="application/strategic-merge-patch+json",
                                            decode=decode_job)
        except NotFound:
            return None
        return result

    async def list_triggers(self, namespace: str) -> list[Body]:
        items, _ = await self._list_all(self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL)
        return items

    async def list_jobs(self, namespace: str) -> tuple[list[Body], str]:
        return await self._list_all(self._batch.list_namespaced_job, namespace, label_selector=LABEL_TRIGGER)

    async def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        result = await self._call_json(self._core.list_namespaced_pod, namespace,
                                       label_selector=f"batch.kubernetes.io/job-name={job_name}")
        return list(result.get("items") or [])

    # --- ConfigMaps and Events ------------------------------------------------------------------

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call_or_none(self._core.read_namespaced_config_map, name, namespace)

    # --- the shared event inbox (intake/inbox.py), in the operator's own namespace -----------------

    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> Body:
        try:
            result: Body = await self._call_json(self._core.create_namespaced_config_map, namespace, dict(body),
                                                 pool=self._inbox_pool)
        except Conflict as error:
            raise AlreadyExists(str(error)) from error
        return result

    async def list_config_maps(self, namespace: str, label_selector: str) -> list[Body]:
        items, _ = await self._list_all(self._core.list_namespaced_config_map, namespace,
                                        label_selector=label_selector)
        return items

    async def delete_config_map(self, namespace: str, name: str) -> bool:
        try:
            await self._call_json(self._core.delete_namespaced_config_map, name, namespace)
        except NotFound:
            return False
        return True

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        return await self._call_or_none(self._core.read_namespaced_secret, name, namespace)

    async def get_object(self, namespace: str, api_version: str, kind: str, name: str) -> Body | None:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        plural, namespaced = await self.resource_of(api_version, kind)
        if not namespaced:  # the operator may get them; a Trigger's author may not (issue 17)
            raise Rejected(f"kind {kind} is cluster-scoped: an object source reads objects of the Trigger's "
                           "namespace only")
        quoted = urllib.parse.quote(name, safe="")  # a name is one path segment, never more
        path = f"{base}/namespaces/{namespace}/{plural}/{quoted}"
        return await self._call_or_none(self._get_path, path)

    async def resource_of(self, api_version: str, kind: str) -> tuple[str, bool]:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        resources = self._discovered.get(api_version)
        if resources is None:
            try:
                listing = await self._call_json(self._get_path, base)
            except NotFound:
                raise Rejected(f"the API server serves no {api_version}") from None
            resources = self._discovered[api_version] = {
                r["kind"]: (r["name"], bool(r.get("namespaced"))) for r in listing.get("resources") or []
                if "/" not in r["name"]}
        if kind not in resources:
            raise Rejected(f"the API server serves no kind {kind!r} in {api_version}")
        return resources[kind]

    def _get_path(self, path: str, _preload_content: bool = False) -> Any:
        """A GET of any API path (the client's generic call), for kinds it has no method for."""
        method, url, headers, body, post = self._client.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        response = self._client.call_api(method, url, header_params=headers, body=body, post_params=post)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return response

    async def post_event(self, trigger: Mapping[str, Any], notice: Notice, now: dt.datetime) -> None:
        meta = trigger["metadata"]
        stamp = format_time(now)
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "type": notice.type, "reason": notice.reason, "message": cut(notice.message),
            "source": {"component": self._component}, "reportingComponent": self._component,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            await self._call_json(self._core.create_namespaced_event, meta["namespace"], event, pool=self._event_pool)
        except Exception as error:  # Events are best effort: never fail a reconcile for one
            log.warning("could not post event %s on %s/%s: %s", notice.reason, meta["namespace"], meta["name"], error,
                        extra=about(meta["namespace"], meta["name"]))

    # --- the Leases of the scheduling replicas --------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> Body | None:
        return await self._call_or_none(self._coordination.read_namespaced_lease, name, namespace)

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Body:
        return await self._create(self._coordination.create_namespaced_lease, namespace, body)

    async def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Body:
        result: Body = await self._call_json(self._coordination.replace_namespaced_lease, name, namespace, dict(body))
        return result

    async def list_leases(self, namespace: str, label_selector: str) -> list[Body]:
        result = await self._call_json(self._coordination.list_namespaced_lease, namespace,
                                       label_selector=label_selector)
        return list(result.get("items") or [])

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None:
        await self._call_json(self._coordination.delete_namespaced_lease, name, namespace,
                              body={"preconditions": {"resourceVersion": resource_version}})

    # --- who may send events --------------------------------------------------------------------

    async def review_token(self, token: str, audiences: Sequence[str] = ()) -> Identity | None:
        review: dict[str, Any] = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                  "spec": {"token": token}}
        if audiences:
            review["spec"]["audiences"] = list(audiences)
        result = await self._call_json(self._authn.create_token_review, review, pool=self._review_pool)
        status = result.get("status") or {}
        if not status.get("authenticated"):
            return None
        # An authenticator that ignores audiences answers none: only one naming ours binds the token.
        if audiences and not set(audiences) & set(status.get("audiences") or ()):
            return None
        return Identity.from_user_info(status.get("user") or {})

    async def review_access(self, identity: Identity, *, namespace: str, verb: str, group: str, resource: str,
                            subresource: str = "", name: str = "") -> tuple[bool, str]:
        return await self._review(identity, {"resourceAttributes": {
            "namespace": namespace, "verb": verb, "group": group, "resource": resource, "subresource": subresource,
            "name": name}})

    async def review_url_access(self, identity: Identity, verb: str, path: str) -> tuple[bool, str]:
        """A SubjectAccessReview of ``verb`` on the non-resource URL ``path`` (e.g. get /metrics)."""
        return await self._review(identity, {"nonResourceAttributes": {"verb": verb, "path": path}})

    async def _review(self, identity: Identity, attributes: Mapping[str, Any]) -> tuple[bool, str]:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": identity.user, "uid": identity.uid, "groups": list(identity.groups), "extra": dict(identity.extra),
            **attributes}}
        result = await self._call_json(self._authz.create_subject_access_review, review, pool=self._review_pool)
        status = result.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")

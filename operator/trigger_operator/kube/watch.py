"""Our own watch of our Jobs (kopf keeps watching the Triggers): list, then watch from the list's
resourceVersion, streamed with httpx in the event loop, each line decoded straight into the few
fields the store reads (jobs/wire.py).

kopf's Job watch cost more than it gave: a decoded body kept whole per event, its per-object
worker and per-event handler invocation, for a handler that only hands the body to the store.
Here one task per (namespace or cluster, label selector) follows the API server as client-go's
reflector does: it resumes from the last resourceVersion it saw (BOOKMARKs keep that recent
while nothing changes), lists again when that version is gone (410), and backs off on errors.
A re-list reports no deletions (as kopf's did not): the store's periodic resync finds those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import kubernetes
from kubernetes.client.rest import should_bypass_proxies

from trigger_operator.jobs.wire import WireError, decode_event, decode_list

log = logging.getLogger(__name__)

JobSink = Callable[[str | None, dict[str, Any]], None]  # Store.on_job: event type (None: listed), slim body
LIST_PAGE = 500
BACKOFFS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)  # seconds before each retry in a row, the last repeated


class Gone(Exception):
    """The resourceVersion we resume from is no longer kept (410): list again."""


def http_client(configuration: Any | None = None, *, connections: int | None = None) -> httpx.AsyncClient:
    """An asynchronous client to the API server of the kubernetes client's default Configuration:
    its CA (or none, if it verifies nothing) and its client certificate, if it has them; the token
    is asked for per request (`_headers`), so that a refreshed one is used. ``connections``: how
    many it opens at most, and keeps open, at once (a request beyond them waits for one); None:
    httpx's defaults (100, 20 kept)."""
    config = configuration or kubernetes.client.Configuration.get_default_copy()
    verify = tls_context(config)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections) \
        if connections is not None else httpx.Limits(max_connections=100, max_keepalive_connections=20)
    # The kubernetes client's proxy (proxy-url, or the environment's unless NO_PROXY), not httpx's own
    # reading of the environment, so that every client of ours goes the same way.
    return httpx.AsyncClient(base_url=config.host, verify=verify, timeout=httpx.Timeout(30.0), limits=limits,
                             proxy=proxy_of(config), trust_env=False)


def sni_extensions(config: Any) -> dict[str, Any]:
    """httpx request extensions naming the server as the kubeconfig's ``tls-server-name`` says."""
    name = getattr(config, "tls_server_name", None)
    return {"sni_hostname": name} if name else {}


def tls_context(config: Any) -> ssl.SSLContext:
    """The TLS of the kubernetes client's Configuration ``config``, as its own client does it: its
    CA (file or data), the host name checked unless ``assert_hostname`` is False, nothing verified
    if the kubeconfig says so (insecure-skip-tls-verify), and its client certificate in every case
    (authentication does not depend on verifying the server). ``tls_server_name`` is per request
    (`server_hostname`)."""
    if config.verify_ssl:
        context = ssl.create_default_context(cafile=config.ssl_ca_cert or None,
                                             cadata=getattr(config, "ca_cert_data", None) or None)
        if getattr(config, "assert_hostname", None) is False:
            context.check_hostname = False
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file or None)
    return context


def proxy_of(config: Any) -> str | None:
    """The proxy the kubernetes client would use for ``config.host`` (kubeconfig ``proxy-url``, or
    HTTPS_PROXY unless NO_PROXY names the host), or None."""
    proxy: str | None = getattr(config, "proxy", None)
    if not proxy or should_bypass_proxies(config.host, getattr(config, "no_proxy", None) or ""):
        return None
    return proxy


class JobWatch:
    """Follows our Jobs into ``sink``. ``namespaces``: the namespaces to watch, each its own watch;
    empty: one watch of all namespaces, whose Jobs ``accepts(namespace)`` filters (the operator's
    -n globs). `follow` sets the label selectors (one watch per selector per namespace) and may be
    called again to change them (the sharded mode, as shards come and go)."""

    def __init__(self, sink: JobSink, *, namespaces: Sequence[str] = (),
                 accepts: Callable[[str], bool] = lambda namespace: True, timeout_seconds: int = 300,
                 configuration: Any | None = None, client: httpx.AsyncClient | None = None) -> None:
        self.sink, self.namespaces, self.accepts = sink, tuple(namespaces), accepts
        self.timeout_seconds = timeout_seconds
        self._config = configuration or kubernetes.client.Configuration.get_default_copy()
        self._http = client or http_client(self._config)
        self._tasks: list[asyncio.Task[None]] = []
        self.selectors: tuple[str, ...] = ()

    def follow(self, selectors: Sequence[str]) -> None:
        """Watches with these selectors from now on: the old watches stop, the new ones list first."""
        self.stop()
        self.selectors = tuple(selectors)
        paths = [f"/apis/batch/v1/namespaces/{ns}/jobs" for ns in self.namespaces] or ["/apis/batch/v1/jobs"]
        self._tasks = [asyncio.create_task(self.run(path, selector), name=f"watch {path}?{selector}")
                       for path in paths for selector in self.selectors]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await self._http.aclose()

    async def run(self, path: str, selector: str, resource_version: str | None = None) -> None:
        """Lists and watches ``path`` until cancelled (``resource_version``: resume from there at first)."""
        failures = 0
        while True:
            try:
                if resource_version is None:
                    resource_version = await self.list_all(path, selector)
                resource_version = await self.watch(path, selector, resource_version)
                failures = 0
            except Gone:
                log.info("the Jobs' watch %s?labelSelector=%s resumed too late (410): listing again", path, selector)
                resource_version = None
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the API server away, or refusing: resume from where we were
                delay = BACKOFFS[min(failures, len(BACKOFFS) - 1)]
                failures += 1
                log.warning("the Jobs' watch %s?labelSelector=%s failed (%s: %s); again in %.0f s", path,
                            selector, type(error).__name__, error, delay)
                await asyncio.sleep(delay)

    async def list_all(self, path: str, selector: str) -> str:
        """Lists the Jobs page by page into the sink (as kopf's listing: event type None); returns the
        list's resourceVersion."""
        token: str | None = None
        while True:
            params = {"labelSelector": selector, "limit": str(LIST_PAGE), **({"continue": token} if token else {})}
            response = await self._http.get(path, params=params, headers=self._headers(),
                                            extensions=sni_extensions(self._config))
            if response.status_code == 410:  # the continue token expired: start the list again
                token = None
                continue
            _raise_for(response)
            items, version, token = decode_list(response.content)
            self._deliver(None, items)
            if not token:
                return version

    async def watch(self, path: str, selector: str, resource_version: str) -> str:
        """One watch request, until the API server ends it; returns the last resourceVersion seen."""
        params = {"watch": "1", "labelSelector": selector, "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(self.timeout_seconds)}
        timeout = httpx.Timeout(30.0, read=self.timeout_seconds + 30.0)
        async with self._http.stream("GET", path, params=params, headers=self._headers(), timeout=timeout,
                                     extensions=sni_extensions(self._config)) as response:
            if response.status_code == 410:
                raise Gone()
            if response.status_code >= 300:
                await response.aread()
                _raise_for(response)
            rest = b""
            async for chunk in response.aiter_bytes():
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if line.strip():
                        resource_version = self._line(line, resource_version)
        return resource_version

    def _line(self, line: bytes, resource_version: str) -> str:
        try:
            kind, body = decode_event(line)
        except WireError as error:
            log.warning("skipped a Job watch line: %s", error)
            return resource_version
        if kind == "ERROR":
            if body["code"] == 410:
                raise Gone()
            raise RuntimeError(f"the watch said {body['code']} {body['reason']}: {body['message']}")
        version = body["metadata"].get("resourceVersion") or resource_version
        if kind != "BOOKMARK":
            self._deliver(kind, [body])
        return str(version)

    def _deliver(self, kind: str | None, items: list[dict[str, Any]]) -> None:
        for body in items:
            if self.namespaces or self.accepts(body["metadata"]["namespace"]):
                try:
                    self.sink(kind, body)
                except Exception:  # one Job's trouble never stops the watch of the others
                    log.exception("could not take in Job %s/%s", body["metadata"]["namespace"],
                                  body["metadata"]["name"])

    def _headers(self) -> dict[str, str]:
        return auth_headers(self._config)


def auth_headers(config: Any) -> dict[str, str]:
    """The kubernetes client's own auth headers, asked for per request: its refresh hook (an
    in-cluster token re-read, an exec plugin's) runs, so a rotated token is used."""
    headers = {"Accept": "application/json"}
    for setting in config.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[setting["key"]] = setting["value"]
    if "authorization" not in headers and config.username:
        headers["authorization"] = config.get_basic_auth_token()
    return headers


def _raise_for(response: httpx.Response) -> None:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.status_code} {response.reason_phrase}: {response.text[:300]}")

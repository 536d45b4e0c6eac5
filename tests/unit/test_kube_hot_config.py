"""The hot calls (kube/api.py `_send`) honour what the official client's Configuration says, as its
own path did: a client certificate with verification off, tls-server-name, a proxy (then the hot
calls go through the official client); one KubeApi used from two event loops."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import kubernetes
from aiohttp import web

from trigger_operator.config import KubeSettings
from trigger_operator.kube.api import KubeApi

JOB = {"metadata": {"name": "x", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                    "labels": {}, "annotations": {}}, "status": {}}


def _cert(tmp: Path, stem: str, san: str) -> tuple[str, str]:
    cert, key = tmp / f"{stem}.pem", tmp / f"{stem}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={stem}",
                    "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


class _Server:
    """An API server on loopback in a thread of its own (so that the client's loops come and go)."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.seen: list[str] = []
        self.context = context
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def serve(request: web.Request) -> web.Response:
            self.seen.append(f"{request.method} {request.path}")
            return web.json_response(JOB)

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", serve)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.context)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.ready.set()
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _official_get(api: KubeApi) -> Any:
    return await api._call_json(api._batch.read_namespaced_job, "x", "ns")


async def _both_paths(config: Any) -> tuple[Any, Any]:
    """The same Job read by the official client's path and by a hot call, with ``config``."""
    api = KubeApi(KubeSettings(threads=4), configuration=config)
    try:
        return await _official_get(api), await api.get_job("ns", "x")
    finally:
        await api.aclose()


def test_a_client_certificate_is_presented_when_the_kubeconfig_skips_verification(tmp_path: Path) -> None:
    """kubeconfig: insecure-skip-tls-verify: true plus client-certificate/-key (a dev cluster, a
    tunnel): both paths present the client certificate (urllib3: cert_reqs NONE, cert_file still
    loaded; tls_context likewise), else the API server sees an anonymous caller (a create refused
    403 would be recorded as a failed run)."""
    server_cert, server_key = _cert(tmp_path, "server", "DNS:kubernetes")
    client_cert, client_key = _cert(tmp_path, "client", "DNS:client")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_cert, server_key)
    context.verify_mode = ssl.CERT_REQUIRED  # the API server wants the client's certificate
    context.load_verify_locations(client_cert)
    server = _Server(context)
    try:
        config = kubernetes.client.Configuration()
        config.host = f"https://127.0.0.1:{server.port}"
        config.verify_ssl = False
        config.cert_file, config.key_file = client_cert, client_key
        config.proxy, config.no_proxy = None, "*"
        official, hot = asyncio.run(_both_paths(config))
        assert official["metadata"]["name"] == "x"  # the old path authenticated with the certificate
        assert hot is not None and hot["metadata"]["name"] == "x"
    finally:
        server.stop()


def test_the_kubeconfigs_tls_server_name_is_honoured(tmp_path: Path) -> None:
    """kubeconfig: server https://127.0.0.1:port (a tunnel, a load balancer's IP) with
    tls-server-name: kubernetes. The certificate is verified against that name by both paths (the
    official client's urllib3 server_hostname; the hot calls' per-request server_hostname)."""
    server_cert, server_key = _cert(tmp_path, "server", "DNS:kubernetes")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_cert, server_key)
    server = _Server(context)
    try:
        config = kubernetes.client.Configuration()
        config.host = f"https://127.0.0.1:{server.port}"
        config.ssl_ca_cert = server_cert
        config.tls_server_name = "kubernetes"
        config.proxy, config.no_proxy = None, "*"
        official, hot = asyncio.run(_both_paths(config))
        assert official["metadata"]["name"] == "x"
        assert hot is not None and hot["metadata"]["name"] == "x"
    finally:
        server.stop()


def test_the_kubeconfigs_proxy_is_used() -> None:
    """kubeconfig proxy-url (or HTTPS_PROXY, which kubernetes' Configuration reads): both paths go
    through the proxy (the hot calls then through the official client)."""
    through_proxy = _Server()  # answers any request line, absolute-form too
    try:
        config = kubernetes.client.Configuration()
        config.host = "http://kube-api.invalid"  # resolvable by the proxy only
        config.proxy = f"http://127.0.0.1:{through_proxy.port}"
        config.no_proxy = ""
        official, hot = asyncio.run(_both_paths(config))
        assert official["metadata"]["name"] == "x"  # the old path went through the proxy
        assert hot is not None and hot["metadata"]["name"] == "x"
    finally:
        through_proxy.stop()


def test_one_kube_api_in_two_event_loops() -> None:
    """One KubeApi used from a second event loop (a test's, a restarted run): the session and its
    bound are made again in that loop, as the threads' path worked from any loop."""
    server = _Server()
    try:
        config = kubernetes.client.Configuration()
        config.host = f"http://127.0.0.1:{server.port}"
        config.proxy, config.no_proxy = None, "*"
        api = KubeApi(KubeSettings(threads=4), configuration=config)
        assert asyncio.run(api.get_job("ns", "x")) is not None
        assert asyncio.run(asyncio.wait_for(api.get_job("ns", "x"), 10)) is not None
    finally:
        server.stop()

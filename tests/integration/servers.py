"""Small real servers for condition sources: a JSON (and metrics) endpoint whose answers a test
sets, and a real Prometheus server scraping it; a real nats-server with JetStream for the JetStream
intake. All listen on loopback ports of their own."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.harness import die_with_parent, free_port, wait_for


class _LoopbackServer:
    """A threaded HTTP server on a loopback port of its own, for a handler class; with ``tls`` (a
    (certificate, key) pair of files) it speaks HTTPS. A short poll: close() waits for
    serve_forever to notice, once per test."""

    def _serve(self, handler: type[BaseHTTPRequestHandler], tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Endpoint(_LoopbackServer):
    """Serves ``document`` as JSON at /doc (with ``status``), and ``metrics`` in Prometheus text at /metrics.
    With ``token`` set, /doc wants ``Authorization: Bearer <token>``."""

    def __init__(self) -> None:
        self.document: Any = {}
        self.status = 200
        self.token: str | None = None
        self.metrics: dict[str, float] = {}
        self.seen_authorization: list[str | None] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body = "".join(f"{k} {v}\n" for k, v in endpoint.metrics.items()).encode()
                    self._answer(200, body, "text/plain; version=0.0.4")
                    return
                endpoint.seen_authorization.append(self.headers.get("Authorization"))
                if endpoint.token is not None and self.headers.get("Authorization") != f"Bearer {endpoint.token}":
                    self._answer(401, b'{"error": "unauthorized"}', "application/json")
                    return
                self._answer(endpoint.status, json.dumps(endpoint.document).encode(), "application/json")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self._serve(Handler)


@contextmanager
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    try:
        yield e
    finally:
        e.close()


@contextmanager
def prometheus(folder: Path, target_port: int, rule_files: tuple[Path, ...] = ()) -> Iterator[str]:
    """A real Prometheus server (Debian's package, `make prometheus`) scraping 127.0.0.1:``target_port``
    every second and evaluating ``rule_files`` every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise AssertionError("prometheus is not installed: run `make prometheus` (make test does)")
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                  "rule_files": [str(f) for f in rule_files],
                                  "scrape_configs": [{"job_name": "test", "static_configs": [
                                      {"targets": [f"127.0.0.1:{target_port}"]}]}]}))
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus to be ready", lambda: _ready(url), timeout=60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class RawEndpoint(_LoopbackServer):
    """Answers every GET with exactly ``status``, ``headers`` and ``body`` (bytes: an answer a source's
    author chose, e.g. credential-shaped or a gzip bomb), and counts what it was asked (``requests``:
    the paths). With ``tls`` (a (certificate, key) pair of files), it speaks HTTPS."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.status = 200
        self.reason: str | None = None  # the status line's phrase; None: the usual one
        self.headers: dict[str, str] = {"Content-Type": "application/json"}
        self.body = b"{}"
        self.requests: list[str] = []
        self.host_headers: list[str | None] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.requests.append(self.path)
                endpoint.host_headers.append(self.headers.get("Host"))
                self.send_response(endpoint.status, endpoint.reason)
                for name, value in endpoint.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(endpoint.body)))
                self.end_headers()
                self.wfile.write(endpoint.body)

            def log_message(self, *_: Any) -> None:
                pass

        self._serve(Handler, tls)


@contextmanager
def raw_endpoint(tls: tuple[Path, Path] | None = None) -> Iterator[RawEndpoint]:
    e = RawEndpoint(tls)
    try:
        yield e
    finally:
        e.close()


def gzip_bomb(elements: int = 25_000_000) -> bytes:
    """A gzip of the JSON list ``[0,0,...]`` with ``elements`` zeros (about 48 KB for 25 million)."""
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(b"[0")]
    block = b",0" * 500_000
    for _ in range((elements - 1) // 500_000):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(b",0" * ((elements - 1) % 500_000) + b"]"))
    parts.append(compressor.flush())
    return b"".join(parts)


@contextmanager
def nats_server(folder: Path) -> Iterator[str]:
    """A real nats-server with JetStream (``-js -sd``), built from Go modules by hack/build-nats.sh
    (`make nats`; built here when missing), on a loopback port of its own: its ``nats://`` URL."""
    root = Path(__file__).resolve().parents[2]
    built = subprocess.run(["bash", str(root / "hack" / "build-nats.sh")], stdout=subprocess.PIPE, text=True)
    binary = Path(built.stdout.strip().splitlines()[-1]) if built.returncode == 0 and built.stdout.strip() else None
    if binary is None or not binary.is_file():
        raise AssertionError("nats-server could not be built: run `make nats` (make test does) and read its errors")
    port = free_port()
    log = (folder / "nats-server.log").open("wb")
    process = subprocess.Popen([str(binary), "-js", "-sd", str(folder / "jetstream"), "-a", "127.0.0.1",
                                "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        wait_for("nats-server to be ready", lambda: b"Server is ready" in (folder / "nats-server.log").read_bytes(),
                 timeout=30)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


async def add_stream(url: str, stream: str, subjects: list[str]) -> None:
    """Creates a JetStream stream on the server at ``url`` (as the admin does before the operator reads it)."""
    import nats  # the JetStream tests' and benchmark's client only

    client = await nats.connect(url)
    try:
        await client.jetstream().add_stream(name=stream, subjects=subjects)
    finally:
        await client.close()

"""The server's own bounds, on a real socket on loopback (issue 17, review of the HTTP hardening):
one address (an IPv6 one by its /64) may hold only so many open connections (the next are closed at
accept, one log line a minute), on a TLS port before its handshake too; a request's body, not only
its head, has a deadline, and a TLS handshake has the head's; the probes have an app of their own.
The answers given before any route (429, 413) and a namespace that is not one's name (422) have the
body the path's API promises.

Each test serves the app in its own event loop on 127.0.0.1 (port chosen by the kernel); "another
address" is 127.0.0.2, which Linux's loopback answers too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from mixpeek.models.error_response import ErrorResponse as SdkErrorResponse
from uvicorn.server import ServerState

from tests.unit.conftest import NAMESPACE
from tests.unit.test_intake import CLOUDEVENT, SENDER, Alive, post, setup
from tests.unit.test_ratelimit import app_with
from trigger_operator.config import ConfigurationError, HttpSettings
from trigger_operator.web.app import BodyLimit, build_app, build_probe_app, build_webhook_app
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.scope import NoNamespace, namespace_of
from trigger_operator.web.server import MAX_HEAD_BYTES, MAX_PIPELINED, Bounded, server


def admission(app: FastAPI) -> None:
    @app.post("/admission/validate")
    async def validate(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/scheme")
    async def scheme(request: Request) -> dict[str, str]:
        return {"scheme": request.url.scheme}


@asynccontextmanager
async def serving(http: HttpSettings, tls: tuple[Path, Path] | None = None, app: Any = None) -> AsyncIterator[int]:
    """``app`` (default: the webhook app, which reads bodies, as the reviewer's target did) behind
    `server`, over TLS with ``tls`` (certificate, key); its port."""
    async with served(http, tls, app) as (port, _):
        yield port


@asynccontextmanager
async def served(http: HttpSettings, tls: tuple[Path, Path] | None = None,
                 app: Any = None) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    """`serving`, with the server itself (its connections: `server_state`)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    cert, key = (str(tls[0]), str(tls[1])) if tls else ("", "")
    web = server(app or build_webhook_app(admission=admission, max_body_bytes=1 << 20), host="127.0.0.1", port=0,
                 http=http, tls_cert=cert, tls_key=key)
    task = asyncio.create_task(web.serve(sockets=[sock]))
    while not web.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1], web
    finally:
        web.should_exit = True
        await asyncio.wait_for(task, 10)


async def connect(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def get(port: int, source: str = "127.0.0.1") -> bytes:
    """The status line of GET /healthz from ``source`` (b"" when the server closed the connection)."""
    reader, writer = await connect(port, source)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return line.strip()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float | None:
    """Seconds until the server closed the connection (None: still open after ``seconds``)."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), seconds - (time.monotonic() - started)):
            pass  # a response (e.g. a 400) before the close: read on to the end
    except TimeoutError:
        return None
    except OSError:  # reset, or TLS cut short (ssl.SSLError)
        pass
    return time.monotonic() - started


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_one_address_holds_at_most_its_connections_and_another_is_served(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving(HttpSettings(connections_per_address=3, max_connections=10,
                                        header_timeout_seconds=30)) as port:
            held = [await connect(port) for _ in range(3)]  # idle: no byte sent
            await asyncio.sleep(0.1)
            refused = [await connect(port) for _ in range(5)]
            for reader, _ in refused:
                assert await closed_within(reader, 3) is not None  # closed at accept, before any request
            assert (await closed_within(held[0][0], 0.3)) is None  # the first three stay open
            assert await get(port, "127.0.0.2") == b"HTTP/1.1 200 OK"  # another address is served
            held[0][1].close()  # one of the three ends: a slot of that address again
            await asyncio.sleep(0.2)
            assert await get(port) == b"HTTP/1.1 200 OK"
            for _, writer in held[1:] + refused:
                writer.close()

    with caplog.at_level(logging.INFO, logger="trigger_operator.web"):
        run(scenario)
    refusals = [r for r in caplog.records if "refusing connections from 127.0.0.1" in r.getMessage()]
    assert len(refusals) == 1  # five refused, one line


def test_reconnecting_idle_connections_from_one_address_cannot_take_every_slot() -> None:
    async def scenario() -> None:  # the reviewer's variant B, in miniature
        async with serving(HttpSettings(connections_per_address=2, max_connections=5,
                                        header_timeout_seconds=1)) as port:
            stop = asyncio.Event()

            async def hog() -> None:
                while not stop.is_set():
                    try:
                        reader, writer = await connect(port)
                        await reader.read()  # until the server closes it
                        writer.close()
                    except OSError:
                        await asyncio.sleep(0.01)

            hogs = [asyncio.create_task(hog()) for _ in range(6)]
            await asyncio.sleep(0.3)
            answers = []
            for _ in range(4):
                answers.append(await get(port, "127.0.0.2"))
                await asyncio.sleep(0.3)
            stop.set()
            for task in hogs:
                task.cancel()
            await asyncio.gather(*hogs, return_exceptions=True)
            assert answers == [b"HTTP/1.1 200 OK"] * 4

    run(scenario)


SLOW_BODIES = {
    "declared": b"POST /admission/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{",
    "chunked": b"POST /admission/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
}


@pytest.mark.parametrize("head", SLOW_BODIES.values(), ids=SLOW_BODIES.keys())
def test_a_body_that_never_ends_is_closed_at_the_request_deadline(head: bytes,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving(HttpSettings(header_timeout_seconds=0.5, request_timeout_seconds=2)) as port:
            reader, writer = await connect(port)
            writer.write(head)
            await writer.drain()
            assert await closed_within(reader, 1.2) is None  # past the head's deadline: the head was in time
            after = await closed_within(reader, 4)
            assert after is not None and after <= 2  # closed at 2 s from the first byte
            writer.close()
            await asyncio.sleep(0.1)

    with caplog.at_level(logging.INFO):
        run(scenario)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # no traceback per client
    assert any("no whole request within 2 s" in r.getMessage() for r in caplog.records)


def test_a_slow_body_on_a_kept_alive_connection_has_its_own_deadline_and_a_timely_one_is_served() -> None:
    async def scenario() -> None:
        async with serving(HttpSettings(header_timeout_seconds=0.5, request_timeout_seconds=1.5)) as port:
            reader, writer = await connect(port)
            for _ in range(2):  # two requests in time, each body in two pieces
                writer.write(b"POST /admission/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n[1")
                await writer.drain()
                await asyncio.sleep(0.7)  # past the head deadline, within the request's
                writer.write(b"2]")
                assert (await asyncio.wait_for(reader.readline(), 5)).strip() == b"HTTP/1.1 200 OK"
                while (await asyncio.wait_for(reader.readline(), 5)).strip():
                    pass
                assert await asyncio.wait_for(reader.readexactly(10), 5) == b'{"read":4}'
                await asyncio.sleep(1)  # idle between requests: the keep-alive timeout's (5 s), no deadline's
            writer.write(b"POST /admission/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n[")
            after = await closed_within(reader, 4)
            assert after is not None and after <= 1.5 + 0.3
            writer.close()

    run(scenario)


def test_a_trickled_head_is_still_closed_at_the_head_deadline() -> None:
    async def scenario() -> None:
        async with serving(HttpSettings(header_timeout_seconds=0.5, request_timeout_seconds=30)) as port:
            reader, writer = await connect(port)
            writer.write(b"POST /admission/validate HTTP/1.1\r\n")
            after = await closed_within(reader, 3)
            assert after is not None and after <= 0.5 + 0.3
            writer.close()

    run(scenario)


HEAD_PAST_BOUND = {
    "whole header lines": b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + (b"X-Filler: " + b"a" * 1000 + b"\r\n") * 17,
    "one endless value": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"a" * 40_000,
    # A request begun in the bytes that ended the one before (pipelined), its head endless.
    "begun mid-chunk": b"POST /admission/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]"
                       b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"a" * 60_000,
}


@pytest.mark.parametrize("head", HEAD_PAST_BOUND.values(), ids=HEAD_PAST_BOUND.keys())
def test_a_head_past_its_bound_is_refused_as_it_arrives_and_one_within_it_is_served(head: bytes) -> None:
    """httptools bounds no head itself (h11 did): a client streaming a head within its deadline
    gets 400 and a closed connection once MAX_HEAD_BYTES have come, not a head growing in memory."""
    assert len(HEAD_PAST_BOUND["whole header lines"]) > MAX_HEAD_BYTES

    async def scenario() -> None:
        async with serving(HttpSettings(header_timeout_seconds=5, request_timeout_seconds=30)) as port:
            reader, writer = await connect(port)
            writer.write(head)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 3)  # all of it, to the close: long before 5 s
            assert b"HTTP/1.1 400 Bad Request" in answer
            writer.close()
            reader, writer = await connect(port)
            filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler * (MAX_HEAD_BYTES // len(filler) - 2)
                         + b"\r\n")
            assert (await asyncio.wait_for(reader.readline(), 5)).strip() == b"HTTP/1.1 200 OK"
            writer.close()

    run(scenario)


def test_a_few_pipelined_requests_are_answered_in_order_and_a_flood_of_them_is_refused() -> None:
    """uvicorn's httptools protocol queues every request parsed behind the one being answered:
    MAX_PIPELINED of them are served in order, more get 400 and the connection closed, so one
    connection cannot fill memory with requests waiting (h11 read one at a time)."""
    async def scenario() -> None:
        async with serving(HttpSettings(header_timeout_seconds=5, request_timeout_seconds=30)) as port:
            reader, writer = await connect(port)
            body = b"POST /admission/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]"
            writer.write(body * (1 + MAX_PIPELINED))
            await writer.drain()
            answers = b""
            while answers.count(b'{"read":2}') < 1 + MAX_PIPELINED:
                answers += await asyncio.wait_for(reader.read(4096), 5)
            assert answers.count(b"HTTP/1.1 200 OK") == 1 + MAX_PIPELINED
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 10_000)  # 340 KB of them at once
            await writer.drain()
            rest = b""
            with contextlib.suppress(ConnectionResetError):  # closed with our flood unread: a reset
                while chunk := await asyncio.wait_for(reader.read(65536), 5):  # to the close, within 5 s
                    rest += chunk
            assert rest.count(b"HTTP/1.1 200 OK") <= 1 + MAX_PIPELINED  # not 10,000 answers
            writer.close()

    run(scenario)


def test_a_queued_request_streaming_a_body_too_large_holds_none_of_it_once_refused() -> None:
    """Behind requests being answered, the rest of a connection's bytes wait unparsed with reading
    paused (as h11 read one request at a time), and a body refused unread (413) is dropped: a request
    queued behind four others, declaring 100 GB and streaming it, holds nothing once answered
    (httptools parsed it into uvicorn's queue as it came: 608 KiB held until the deadline)."""
    app = FastAPI()
    app.add_middleware(BodyLimit, limit=1024 * 1024)

    @app.get("/q")
    async def q() -> dict[str, str]:
        return {}

    async def scenario() -> None:
        async with served(HttpSettings(), app=app) as (port, web):
            reader, writer = await connect(port)
            writer.write(b"GET /q HTTP/1.1\r\nHost: x\r\n\r\n" * 4
                         + b"POST /q HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\n")
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                writer.write(b"a" * 65536)
                await writer.drain()
            await asyncio.sleep(0.3)
            (proto,) = web.server_state.connections
            assert isinstance(proto, Bounded)
            assert b"HTTP/1.1 413" in await asyncio.wait_for(reader.read(100_000), 2)
            assert proto.cycle.response_complete and len(proto.cycle.body) == 0
            writer.close()

    run(scenario)


def test_reads_held_behind_an_answer_are_parsed_one_by_one_so_a_pipelined_head_is_not_charged_them_all() -> None:
    """Reads held while an app polls receive() (a disconnect listener) are fed read by read: a
    request pipelined behind a 24 KB body, its head split across two reads, is served (joined, the
    held reads charged its head 24 KB and it got a false 400)."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        read = 0
        while True:
            message = await receive()
            read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["path"] == "/poll":
            for _ in range(5):
                listening = asyncio.ensure_future(receive())
                await asyncio.sleep(0.02)
                listening.cancel()
        body = f"{scope['path']} {read}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    async def scenario() -> None:
        async with serving(HttpSettings(), app=app) as port:
            reader, writer = await connect(port)
            for data, pause in ((b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n", 0.005),
                                (b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 24000\r\n\r\n" + b"b" * 12000, 0.02),
                                (b"b" * 12000 + b"GET /q HTTP/1.1\r\nHo", 0.3), (b"st: x\r\n\r\n", 0)):
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(pause)
            answers = b""
            while answers.count(b"HTTP/1.1 ") < 3 and (chunk := await asyncio.wait_for(reader.read(65536), 3)):
                answers += chunk
            assert answers.count(b"HTTP/1.1 200 OK") == 3 and answers.endswith(b"/q 0"), answers
            writer.close()

    run(scenario)


def test_an_events_sender_gone_before_its_body_is_in_writes_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The events route (served past FastAPI's router) leaves a client gone mid-body to BodyLimit,
    which ends it quietly: a line per such client would let any client write the log."""
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    app = build_app(intake=memory.committer(cluster, clock), authorizer=Authorizer(cluster, ttl_seconds=10),
                    health=Alive(), max_body_bytes=4096)

    async def scenario() -> None:
        async with serving(HttpSettings(), app=app) as port:
            _, writer = await connect(port)
            writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sender-token\r\n"
                         b"X-Namespace: " + NAMESPACE.encode() + b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"event_type\"")
            await writer.drain()
            await asyncio.sleep(0.3)  # authorized, reading the body
            writer.close()
            await asyncio.sleep(0.3)

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    assert any("went away before its request body" in r.getMessage() for r in caplog.records)  # it was reached
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


class Ready:
    def __init__(self, alive: bool, ready: tuple[bool, str]) -> None:
        self._alive, self._ready = alive, ready

    def alive(self) -> bool:
        return self._alive

    def ready(self) -> tuple[bool, str]:
        return self._ready


def test_the_probe_app_serves_the_two_probes_and_nothing_else() -> None:
    with TestClient(build_probe_app(Ready(True, (True, "")))) as c:
        assert c.get("/healthz").json() == {"status": "ok", "detail": ""}
        assert c.get("/readyz").status_code == 200
        for path in ("/v1/events", "/metrics", "/openapi.json", "/docs", "/admission/validate"):
            assert c.get(path).status_code == 404, path
        assert c.post("/v1/events", content=b"{}").status_code == 404
    with TestClient(build_probe_app(Ready(False, (False, "the catalog is not read yet")))) as c:
        assert c.get("/healthz").status_code == 503
        refused = c.get("/readyz")
        assert refused.status_code == 503 and refused.json()["detail"] == "the catalog is not read yet"


async def get_tls(port: int, certificate: tuple[Path, Path], source: str = "127.0.0.1") -> bytes:
    """GET /scheme over TLS (the certificate checked) from ``source``: the status line and body."""
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), ssl=trust,
                                                   server_hostname="localhost")
    writer.write(b"GET /scheme HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer.split(b"\r\n", 1)[0] + b" " + answer.rsplit(b"\r\n", 1)[-1]


def test_on_a_tls_port_connections_are_counted_and_bounded_before_their_handshake(
        certificate: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    """The reviewer's M1: plain TCP connections to the TLS port that never start TLS were neither
    counted nor closed before Python's 60 s handshake timeout."""
    async def scenario() -> None:
        async with serving(HttpSettings(connections_per_address=3, max_connections=10, header_timeout_seconds=1,
                                        request_timeout_seconds=30), tls=certificate) as port:
            started = time.monotonic()
            held = [await connect(port) for _ in range(3)]  # TCP only: no ClientHello
            await asyncio.sleep(0.1)
            refused = [await connect(port) for _ in range(5)]
            for reader, _ in refused:
                after = await closed_within(reader, 0.5)
                assert after is not None  # closed at accept, as on a plain port
            # A real TLS client on another address is served meanwhile, by the app, over TLS.
            assert await get_tls(port, certificate, "127.0.0.2") == b'HTTP/1.1 200 OK {"scheme":"https"}'
            for reader, writer in held:  # closed at the head deadline, counted from the connection
                await closed_within(reader, 3)
                writer.close()
            assert 0.9 <= time.monotonic() - started <= 1.6
            await asyncio.sleep(0.1)
            assert await get_tls(port, certificate) == b'HTTP/1.1 200 OK {"scheme":"https"}'  # the slots again
            # A client whose handshake is done but sends no head is closed at the same deadline.
            trust = ssl.create_default_context(cafile=str(certificate[0]))
            started = time.monotonic()
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=trust, server_hostname="localhost")
            await closed_within(reader, 3)
            assert 0.9 <= time.monotonic() - started <= 1.5
            writer.close()
            for _, writer in refused:
                writer.close()
            # An address not yet noted (a line per address a minute) is told why.
            reader, writer = await connect(port, "127.0.0.3")
            assert await closed_within(reader, 3) is not None
            writer.close()

    with caplog.at_level(logging.INFO, logger="trigger_operator.web"):
        run(scenario)
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if "refusing connections from 127.0.0.1" in m]) == 1
    assert [m for m in said if "no TLS handshake" in m] == [
        "closed a connection from 127.0.0.3: no TLS handshake within 1 s (said once a minute per address)"]


def test_a_tls_server_with_an_unreadable_certificate_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.pem"):
        server(FastAPI(), host="127.0.0.1", port=0, tls_cert=str(tmp_path / "missing.pem"),
               tls_key=str(tmp_path / "key.pem"))


class Transport(asyncio.Transport):
    """A connection from ``address`` as uvicorn's protocol sees one (no socket)."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address, self.aborted, self.closed = address, False, False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": (self.address, 1000, 0, 0), "sockname": ("::1", 8443, 0, 0)}.get(name, default)

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.aborted or self.closed


def test_connections_from_one_ipv6_64_share_the_per_address_bound() -> None:
    """The reviewer's M2: the bound keyed on the whole IPv6 address, so a host with a /64 had 2^64."""
    web = server(FastAPI(), host="::1", port=0, http=HttpSettings(connections_per_address=2))
    web.config.load()
    loop, state = asyncio.new_event_loop(), ServerState()

    def connect_from(address: str) -> tuple[Any, Transport]:
        protocol = web.config.http_protocol_class(config=web.config, server_state=state, app_state={},  # type: ignore[call-arg]
                                                  _loop=loop)
        transport = Transport(address)
        protocol.connection_made(transport)
        return protocol, transport

    try:
        first, _ = connect_from("2001:db8:0:1::1")
        assert not connect_from("2001:db8:0:1::2")[1].aborted
        assert [connect_from(f"2001:db8:0:1::{i:x}")[1].aborted for i in range(3, 9)] == [True] * 6
        assert not connect_from("2001:db8:0:2::1")[1].aborted  # another /64: its own
        first.connection_lost(None)
        assert not connect_from("2001:db8:0:1:ffff::1")[1].aborted  # a slot of that /64 again
        assert connect_from("2001:db8:0:1::3")[1].aborted
    finally:
        loop.close()


class Recording:
    """The caller's API (seed routes), recording the paths asked for: every namespace is empty."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def request(self, token: str, method: str, path: str, **_: Any) -> Any:
        self.paths.append(path)
        return {"items": []}


def sdk_error(answer: Any) -> SdkErrorResponse:
    parsed = SdkErrorResponse.from_dict(answer.json())
    assert parsed is not None and parsed.success is False and parsed.status == answer.status_code
    return parsed


def test_the_limits_answer_the_sdks_error_response_under_the_triggers_apis() -> None:
    """The reviewer's L2: the middleware's 429 and 413 were {"detail": ...} on every path."""
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    app, _ = app_with(cluster, clock, memory, rate_per_address=0.001, burst_per_address=3)
    big = b"{" + b" " * 5000 + b"}"  # app_with's bodies: at most 4096 bytes
    with TestClient(app, client=("10.0.0.1", 1)) as c, TestClient(app, client=("10.0.0.2", 1)) as d:
        too_big = c.post("/v1/triggers/create", content=big, headers={"content-type": "application/json"})
        assert too_big.status_code == 413 and "at most 4096" in sdk_error(too_big).error.message
        streamed = c.post("/v1/clusters/triggers/create", content=iter([big]))  # no Content-Length
        assert streamed.status_code == 413 and "over 4096 bytes" in sdk_error(streamed).error.message
        assert post(c, CLOUDEVENT, content_type="application/cloudevents+json").status_code == 202
        limited = c.get("/v1/triggers", headers={"x-namespace": NAMESPACE})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "too many requests from this address" in sdk_error(limited).error.message
        assert sdk_error(c.post("/v1/tasks/x", json={})).status == 429
        # /v1/events keeps its own body.
        events = post(c, CLOUDEVENT, content_type="application/cloudevents+json")
        assert events.status_code == 429 and "too many requests from this address" in events.json()["detail"]
        assert "at most 4096" in post(d, big, content_type="application/cloudevents+json").json()["detail"]
        # Every answer the middleware gives on a seed path is one the document declares, so an SDK
        # generated from it types the body.
        with TestClient(app, client=("10.0.0.3", 1)) as e:
            declared = e.get("/openapi.json").json()["paths"]["/v1/triggers"]["post"]["responses"]
            assert {"413", "429"} <= declared.keys()


@pytest.mark.parametrize(("header", "query", "expected"), [
    ("team-a", None, "team-a"), (None, "team-a", "team-a"), ("a", "b", "a"), ("0" * 63, None, "0" * 63),
    ("", "x-1", "x-1"),
])
def test_a_namespace_is_read_from_the_header_else_the_query(header: str | None, query: str | None,
                                                            expected: str) -> None:
    assert namespace_of(header, query) == expected


@pytest.mark.parametrize(("header", "query", "loc"), [
    pytest.param("team-a/triggers/x", None, ("header", "x-namespace"), id="a-path"),
    pytest.param("..", None, ("header", "x-namespace"), id="dot-dot"),
    pytest.param("Team-A", None, ("header", "x-namespace"), id="upper-case"),
    pytest.param("-team", None, ("header", "x-namespace"), id="leading-dash"),
    pytest.param("team-", None, ("header", "x-namespace"), id="trailing-dash"),
    pytest.param("a" * 64, None, ("header", "x-namespace"), id="64-characters"),
    pytest.param("team-a\n", None, ("header", "x-namespace"), id="a-newline"),
    pytest.param("team.a", None, ("header", "x-namespace"), id="a-dot"),
    pytest.param(None, "team-a?x=1", ("query", "namespace"), id="the-query's"),
    pytest.param(None, "team%2Fb", ("query", "namespace"), id="escaped-slash"),
])
def test_a_namespace_that_is_not_a_namespaces_name_is_refused_naming_where(header: str | None, query: str | None,
                                                                            loc: tuple[str, str]) -> None:
    with pytest.raises(NoNamespace) as refused:
        namespace_of(header, query)
    assert refused.value.loc == loc and refused.value.kind == "value_error"
    assert str(refused.value) == (f"{' '.join(loc)} is not a Kubernetes namespace name: 1 to 63 lower-case letters, "
                                  "digits or '-', starting and ending with a letter or digit")


def test_a_bad_namespace_is_a_422_naming_it_and_reaches_no_api_path() -> None:
    """The reviewer's L4: the namespace went into the API server's path as given."""
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    caller = Recording()
    app = build_app(intake=memory.committer(cluster, clock), health=Alive(), max_body_bytes=4096,
                    authorizer=Authorizer(cluster, ttl_seconds=10), caller=caller)
    bearer = {"authorization": "Bearer sender-token"}
    with TestClient(app) as c:
        seed = c.get("/v1/triggers", headers={**bearer, "x-namespace": "team-a/triggers/x"})
        assert seed.status_code == 422
        details = sdk_error(seed).error.details
        assert details is not None and details["errors"][0]["loc"] == ["header", "x-namespace"]
        assert "Kubernetes namespace name" in details["errors"][0]["msg"]
        queried = c.post("/v1/triggers/list", params={"namespace": ".."}, json={}, headers=bearer)
        assert sdk_error(queried).error.details["errors"][0]["loc"] == ["query", "namespace"]  # type: ignore[index]
        events = post(c, CLOUDEVENT, namespace=None, headers={"x-namespace": "Team-A"},
                      content_type="application/cloudevents+json")
        assert events.status_code == 422
        assert events.json()["detail"][0]["loc"] == ["header", "x-namespace"]
        assert caller.paths == []  # nothing was asked of the API server
        assert c.get("/v1/triggers", headers={**bearer, "x-namespace": NAMESPACE}).status_code == 200
        assert caller.paths != []
    assert cluster.status(NAMESPACE, "on-docs").get("eventCounter", 0) == 0

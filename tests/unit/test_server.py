"""The server's own bounds, on a real socket on loopback (issue 17, review of the HTTP hardening):
one address may hold only so many open connections (the next are closed at accept, one log line a
minute); a request's body, not only its head, has a deadline; the probes have an app of their own.

Each test serves the app in its own event loop on 127.0.0.1 (port chosen by the kernel); "another
address" is 127.0.0.2, which Linux's loopback answers too."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from trigger_operator.config import HttpSettings
from trigger_operator.web.app import build_probe_app, build_webhook_app
from trigger_operator.web.server import server


def admission(app: FastAPI) -> None:
    @app.post("/admission/validate")
    async def validate(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}


@asynccontextmanager
async def serving(http: HttpSettings) -> AsyncIterator[int]:
    """The webhook app (it reads bodies, as the reviewer's target did) behind `server`; its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    web = server(build_webhook_app(admission=admission, max_body_bytes=1 << 20), host="127.0.0.1", port=0,
                 http=http)
    task = asyncio.create_task(web.serve(sockets=[sock]))
    while not web.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
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
    except ConnectionError:
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

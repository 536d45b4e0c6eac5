"""uvicorn serving the app inside the operator's own event loop (no thread, no second loop).

Each port is bounded, so that no client can hold its connections without sending a request:

- at most ``max_connections`` connections served at once (uvicorn's ``limit_concurrency``: more get
  503), and at most ``connections_per_address`` open from one peer address (an IPv6 one by its /64,
  as the rate limit: `client_key`; more are closed as they are accepted, before a byte is read), so
  one pod cannot take every slot;
- a request head must arrive whole within ``header_timeout_seconds``, and the whole request, head
  and body, within ``request_timeout_seconds``, both counted from its first byte (or from the
  connection, for its first request), or the connection is closed. uvicorn has a keep-alive timeout
  but no deadline for a head or a body, so a client that trickles header lines (slowloris) or
  declares a body and never ends it would hold a connection for ever.

On a TLS port the server listens for plain TCP and the bounded protocol starts TLS itself
(`asyncio.loop.start_tls`) once the connection is counted: were TLS the listener's (uvicorn's
``ssl_certfile``), the protocol would see the connection only after the handshake, which uvicorn
bounds by nothing but Python's 60 s default, so idle sockets that never start TLS would escape both
the per-address bound and the deadlines. The handshake must end within ``header_timeout_seconds``,
and the first request's deadlines still run from the TCP connection, handshake included.

The probes also have a port of their own (``probe_port``, `build_probe_app`), served by this same
server with the same bounds, where the kubelet never competes with the API's clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trigger_operator.config import ConfigurationError, HttpSettings
from trigger_operator.web.ratelimit import Notices, OpenConnections, client_key

log = logging.getLogger("trigger_operator.web")
# A request's line and headers together (h11's bound, which served here before httptools, which has
# none): more is refused with 400 as it arrives, so no client grows a head in memory within its deadline.
MAX_HEAD_BYTES = 16 * 1024
# Requests parsed and waiting behind the one being answered on a connection (HTTP/1.1 pipelining,
# which no common client uses), from one read's bytes (the rest waits unparsed): beyond it, 400
# and closed.
MAX_PIPELINED = 4
# Bytes received and not parsed while a request's answer is not out (reading is paused at the first,
# so only a read already under way adds): beyond it the connection is closed.
MAX_HELD_BYTES = 1024 * 1024


class PipelinedTooDeep(Exception):
    pass


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # kopf owns SIGINT and SIGTERM in this process; it stops us through `should_exit`.
        yield


class Bounded(HttpToolsProtocol):
    """uvicorn's httptools protocol with a per-address bound on open connections, deadlines for each
    request's head and for the whole request, a bound on the head's size (`MAX_HEAD_BYTES`), and TLS
    started by itself (``tls``) once a connection is counted. The class attributes are one server's:
    `server` makes a subclass per server, so its connections share one `OpenConnections`.

    The deadlines' clock starts when the connection opens and again with the first byte of each later
    request on it (the keep-alive timeout covers the idle time between requests); the head's stops
    once the parser has the whole head, the request's once it has the whole request. A body larger
    than uvicorn's read buffer (64 KiB) is read as the app consumes it, so its deadline also covers
    the app's wait before reading (a TokenReview): the default leaves ample room.

    httptools (llhttp), not h11: h11's pure-Python parsing was a fifth of the operator's main thread
    at 1,600 events a second, and a bare app served 23,100 requests a second on a core with
    httptools against 6,800 with h11 (issue 21)."""

    head_seconds: float = HttpSettings.header_timeout_seconds
    request_seconds: float = HttpSettings.request_timeout_seconds
    per_address: OpenConnections = OpenConnections(HttpSettings.connections_per_address)
    notices: Notices = Notices()
    tls: ssl.SSLContext | None = None  # a TLS port's context: the handshake is this protocol's

    _address: str | None = None  # the key (`client_key`) this connection is counted under in `per_address`
    _refused = False  # closed at accept: one too many from its address
    _handshake: asyncio.Task[None] | None = None  # the TLS handshake under way (uvicorn's protocol not started)
    _gone = False  # lost before uvicorn's protocol started
    _early: list[bytes] | None = None  # bytes decrypted right after the handshake, before the protocol started
    _head_timer: asyncio.TimerHandle | None = None
    _request_timer: asyncio.TimerHandle | None = None
    _reading = False  # a request begun and not all in
    _in_head = False  # a request's first bytes are in and its head is not
    _head_bytes = 0  # received since that request's first byte, while its head is not all in
    _chunk = 0  # the bytes being parsed now
    _held: list[bytes]  # received while a request's answer was not out, not parsed yet (`data_received`)
    _held_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # (as uvicorn)
        address = str((transport.get_extra_info("peername") or ("unknown",))[0])
        key = client_key(address)
        if not self.per_address.open(key):
            # Refused before uvicorn sees it: never in its connections (which `max_connections` counts).
            self._refused = True
            if self.notices.due(key):
                log.warning("refusing connections from %s: it holds %d open on this port, the most one address "
                            "may (TRIGGER_OPERATOR_HTTP_CONNECTIONS_PER_ADDRESS); said once a minute",
                            key, self.per_address.per_address)
            transport.abort()
            return
        self._address = key
        if self.tls is None:
            self._start(transport, self.loop.time())
        else:
            self._early = []
            self._handshake = self.loop.create_task(self._start_tls(transport, address, self.loop.time()))

    async def _start_tls(self, transport: asyncio.Transport, address: str, accepted: float) -> None:
        assert self.tls is not None
        tls: asyncio.Transport | None = None
        try:
            # The raw transport is TLS's from here on: `self` gets the plain bytes (and, once
            # started, connection_lost) from it.
            # Closing waits for the peer's close_notify at most as long as a head (Python's default: 30 s).
            tls = await self.loop.start_tls(transport, self, self.tls, server_side=True,
                                            ssl_handshake_timeout=self.head_seconds,
                                            ssl_shutdown_timeout=self.head_seconds)
        except (OSError, asyncio.CancelledError):  # refused, reset, or no handshake within the deadline
            pass
        finally:
            self._handshake = None
            if tls is None:  # gone during the handshake (start_tls closed the socket, or the peer did)
                if self.loop.time() - accepted >= self.head_seconds and self.notices.due(self._address or ""):
                    log.info("closed a connection from %s: no TLS handshake within %g s (said once a minute "
                             "per address)", address, self.head_seconds)
                self._release()
        if tls is not None and not self._gone:
            self._start(tls, accepted)

    def _start(self, transport: asyncio.Transport, accepted: float) -> None:
        """uvicorn's protocol on ``transport`` (TCP, or TLS once its handshake is done), deadlines
        counted from ``accepted``."""
        self._held = []
        super().connection_made(transport)
        self._arm(since=accepted)
        early, self._early = self._early or [], None
        for data in early:
            self.data_received(data)

    def eof_received(self) -> None:
        if self._early is None:  # (before uvicorn's protocol started, connection_lost follows)
            super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._early is not None:
            # TLS hands on what followed the handshake before `_start_tls` resumes: kept for `_start`.
            self._early.append(data)
            return
        if self._held or self.pipeline or (
                self.cycle is not None and not self._reading and not self.cycle.response_complete):
            # A request is all in and its answer is not out, or requests wait behind one: what follows
            # waits unparsed, reading paused, as h11 read one request at a time (httptools would parse
            # it into uvicorn's queue at once, a queued request's body with it). Fed once answered.
            self._held.append(data)
            self._held_bytes += len(data)
            self.flow.pause_reading()
            if self._held_bytes > MAX_HELD_BYTES:
                self.transport.close()
            return
        if not self._reading and not self._in_head:  # a request's first bytes
            if self._request_timer is None:
                self._arm()  # of a next request on a kept-alive connection (the first's run from the connection)
            self._in_head, self._head_bytes = True, 0
        if self._in_head:
            self._head_bytes += len(data)
        self._chunk = len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            # Counted as received, not as parsed: httptools holds a header's value until the next
            # header begins, so one endless value would pass any count of what it handed over.
            self.send_400_response(f"The request head is over {MAX_HEAD_BYTES} bytes.")

    def on_response_complete(self) -> None:
        if self.cycle is not None and self.cycle.response_complete:
            self.cycle.body = bytearray()  # answered before its body was read (a 413): what came of it is dropped
        super().on_response_complete()
        # Fed read by read, as they came (a pipelined request begun mid-read has its head charged
        # that read: joined, the reads would charge it all of them); what a read starts that must
        # wait again is held again, in order.
        held, self._held, self._held_bytes = self._held, [], 0
        for data in held:
            if self.transport.is_closing():
                break
            self.data_received(data)

    # The parser's callbacks say which deadlines still run.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = True
        if not self._in_head:
            # A pipelined request, begun in the bytes that ended the one before: where in them is not
            # told, so its head is charged all of them (a bound, never more than one chunk over it).
            self._in_head, self._head_bytes = True, self._chunk
        if self._request_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel("_head_timer")  # the head is in
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINED:
            # uvicorn queues every request parsed behind one being answered and reads on after each
            # answer: unbounded, a client pipelining tiny requests would fill memory and the loop.
            # Raised in the parser's callback: uvicorn answers 400 and closes the connection.
            raise PipelinedTooDeep(f"more than {MAX_PIPELINED} requests pipelined behind one being answered")

    def on_message_complete(self) -> None:
        self._reading = False
        self._cancel("_request_timer")  # the whole request is in: the app's time now
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return  # uvicorn never knew it
        self._cancel("_head_timer")
        self._cancel("_request_timer")
        self._release()
        if self._early is not None:
            self._gone = True  # lost before uvicorn's protocol started: `_start_tls` will not start it
            return
        super().connection_lost(exc)

    def _release(self) -> None:
        """This connection no longer counts against its address (once, whichever way it ended)."""
        if self._address is not None:
            self.per_address.close(self._address)
            self._address = None

    def _arm(self, head: bool = True, since: float | None = None) -> None:
        """Both deadlines (or the request's alone), counted from ``since`` (default: now)."""
        self._cancel("_head_timer")
        self._cancel("_request_timer")
        elapsed = 0.0 if since is None else max(0.0, self.loop.time() - since)
        if head:
            self._head_timer = self.loop.call_later(self.head_seconds - elapsed, self._too_slow, "request head",
                                                    self.head_seconds)
        self._request_timer = self.loop.call_later(self.request_seconds - elapsed, self._too_slow, "request",
                                                   self.request_seconds)

    def _cancel(self, name: str) -> None:
        timer: asyncio.TimerHandle | None = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _too_slow(self, what: str, seconds: float) -> None:
        self._cancel("_head_timer")
        self._cancel("_request_timer")
        if not self.transport.is_closing():
            address = (self.client or ("unknown",))[0]
            if self.notices.due(client_key(address)):
                log.info("closed a connection from %s: no whole %s within %g s (said once a minute per address)",
                         address, what, seconds)
            self.transport.close()


def tls_pair(cert: str, key: str, cert_setting: str, key_setting: str) -> tuple[str, str]:
    """A certificate and its key, both or neither (a ConfigurationError naming the settings)."""
    if bool(cert) != bool(key):
        given, missing = (cert_setting, key_setting) if cert else (key_setting, cert_setting)
        raise ConfigurationError(f"{given} is set but {missing} is not: TLS needs both a certificate and its key "
                                 "(or neither)")
    return cert, key


def api_tls(http: HttpSettings) -> tuple[str, str]:
    """The API port's certificate and key (empty: plain HTTP)."""
    return tls_pair(http.api_tls_cert, http.api_tls_key, "TRIGGER_OPERATOR_HTTP_API_TLS_CERT",
                    "TRIGGER_OPERATOR_HTTP_API_TLS_KEY")


def server(app: FastAPI, *, host: str, port: int, tls_cert: str = "", tls_key: str = "",
           http: HttpSettings | None = None) -> uvicorn.Server:
    """A server for ``app`` with ``http``'s bounds (connections, per address, deadlines); with a
    certificate and key, over TLS (the API server calls webhooks so)."""
    http = http or HttpSettings()
    protocol = type("BoundedProtocol", (Bounded,), {
        "head_seconds": http.header_timeout_seconds, "request_seconds": http.request_timeout_seconds,
        "per_address": OpenConnections(http.connections_per_address), "notices": Notices(),
        "tls": tls_context(tls_cert, tls_key) if tls_cert else None})
    # log_config=None: uvicorn's lines go through the operator's one handler (text or JSON). No
    # ssl_certfile: uvicorn listens for TCP and `Bounded` starts TLS (see the module's docstring).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None,
                            lifespan="off", timeout_graceful_shutdown=5, http=protocol,
                            limit_concurrency=http.max_connections)
    return _EmbeddedServer(config)


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server's TLS context: Python's defaults for a server (TLS 1.2 or later, its secure ciphers),
    read when the server is made, so that a missing or bad file fails the start naming it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except OSError as error:  # ssl.SSLError too
        raise ConfigurationError(f"cannot use the TLS certificate {cert} with the key {key}: {error}") from error
    return context

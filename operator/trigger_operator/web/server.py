"""uvicorn serving the app inside the operator's own event loop (no thread, no second loop).

Each port is bounded: at most ``max_connections`` connections served at once (uvicorn's
``limit_concurrency``: more get 503), and a request head must arrive whole within
``header_timeout_seconds`` of its first byte (or of the connection, for its first request), or the
connection is closed. uvicorn has a keep-alive timeout but no deadline for a head, so a client that
trickles header lines (slowloris) would hold a connection, and so a slot of that limit, for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from trigger_operator.config import ConfigurationError, HttpSettings

log = logging.getLogger("trigger_operator.web")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # kopf owns SIGINT and SIGTERM in this process; it stops us through `should_exit`.
        yield


class HeadDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head. The clock starts when the
    connection opens and again with the first byte of each later request on it (the keep-alive
    timeout covers the idle time between requests); it stops once h11 has the whole head."""

    head_seconds: float = HttpSettings.header_timeout_seconds

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # (as uvicorn)
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of a next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the head is in (or the connection failed): the app's time now

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closed a connection from %s: no whole request head within %g s",
                     (self.client or ("?",))[0], self.head_seconds)
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
           max_connections: int = HttpSettings.max_connections,
           header_timeout_seconds: float = HttpSettings.header_timeout_seconds) -> uvicorn.Server:
    """A server for ``app``; with a certificate and key, over TLS (the API server calls webhooks so)."""
    protocol = type("HeadDeadlineProtocol", (HeadDeadline,), {"head_seconds": header_timeout_seconds})
    # log_config=None: uvicorn's lines go through the operator's one handler (text or JSON).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None,
                            lifespan="off", timeout_graceful_shutdown=5, http=protocol,
                            limit_concurrency=max_connections,
                            ssl_certfile=tls_cert or None, ssl_keyfile=tls_key or None)
    return _EmbeddedServer(config)

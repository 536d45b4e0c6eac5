"""uvicorn serving the app inside the operator's own event loop (no thread, no second loop)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("trigger_operator.web")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # kopf owns SIGINT and SIGTERM in this process; it stops us through `should_exit`.
        yield


def server(app: FastAPI, *, host: str, port: int, tls_cert: str = "", tls_key: str = "") -> uvicorn.Server:
    """A server for ``app``; with a certificate and key, over TLS (the API server calls webhooks so)."""
    # log_config=None: uvicorn's lines go through the operator's one handler (text or JSON).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None,
                            lifespan="off", timeout_graceful_shutdown=5,
                            ssl_certfile=tls_cert or None, ssl_keyfile=tls_key or None)
    return _EmbeddedServer(config)

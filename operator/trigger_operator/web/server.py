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


def server(app: FastAPI, *, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", timeout_graceful_shutdown=5)
    return _EmbeddedServer(config)

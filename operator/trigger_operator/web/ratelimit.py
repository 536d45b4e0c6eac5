"""Requests per client are bounded (a token bucket each): a flood from one sender gets 429 with
``Retry-After`` and cannot starve the others or the API server behind the intake.

A client is its Bearer token (by hash), or its address when it sends none. Probes and metrics are
not limited; nor are the admission webhooks, served apart on the TLS port (the API server is one
client with every user's requests).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

UNLIMITED_PATHS = ("/healthz", "/readyz", "/metrics")
CLIENTS_KEPT = 10_000  # buckets remembered; the least recently seen go first (a full one is as good as new)


class TokenBuckets:
    def __init__(self, rate: float, burst: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._now = rate, burst, monotonic
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str) -> float:
        """0 when the request may go on (a token taken), else the seconds until one is free."""
        now = self._now()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self._buckets) > CLIENTS_KEPT:
            self._buckets.popitem(last=False)
        return wait


class RateLimit:
    def __init__(self, app: Any, buckets: TokenBuckets) -> None:
        self.app, self.buckets = app, buckets

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(UNLIMITED_PATHS):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(_client(scope))
        if wait == 0:
            await self.app(scope, receive, send)
            return
        retry_after = str(max(1, math.ceil(wait)))
        await JSONResponse({"detail": f"too many requests from this client; try again in {retry_after} s"}, 429,
                           headers={"Retry-After": retry_after})(scope, receive, send)


def _client(scope: dict[str, Any]) -> str:
    authorization = dict(scope.get("headers") or []).get(b"authorization")
    if authorization:
        return "token:" + hashlib.sha256(authorization).hexdigest()
    host = (scope.get("client") or ("unknown", 0))[0]
    return f"address:{host}"

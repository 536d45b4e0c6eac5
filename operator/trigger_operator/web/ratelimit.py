"""Requests are bounded per client address before anything else and per identity after
authentication (a token bucket each), and TokenReviews of tokens not yet in the cache per address:
a flood from one sender gets 429 with ``Retry-After`` and cannot starve the others, the Job creates
or the API server behind the intake.

An address is the TCP peer's (ASGI ``scope["client"]``). Behind a proxy or an ingress that is the
proxy's, so all its clients share one address bucket: size ``rate_per_address`` for it, or let the
proxy limit per client. ``X-Forwarded-For`` is never trusted: any client could write it and so pick
a fresh bucket per request, which is what a per-address limit exists to stop. An identity is the
TokenReview's username and uid, never the header: a thousand random ``Bearer`` values are one
address, and a thousand tokens of one ServiceAccount one identity.

The probes are never limited (a kubelet must always reach them); ``/metrics`` is, per address (a
Prometheus scrapes far below any sane rate). The admission webhooks on the TLS port have their own
per-address limit (``webhook_rate_per_address``): the API server calls them from one address per
replica of it.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from trigger_operator.config import HttpSettings

UNLIMITED_PATHS = ("/healthz", "/readyz")
CLIENTS_KEPT = 10_000  # buckets remembered; the least recently seen go first (a full one is as good as new)


class TooManyRequests(Exception):
    """A bucket is empty: 429 with ``Retry-After``."""

    def __init__(self, detail: str, wait: float) -> None:
        super().__init__(detail)
        self.detail, self.wait = detail, wait

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.wait)))

    def response(self) -> JSONResponse:
        return JSONResponse({"detail": f"{self.detail}; try again in {self.retry_after} s"}, 429,
                            headers={"Retry-After": self.retry_after})


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

    def charge(self, client: str, what: str) -> None:
        """`take`, raising `TooManyRequests` (saying ``what`` was refused) when the bucket is empty."""
        wait = self.take(client)
        if wait:
            raise TooManyRequests(f"too many {what}", wait)


@dataclass(frozen=True)
class Limits:
    """The buckets of the API port. A review bucket holds one second of reviews: a burst of new
    tokens from one address costs at most ``reviews_per_address`` TokenReviews a second."""

    per_address: TokenBuckets
    per_identity: TokenBuckets
    reviews: TokenBuckets

    @classmethod
    def of(cls, http: HttpSettings, monotonic: Callable[[], float] = time.monotonic) -> Limits:
        return cls(per_address=TokenBuckets(http.rate_per_address, http.burst_per_address, monotonic),
                   per_identity=TokenBuckets(http.rate_per_client, http.burst_per_client, monotonic),
                   reviews=TokenBuckets(http.reviews_per_address, http.reviews_per_address, monotonic))


class RateLimit:
    """ASGI middleware: one bucket per client address, before any route, body or token is read."""

    def __init__(self, app: Any, buckets: TokenBuckets) -> None:
        self.app, self.buckets = app, buckets

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(UNLIMITED_PATHS):
            await self.app(scope, receive, send)
            return
        try:
            self.buckets.charge(address_of(scope), "requests from this address")
        except TooManyRequests as refused:
            await refused.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def address_of(scope: dict[str, Any]) -> str:
    """The TCP peer's address (see the module's docstring: no forwarded header is trusted)."""
    return str((scope.get("client") or ("unknown", 0))[0])

"""Requests are bounded per client address before anything else and per identity after
authentication (a token bucket each), and TokenReviews of tokens not yet in the cache per address
and in all: a flood from one sender gets 429 with ``Retry-After`` and cannot starve the others, the
Job creates or the API server behind the intake.

An address is the TCP peer's (ASGI ``scope["client"]``), an IPv4 address whole and an IPv6 one by
its /64: a host given a /64 (the usual smallest IPv6 allocation) picks any of its 2^64 addresses,
so keying on the address would give it as many fresh buckets. Behind a proxy or an ingress the
address is the proxy's, so all its clients share one bucket: size ``rate_per_address`` for it, or
let the proxy limit per client. ``X-Forwarded-For`` is never trusted: any client could write it and
so pick a fresh bucket per request, which is what a per-address limit exists to stop. An identity is
the TokenReview's username and uid, never the header: a thousand random ``Bearer`` values are one
address, and a thousand tokens of one ServiceAccount one identity.

The probes are never limited (a kubelet must always reach them); ``/metrics`` is, per address (a
Prometheus scrapes far below any sane rate). The admission webhooks are not rate-limited: the API
server calls them from one address for every tenant's writes, so one tenant's burst of dry runs
would refuse the others' writes. Their port is held by the NetworkPolicy and by the connection
bounds every port has (`OpenConnections`, web/server.py).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trigger_operator.config import HttpSettings

UNLIMITED_PATHS = ("/healthz", "/readyz")
CLIENTS_KEPT = 10_000  # buckets remembered; the least recently seen go first (a full one is as good as new)
IPV6_PREFIX = 64  # an IPv6 client is its /64 (see the module's docstring)


class TooManyRequests(Exception):
    """A bucket is empty: 429 with ``Retry-After``."""

    def __init__(self, detail: str, wait: float) -> None:
        super().__init__(detail)
        self.detail, self.wait = detail, wait

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.wait)))

    @property
    def message(self) -> str:
        return f"{self.detail}; try again in {self.retry_after} s"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after}


# An error answer for a path: (path, status, message, headers) -> an ASGI app (web/app.py's
# `error_answer`, which gives each API its own error body).
ErrorAnswer = Callable[[str, int, str, dict[str, str] | None], Any]


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
    tokens from one address costs at most ``reviews_per_address`` TokenReviews a second, and from
    all addresses together at most ``reviews_total`` (one bucket, key ``ALL``)."""

    per_address: TokenBuckets
    per_identity: TokenBuckets
    reviews: TokenBuckets
    reviews_total: TokenBuckets

    ALL = ""

    @classmethod
    def of(cls, http: HttpSettings, monotonic: Callable[[], float] = time.monotonic) -> Limits:
        return cls(per_address=TokenBuckets(http.rate_per_address, http.burst_per_address, monotonic),
                   per_identity=TokenBuckets(http.rate_per_client, http.burst_per_client, monotonic),
                   reviews=TokenBuckets(http.reviews_per_address, http.reviews_per_address, monotonic),
                   reviews_total=TokenBuckets(http.reviews_total, http.reviews_total, monotonic))

    def charge_review(self, address: str) -> None:
        """One TokenReview of a new token from ``address``: its own bucket first, so that an address
        already refused spends nothing of the shared one; then the shared one."""
        self.reviews.charge(address, "new tokens from this address (each costs a TokenReview)")
        self.reviews_total.charge(self.ALL, "new tokens from all clients (each costs a TokenReview); "
                                            "tokens already seen go on")


class OpenConnections:
    """The connections each peer address holds open on one port, at most ``per_address`` each (the
    accept-time bound of web/server.py). Pure bookkeeping: the server counts and closes."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._open: dict[str, int] = {}

    def open(self, address: str) -> bool:
        """Counts a new connection from ``address``; False (and not counted) when it is one too many."""
        held = self._open.get(address, 0)
        if held >= self.per_address:
            return False
        self._open[address] = held + 1
        return True

    def close(self, address: str) -> None:
        """A counted connection ended (an address with none left is forgotten: the map stays as
        small as the connections open)."""
        held = self._open.get(address, 0) - 1
        if held > 0:
            self._open[address] = held
        else:
            self._open.pop(address, None)

    def held(self, address: str) -> int:
        return self._open.get(address, 0)


class Notices:
    """Whether a line about ``address`` is due: at most one per ``every`` seconds per address, so a
    client that is refused a thousand times a second costs the log one line a minute. Bounded like
    the buckets (the least recently noted forgotten first)."""

    def __init__(self, every: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.every, self._now = every, monotonic
        self._last: OrderedDict[str, float] = OrderedDict()

    def due(self, address: str) -> bool:
        now = self._now()
        last = self._last.get(address)
        if last is not None and now - last < self.every:
            return False
        self._last.pop(address, None)
        self._last[address] = now
        while len(self._last) > CLIENTS_KEPT:
            self._last.popitem(last=False)
        return True


class RateLimit:
    """ASGI middleware: one bucket per client address, before any route, body or token is read. A
    refusal is ``answer``'s (the body the path's API promises)."""

    def __init__(self, app: Any, buckets: TokenBuckets, answer: ErrorAnswer) -> None:
        self.app, self.buckets, self.answer = app, buckets, answer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(UNLIMITED_PATHS):
            await self.app(scope, receive, send)
            return
        try:
            self.buckets.charge(address_of(scope), "requests from this address")
        except TooManyRequests as refused:
            await self.answer(str(scope.get("path", "")), 429, refused.message, refused.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def address_of(scope: dict[str, Any]) -> str:
    """The TCP peer's address as a limit's key (see the module's docstring: no forwarded header is
    trusted)."""
    return client_key(str((scope.get("client") or ("unknown", 0))[0]))


@functools.lru_cache(maxsize=CLIENTS_KEPT)
def client_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one as its /64 (an IPv4-mapped one as its IPv4 address);
    anything else (a Unix socket's peer) as it is. Remembered for the last CLIENTS_KEPT addresses:
    every request asks twice (the per-address limit, then the token's) and parsing was 2.5% of the
    intake's CPU; a flood of new addresses only pushes old ones out."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])  # without a zone index (fe80::1%eth0)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)

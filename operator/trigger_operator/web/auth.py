"""Who may call: any Bearer token the Kubernetes API accepts (a TokenReview), allowed by RBAC for
the request (a SubjectAccessReview), so a plain Role grants it.

Answers are cached briefly, keyed by a hash of the token and the audience asked for (the token
itself is never kept or logged), in a least-recently-used cache of ``auth_cache_entries``: a flood
of new tokens pushes out the oldest answers, never all of them at once. Concurrent requests with
the same new token share one TokenReview. A token not in the cache costs a TokenReview, so those
are limited per client address (`Limits.reviews`, 429 without a review) and in all
(`Limits.reviews_total`, so rotated addresses cannot make unbounded reviews), and every authenticated
request is limited per identity (`Limits.per_identity`, the review's username and uid).
SubjectAccessReview answers are keyed by the identity, so all tokens of one account share them."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from trigger_operator.config import HttpSettings
from trigger_operator.kube.interface import Identity
from trigger_operator.web.ratelimit import Limits

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

JWT_PAYLOAD_MAX_CHARS = 8 * 1024  # a ServiceAccount token's payload is under 1 KiB
UrlAccess = Callable[[Identity, str, str], Awaitable[tuple[bool, str]]]
"""A SubjectAccessReview on a non-resource URL: (identity, verb, path) -> (allowed, reason)."""


class Reviewer(Protocol):
    """The two reviews the Authorizer asks the API server for (`ClusterApi` has both)."""

    async def review_token(self, token: str, audiences: Sequence[str] = ()) -> Identity | None: ...

    async def review_access(self, identity: Identity, *, namespace: str, verb: str, group: str, resource: str,
                            subresource: str = "", name: str = "") -> tuple[bool, str]: ...


class Unauthenticated(Exception):
    """No token, or one the API server does not accept: 401."""


class Forbidden(Exception):
    """RBAC says no: 403."""


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str
    subresource: str = ""

    def describe(self, namespace: str) -> str:
        what = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {what}.{self.group} in namespace {namespace}"


class Lru(Generic[K, V]):
    """Answers kept until their own deadline, at most ``entries`` of them, the least recently used
    dropped first; concurrent misses of one key share one computation (a dict of in-flight tasks)."""

    def __init__(self, entries: int, monotonic: Callable[[], float]) -> None:
        self._entries, self._now = entries, monotonic
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()  # key -> (kept until, answer)
        self._flying: dict[K, asyncio.Task[tuple[float, V]]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, answer) while the answer is fresh (and it becomes the most recently used)."""
        found = self._items.get(key)
        if found is None:
            return False, None
        if found[0] <= self._now():
            del self._items[key]
            return False, None
        self._items.move_to_end(key)
        return True, found[1]

    def put(self, key: K, value: V, seconds: float) -> None:
        self._items[key] = (self._now() + seconds, value)
        self._items.move_to_end(key)
        while len(self._items) > self._entries:
            self._items.popitem(last=False)

    async def get_or_compute(self, key: K, compute: Callable[[], Awaitable[tuple[float, V]]],
                             on_miss: Callable[[], None] = lambda: None) -> V:
        """The cached answer, or the one being computed for another caller, or a new one: ``on_miss``
        is called first (it may refuse by raising), then ``compute`` gives (seconds to keep, answer)."""
        hit, value = self.get(key)
        if hit:
            return value  # type: ignore[return-value]
        task = self._flying.get(key)
        if task is None:
            on_miss()
            task = self._flying[key] = asyncio.ensure_future(compute())
            task.add_done_callback(lambda done: self._landed(key, done))
        # Shielded: a caller that goes away (its client hung up) does not cancel the others' answer.
        _, value = await asyncio.shield(task)
        return value  # type: ignore[return-value]

    def _landed(self, key: K, task: asyncio.Task[tuple[float, V]]) -> None:
        if self._flying.get(key) is task:
            del self._flying[key]
        if not task.cancelled() and task.exception() is None:
            seconds, value = task.result()
            if seconds > 0:
                self.put(key, value, seconds)


def identity_key(identity: Identity) -> tuple[Any, ...]:
    """Everything a SubjectAccessReview is asked about an identity, hashable."""
    extra = tuple(sorted((k, tuple(v)) for k, v in identity.extra.items()))
    return identity.user, identity.uid, identity.groups, extra


class Authorizer:
    def __init__(self, api: Reviewer, *, ttl_seconds: float, cache_entries: int = HttpSettings.auth_cache_entries,
                 limits: Limits | None = None, url_access: UrlAccess | None = None,
                 monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._api = api
        self._ttl = ttl_seconds
        self._limits = limits
        self._url_access = url_access
        self._wall = wall
        self._identities: Lru[tuple[str, str], Identity | None] = Lru(cache_entries, monotonic)
        self._decisions: Lru[tuple[Any, ...], tuple[bool, str]] = Lru(cache_entries, monotonic)

    async def identify(self, authorization: str | None, *, address: str = "", audience: str = "") -> Identity:
        """Whose token this is (a TokenReview, cached; with ``audience``, one asking for it);
        `Unauthenticated` if none or not accepted; `TooManyRequests` when ``address`` has spent
        its reviews of new tokens."""
        token = bearer_token(authorization)
        # A token that says it has expired is refused without asking; an accepted one is trusted
        # from the cache no longer than its own expiry (the API server's clock decides the rest).
        expiry = token_expiry(token)
        left = self._ttl if expiry is None else min(self._ttl, expiry - self._wall())
        if left <= 0:
            raise Unauthenticated("the Bearer token has expired")

        async def review() -> tuple[float, Identity | None]:
            return left, await self._api.review_token(token, (audience,) if audience else ())

        def charge() -> None:
            if self._limits is not None:
                self._limits.charge_review(address)

        key = (hashlib.sha256(token.encode()).hexdigest(), audience)
        identity = await self._identities.get_or_compute(key, review, charge)
        if identity is None:
            if audience:
                raise Unauthenticated(f"the Bearer token is not accepted by the Kubernetes API for audience "
                                      f"{audience!r}: send one bound to it (kubectl create token ACCOUNT "
                                      f"--audience {audience})")
            raise Unauthenticated("the Bearer token is not accepted by the Kubernetes API")
        return identity

    def admit(self, identity: Identity) -> None:
        """One request of ``identity`` (after authentication): `TooManyRequests` past its rate."""
        if self._limits is not None:
            self._limits.per_identity.charge(f"{identity.user}\x00{identity.uid}", f"requests from {identity.user}")

    async def authorize(self, authorization: str | None, namespace: str, permission: Permission, *,
                        address: str = "", audience: str = "") -> Identity:
        """`identify`, `admit`, then RBAC for ``permission`` in ``namespace`` (`Forbidden`)."""
        identity = await self.identify(authorization, address=address, audience=audience)
        self.admit(identity)
        allowed, reason = await self._decision(identity, namespace, permission)
        if not allowed:
            raise Forbidden(f"{identity.user} may not {permission.describe(namespace)}"
                            + (f": {reason}" if reason else ""))
        return identity

    async def may(self, identity: Identity, namespace: str, permission: Permission) -> bool:
        """Whether RBAC allows it (a cached SubjectAccessReview), for answers that name only what
        the caller may see."""
        allowed, _ = await self._decision(identity, namespace, permission)
        return allowed

    async def authorize_url(self, authorization: str | None, path: str, *, verb: str = "get",
                            address: str = "") -> Identity:
        """For a non-resource URL (``/metrics``): a TokenReview, then a SubjectAccessReview of
        ``verb`` on ``path`` (a ClusterRole's ``nonResourceURLs``), as controller-runtime's secure
        metrics serving does."""
        if self._url_access is None:
            raise RuntimeError("no SubjectAccessReview for non-resource URLs was given")
        identity = await self.identify(authorization, address=address)
        self.admit(identity)
        url_access = self._url_access

        async def review() -> tuple[float, tuple[bool, str]]:
            return self._ttl, await url_access(identity, verb, path)

        allowed, reason = await self._decisions.get_or_compute((identity_key(identity), "url", verb, path), review)
        if not allowed:
            raise Forbidden(f"{identity.user} may not {verb} {path}" + (f": {reason}" if reason else ""))
        return identity

    async def _decision(self, identity: Identity, namespace: str, permission: Permission) -> tuple[bool, str]:
        async def review() -> tuple[float, tuple[bool, str]]:
            return self._ttl, await self._api.review_access(
                identity, namespace=namespace, verb=permission.verb, group=permission.group,
                resource=permission.resource, subresource=permission.subresource)

        return await self._decisions.get_or_compute((identity_key(identity), namespace, permission), review)


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (unix seconds) of a JWT, read without verifying it (the TokenReview
    verifies); None for a token that is not a JWT or has none. A payload longer than
    `JWT_PAYLOAD_MAX_CHARS` is not parsed (as none: the review decides), nor is one nested too deeply
    for the parser (RecursionError), so no token costs more than a small parse or fails the request."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > JWT_PAYLOAD_MAX_CHARS:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        return None
    try:
        return float(exp)
    except OverflowError:  # an exp beyond any float: as good as none
        return None


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send 'Authorization: Bearer <token>' with a token the Kubernetes API accepts "
                              "(e.g. a ServiceAccount token)")
    return token.strip()

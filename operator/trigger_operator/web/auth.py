"""Who may call: any Bearer token the Kubernetes API accepts (a TokenReview), allowed by RBAC for
the request (a SubjectAccessReview), so a plain Role grants it. Answers are cached briefly, keyed
by a hash of the token (the token itself is never kept or logged)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from trigger_operator.kube.interface import ClusterApi, Identity

CACHE_LIMIT = 10_000


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


class Authorizer:
    def __init__(self, api: ClusterApi, *, ttl_seconds: float, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._api = api
        self._ttl = ttl_seconds
        self._now = monotonic
        self._wall = wall
        self._identities: dict[str, tuple[float, Identity | None]] = {}
        self._decisions: dict[tuple[str, str, Permission], tuple[float, bool, str]] = {}

    async def identify(self, authorization: str | None) -> Identity:
        """Whose token this is (a TokenReview, cached); `Unauthenticated` if none or not accepted."""
        token = bearer_token(authorization)
        identity = await self._identity(hashlib.sha256(token.encode()).hexdigest(), token)
        if identity is None:
            raise Unauthenticated("the Bearer token is not accepted by the Kubernetes API")
        return identity

    async def authorize(self, authorization: str | None, namespace: str, permission: Permission) -> Identity:
        identity = await self.identify(authorization)
        digest = hashlib.sha256(bearer_token(authorization).encode()).hexdigest()
        allowed, reason = await self._decision(digest, identity, namespace, permission)
        if not allowed:
            raise Forbidden(f"{identity.user} may not {permission.describe(namespace)}"
                            + (f": {reason}" if reason else ""))
        return identity

    async def _identity(self, digest: str, token: str) -> Identity | None:
        cached = self._identities.get(digest)
        if cached is not None and cached[0] > self._now():
            return cached[1]
        # A token that says it has expired is refused without asking; an accepted one is trusted
        # from the cache no longer than its own expiry (the API server's clock decides the rest).
        left = self._ttl
        expiry = token_expiry(token)
        if expiry is not None:
            left = min(left, expiry - self._wall())
            if left <= 0:
                return None
        identity = await self._api.review_token(token)
        self._remember(self._identities, digest, (self._now() + left, identity))
        return identity

    async def _decision(self, digest: str, identity: Identity, namespace: str,
                        permission: Permission) -> tuple[bool, str]:
        key = (digest, namespace, permission)
        cached = self._decisions.get(key)
        if cached is not None and cached[0] > self._now():
            return cached[1], cached[2]
        allowed, reason = await self._api.review_access(
            identity, namespace=namespace, verb=permission.verb, group=permission.group,
            resource=permission.resource, subresource=permission.subresource)
        self._remember(self._decisions, key, (self._now() + self._ttl, allowed, reason))
        return allowed, reason

    @staticmethod
    def _remember(cache: dict, key: object, value: object) -> None:  # type: ignore[type-arg]
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[key] = value


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim (unix seconds) of a JWT, read without verifying it (the TokenReview
    verifies); None for a token that is not a JWT or has none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
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

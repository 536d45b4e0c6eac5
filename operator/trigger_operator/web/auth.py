"""Who may call: any Bearer token the Kubernetes API accepts (a TokenReview), allowed by RBAC for
the request (a SubjectAccessReview), so a plain Role grants it. Answers are cached briefly, keyed
by a hash of the token (the token itself is never kept or logged)."""

from __future__ import annotations

import hashlib
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
    def __init__(self, api: ClusterApi, *, ttl_seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._ttl = ttl_seconds
        self._now = monotonic
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
        identity = await self._api.review_token(token)
        self._remember(self._identities, digest, (self._now() + self._ttl, identity))
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


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send 'Authorization: Bearer <token>' with a token the Kubernetes API accepts "
                              "(e.g. a ServiceAccount token)")
    return token.strip()

"""Bearer tokens: an expired one is refused without asking the API server, an accepted one is
reused from the cache no longer than its own expiry, and no token is trusted for longer than the
cache's time to live."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from tests.unit.conftest import Seconds
from trigger_operator.kube.interface import Identity
from trigger_operator.web.auth import Authorizer, Unauthenticated, token_expiry

WALL = 1_800_000_000.0


def jwt(claims: Any) -> str:
    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


class Reviews:
    """A TokenReview that accepts every token it is asked about, counting the questions."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def review_token(self, token: str) -> Identity | None:
        self.asked.append(token)
        return Identity(user="system:serviceaccount:a:b")


def authorizer(ttl: float = 10) -> tuple[Authorizer, Reviews, Seconds]:
    reviews, seconds = Reviews(), Seconds(100.0)
    auth = Authorizer(reviews, ttl_seconds=ttl, monotonic=seconds,  # type: ignore[arg-type]
                      wall=lambda: WALL + seconds.now - 100.0)
    return auth, reviews, seconds


@pytest.mark.parametrize(("token", "expected"), [
    (jwt({"exp": 1_800_000_060, "sub": "x"}), 1_800_000_060.0), (jwt({"sub": "x"}), None), (jwt({"exp": "soon"}), None),
    (jwt({"exp": True}), None), (jwt({"exp": 10 ** 400}), None), (jwt([1, 2]), None), ("a.b", None),
    ("not-a-token", None), ("a.!!!.c", None), ("a." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".c", None),
])
def test_the_expiry_of_a_token(token: str, expected: float | None) -> None:
    assert token_expiry(token) == expected


def test_an_expired_token_is_refused_without_a_review() -> None:
    auth, reviews, _ = authorizer()
    with pytest.raises(Unauthenticated):
        asyncio.run(auth.identify(f"Bearer {jwt({'exp': WALL - 1})}"))
    assert reviews.asked == []


def test_an_accepted_token_is_trusted_from_the_cache_no_longer_than_its_expiry() -> None:
    async def scenario() -> None:
        auth, reviews, seconds = authorizer(ttl=10)
        token = jwt({"exp": WALL + 3})
        await auth.identify(f"Bearer {token}")
        seconds.now += 2
        await auth.identify(f"Bearer {token}")
        assert len(reviews.asked) == 1  # from the cache
        seconds.now += 1.5  # past its exp: refused, though the cache's ttl is 10 s
        with pytest.raises(Unauthenticated):
            await auth.identify(f"Bearer {token}")
        assert len(reviews.asked) == 1
    asyncio.run(scenario())


def test_any_token_is_asked_about_again_after_the_caches_ttl() -> None:
    async def scenario() -> None:
        auth, reviews, seconds = authorizer(ttl=10)
        for token in ("opaque-token", jwt({"exp": WALL + 3600})):
            await auth.identify(f"Bearer {token}")
            seconds.now += 10
            await auth.identify(f"Bearer {token}")
        assert len(reviews.asked) == 4
    asyncio.run(scenario())

"""Bearer tokens: an expired one is refused without asking the API server, an accepted one is
reused from the cache no longer than its own expiry, and no token is trusted for longer than the
cache's time to live. The cache drops the least recently used answer first and never empties whole;
concurrent requests with one new token share one review; /v1/events may require an audience;
/metrics may require RBAC on its URL."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.conftest import NAMESPACE, Seconds
from tests.unit.test_intake import CLOUDEVENT, SENDER, Alive, post, setup
from trigger_operator.kube.interface import Identity
from trigger_operator.metrics import Metrics
from trigger_operator.web.app import build_app
from trigger_operator.web.auth import JWT_PAYLOAD_MAX_CHARS, Authorizer, Lru, Unauthenticated, token_expiry

WALL = 1_800_000_000.0


def jwt(claims: Any) -> str:
    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


class Reviews:
    """A TokenReview that accepts every token it is asked about, counting the questions."""

    def __init__(self) -> None:
        self.asked: list[str] = []

        self.gate: asyncio.Event | None = None  # when set: every review waits for it

    async def review_token(self, token: str, audiences: Sequence[str] = ()) -> Identity | None:
        self.asked.append(token)
        if self.gate is not None:
            await self.gate.wait()
        return Identity(user="system:serviceaccount:a:b")

    async def review_access(self, identity: Identity, *, namespace: str, verb: str, group: str, resource: str,
                            subresource: str = "", name: str = "") -> tuple[bool, str]:
        return True, ""


def authorizer(ttl: float = 10, entries: int = 100) -> tuple[Authorizer, Reviews, Seconds]:
    reviews, seconds = Reviews(), Seconds(100.0)
    auth = Authorizer(reviews, ttl_seconds=ttl, cache_entries=entries, monotonic=seconds,
                      wall=lambda: WALL + seconds.now - 100.0)
    return auth, reviews, seconds


@pytest.mark.parametrize(("token", "expected"), [
    (jwt({"exp": 1_800_000_060, "sub": "x"}), 1_800_000_060.0), (jwt({"sub": "x"}), None), (jwt({"exp": "soon"}), None),
    (jwt({"exp": True}), None), (jwt({"exp": 10 ** 400}), None), (jwt([1, 2]), None), ("a.b", None),
    ("not-a-token", None), ("a.!!!.c", None), ("a." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".c", None),
])
def test_the_expiry_of_a_token(token: str, expected: float | None) -> None:
    assert token_expiry(token) == expected


def test_a_deeply_nested_or_oversized_payload_is_read_as_no_expiry_and_never_fails_the_request() -> None:
    deep = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode().rstrip("=")  # past the parser's depth
    nested = f"{jwt({}).split('.')[0]}.{deep}.c2lnbmF0dXJl"
    assert len(deep) <= JWT_PAYLOAD_MAX_CHARS  # refused for its depth, not its length
    assert token_expiry(nested) is None
    large = jwt({"exp": WALL + 60, "pad": "x" * JWT_PAYLOAD_MAX_CHARS})
    assert token_expiry(large) is None  # not parsed at all
    cluster, clock, memory = setup()
    app = build_app(intake=memory.committer(cluster, clock), authorizer=Authorizer(cluster, ttl_seconds=10),
                    health=Alive(), max_body_bytes=4096)
    with TestClient(app, raise_server_exceptions=False) as c:
        for token in (nested, large):
            answer = post(c, CLOUDEVENT, token=token, content_type="application/cloudevents+json")
            assert answer.status_code == 401, answer.text  # the review said no: not a 500


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


def test_the_cache_drops_the_least_recently_used_answer_first_and_never_all() -> None:
    async def scenario() -> None:
        auth, reviews, _ = authorizer(entries=3)
        for token in ("t1", "t2", "t3"):
            await auth.identify(f"Bearer {token}")
        await auth.identify("Bearer t1")  # used again: now the most recent
        await auth.identify("Bearer t4")  # a fourth: t2, the least recently used, goes
        assert reviews.asked == ["t1", "t2", "t3", "t4"]
        for token in ("t1", "t3", "t4"):
            await auth.identify(f"Bearer {token}")
        assert reviews.asked == ["t1", "t2", "t3", "t4"]  # still cached: nothing was cleared whole
        await auth.identify("Bearer t2")
        assert reviews.asked[-1] == "t2"
    asyncio.run(scenario())


def test_the_lru_keeps_at_most_its_entries_and_forgets_expired_ones() -> None:
    seconds = Seconds()
    cache: Lru[str, int] = Lru(2, seconds)
    cache.put("a", 1, 5)
    cache.put("b", 2, 10)
    cache.put("c", 3, 10)
    assert ("a" in cache, len(cache)) == (False, 2)
    seconds.now = 10
    assert cache.get("b") == (False, None) and "b" not in cache  # expired: a miss, and gone


def test_concurrent_requests_with_one_new_token_share_one_review() -> None:
    async def scenario() -> None:
        auth, reviews, _ = authorizer()
        reviews.gate = asyncio.Event()
        waiting = [asyncio.ensure_future(auth.identify("Bearer same")) for _ in range(20)]
        other = asyncio.ensure_future(auth.identify("Bearer other"))
        await asyncio.sleep(0)
        waiting[0].cancel()  # a sender that hung up does not take the answer from the others
        await asyncio.sleep(0)
        reviews.gate.set()
        identities = await asyncio.gather(*waiting[1:], other)
        assert {i.user for i in identities} == {"system:serviceaccount:a:b"}
        assert sorted(reviews.asked) == ["other", "same"]
        await auth.identify("Bearer same")
        assert len(reviews.asked) == 2  # and the shared answer is cached
    asyncio.run(scenario())


def test_events_may_require_tokens_bound_to_an_audience_and_the_other_routes_keep_the_default() -> None:
    cluster, clock, memory = setup()
    cluster.tokens = {"bound": SENDER, "plain": SENDER}
    cluster.token_audiences = {"bound": ("events.trigger-operator.io",)}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    authorizer = Authorizer(cluster, ttl_seconds=10)
    app = build_app(intake=memory.committer(cluster, clock), authorizer=authorizer, health=Alive(),
                    max_body_bytes=4096, events_audience="events.trigger-operator.io")
    with TestClient(app) as c:
        refused = post(c, CLOUDEVENT, token="plain", content_type="application/cloudevents+json")
        assert refused.status_code == 401
        assert "audience 'events.trigger-operator.io'" in refused.json()["detail"]
        assert "--audience events.trigger-operator.io" in refused.json()["detail"]
        assert post(c, CLOUDEVENT, token="bound", content_type="application/cloudevents+json").status_code == 202
    assert [name for method, name in cluster.calls if method == "review_token"] == ["events.trigger-operator.io"] * 2

    async def elsewhere() -> None:  # any other route asks with the API server's own audience
        assert (await authorizer.identify("Bearer plain")) == SENDER
        with pytest.raises(Unauthenticated):
            await authorizer.identify("Bearer bound")
    asyncio.run(elsewhere())


def test_metrics_may_require_a_token_allowed_to_get_the_url() -> None:
    cluster, clock, memory = setup()
    scraper = Identity(user="system:serviceaccount:monitoring:prometheus")
    cluster.tokens = {"scraper": scraper, "sender-token": SENDER}
    asked: list[tuple[str, str, str]] = []

    async def url_access(identity: Identity, verb: str, path: str) -> tuple[bool, str]:
        asked.append((identity.user, verb, path))
        return identity == scraper, ""

    def app(metrics_auth: bool) -> Any:
        return build_app(intake=memory.committer(cluster, clock), health=Alive(), max_body_bytes=4096,
                         authorizer=Authorizer(cluster, ttl_seconds=10, url_access=url_access), metrics=Metrics(),
                         metrics_auth=metrics_auth)

    with TestClient(app(metrics_auth=True)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"authorization": "Bearer forged"}).status_code == 401
        refused = c.get("/metrics", headers={"authorization": "Bearer sender-token"})
        assert refused.status_code == 403 and f"{SENDER.user} may not get /metrics" in refused.json()["detail"]
        allowed = c.get("/metrics", headers={"authorization": "Bearer scraper"})
        assert allowed.status_code == 200 and "trigger_operator_build_info" in allowed.text
        assert c.get("/metrics", headers={"authorization": "Bearer scraper"}).status_code == 200
    assert asked == [(SENDER.user, "get", "/metrics"), (scraper.user, "get", "/metrics")]  # the second cached
    with TestClient(app(metrics_auth=False)) as c:
        assert c.get("/metrics").status_code == 200  # without the setting: as before

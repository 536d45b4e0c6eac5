"""Requests are bounded per address before anything else, per identity after authentication, and
new tokens (each a TokenReview) per address: the token bucket's arithmetic, and 429 with Retry-After
from the app for one client while another, and the probes, go on."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.unit.conftest import NAMESPACE, Seconds
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_intake import CLOUDEVENT, SENDER, Alive, post, setup
from trigger_operator.config import HttpSettings
from trigger_operator.kube.interface import Identity
from trigger_operator.web.app import build_app, build_webhook_app
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.ratelimit import CLIENTS_KEPT, Limits, TokenBuckets

CE = "application/cloudevents+json"


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    seconds = Seconds()
    buckets = TokenBuckets(rate=2, burst=3, monotonic=seconds)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == 0.5  # empty: the next token in half a second
    assert buckets.take("b") == 0  # another client has its own
    seconds.now = 0.5
    assert buckets.take("a") == 0
    seconds.now = 100
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 0.5]  # refilled to the burst, not beyond


def test_the_buckets_kept_are_bounded() -> None:
    buckets = TokenBuckets(rate=1, burst=1, monotonic=Seconds())
    for i in range(CLIENTS_KEPT + 10):
        buckets.take(f"client-{i}")
    assert buckets.take("client-0") == 0  # forgotten: as good as a full bucket
    assert buckets.take(f"client-{CLIENTS_KEPT + 9}") == 1  # remembered: still empty


class NoTriggers:
    """The caller's API (seed routes): every namespace is empty."""

    async def request(self, token: str, method: str, path: str, **_: Any) -> Any:
        return {"items": []}


def app_with(cluster: FakeCluster, clock: Any, memory: Any, **http: Any) -> tuple[FastAPI, Seconds]:
    """The API app with the operator's limits from ``HttpSettings(**http)``, on a frozen clock."""
    seconds = Seconds()
    limits = Limits.of(HttpSettings(**http), monotonic=seconds)
    authorizer = Authorizer(cluster, ttl_seconds=10, limits=limits, monotonic=seconds)
    return build_app(intake=memory.committer(cluster, clock), authorizer=authorizer, health=Alive(),
                     max_body_bytes=4096, limits=limits, caller=NoTriggers()), seconds


def test_one_address_is_limited_before_its_token_is_looked_at_and_others_go_on() -> None:
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    app, _ = app_with(cluster, clock, memory, rate_per_address=0.001, burst_per_address=2)
    with TestClient(app, client=("10.0.0.1", 1000)) as flood, TestClient(app, client=("10.0.0.2", 1000)) as calm:
        assert [post(flood, {**CLOUDEVENT, "id": f"e{i}"}, content_type=CE).status_code
                for i in range(3)] == [202, 202, 429]
        refused = post(flood, CLOUDEVENT, token=secrets.token_hex(8), content_type=CE)  # a new token: same address
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "too many requests from this address" in refused.json()["detail"]
        assert post(calm, {**CLOUDEVENT, "id": "e9"}, content_type=CE).status_code == 202
        assert all(flood.get(probe).status_code == 200 for probe in ("/healthz", "/readyz") for _ in range(5))
    assert cluster.called("review_token") == 1  # the refused new token cost no review
    assert cluster.status(NAMESPACE, "on-docs")["eventCounter"] == 7 * 3  # the refused ones counted nothing


def test_one_identity_is_limited_whatever_tokens_and_addresses_it_uses() -> None:
    cluster, clock, memory = setup()
    other = Identity(user="system:serviceaccount:team-a:other", uid="u2")
    cluster.tokens = {"token-1": SENDER, "token-2": SENDER, "other-token": other}
    cluster.grants = {(u, NAMESPACE, "create", "triggers/events") for u in (SENDER.user, other.user)}
    app, _ = app_with(cluster, clock, memory, rate_per_client=0.001, burst_per_client=2)
    with TestClient(app, client=("10.0.0.1", 1)) as a, TestClient(app, client=("10.0.0.2", 1)) as b:
        assert post(a, {**CLOUDEVENT, "id": "1"}, token="token-1", content_type=CE).status_code == 202
        assert post(b, {**CLOUDEVENT, "id": "2"}, token="token-2", content_type=CE).status_code == 202
        refused = post(a, {**CLOUDEVENT, "id": "3"}, token="token-2", content_type=CE)
        assert refused.status_code == 429 and f"too many requests from {SENDER.user}" in refused.json()["detail"]
        assert post(a, {**CLOUDEVENT, "id": "4"}, token="other-token", content_type=CE).status_code == 202
        # The seed's routes count against the same identity.
        assert a.post("/v1/triggers/list", json={}, headers={"authorization": "Bearer token-1",
                                                            "x-namespace": NAMESPACE}).status_code == 429


def test_rotating_random_tokens_from_one_address_cost_at_most_its_reviews() -> None:
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    app, seconds = app_with(cluster, clock, memory, reviews_per_address=5)
    with TestClient(app, client=("10.0.0.1", 1)) as flood, TestClient(app, client=("10.0.0.2", 1)) as sender:
        codes = [post(flood, CLOUDEVENT, token=secrets.token_hex(16), content_type=CE).status_code
                 for _ in range(50)]
        assert codes == [401] * 5 + [429] * 45
        assert cluster.called("review_token") == 5  # no review past the address's budget
        assert "each costs a TokenReview" in post(flood, CLOUDEVENT, token="x", content_type=CE).json()["detail"]
        # A token already in the cache costs no review, so the same address may go on using it.
        assert post(sender, CLOUDEVENT, content_type=CE).status_code == 202
        seconds.now += 1  # a second later: five more
        codes = [post(flood, CLOUDEVENT, token=secrets.token_hex(16), content_type=CE).status_code
                 for _ in range(10)]
        assert codes == [401] * 5 + [429] * 5
    assert cluster.called("review_token") == 11


def test_the_webhook_port_is_limited_per_address() -> None:
    def admission(app: FastAPI) -> None:
        @app.post("/admission/validate")
        async def validate() -> dict[str, Any]:
            return {}

    app = build_webhook_app(admission=admission, max_body_bytes=4096, rate_per_address=1)
    with TestClient(app, client=("10.0.0.1", 1)) as pod, TestClient(app, client=("10.0.0.9", 1)) as api_server:
        codes = [pod.post("/admission/validate", json={}).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]  # a burst of twice the rate, then refused
        assert api_server.post("/admission/validate", json={}).status_code == 200

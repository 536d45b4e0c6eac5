"""Requests per client are bounded: the token bucket's arithmetic, and 429 with Retry-After from
the app for one client while another, and the probes, go on."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.unit.conftest import NAMESPACE, Seconds
from tests.unit.test_intake import CLOUDEVENT, SENDER, Alive, post, setup
from trigger_operator.web.app import build_app
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.ratelimit import CLIENTS_KEPT, TokenBuckets


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


def test_a_flooding_client_gets_429_with_retry_after_and_the_others_go_on() -> None:
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER, "other-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    app = build_app(intake=memory.committer(cluster, clock), authorizer=Authorizer(cluster, ttl_seconds=10),
                    health=Alive(), max_body_bytes=4096, rate_limit=TokenBuckets(rate=0.001, burst=2))
    with TestClient(app) as c:
        assert [post(c, {**CLOUDEVENT, "id": f"e{i}"}, content_type="application/cloudevents+json").status_code
                for i in range(3)] == [202, 202, 429]
        refused = post(c, CLOUDEVENT, content_type="application/cloudevents+json")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "too many requests" in refused.json()["detail"]
        other = post(c, {**CLOUDEVENT, "id": "e9"}, token="other-token", content_type="application/cloudevents+json")
        assert other.status_code == 202
        assert all(c.get("/healthz").status_code == 200 for _ in range(5))  # probes are never limited
    assert cluster.status(NAMESPACE, "on-docs")["eventCounter"] == 7 * 3  # the refused ones counted nothing

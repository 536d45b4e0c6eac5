"""Requests are bounded per address before anything else, per identity after authentication, and
new tokens (each a TokenReview) per address: the token bucket's arithmetic, and 429 with Retry-After
from the app for one client while another, and the probes, go on."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.unit.conftest import NAMESPACE, Seconds
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_intake import CLOUDEVENT, SENDER, Alive, post, setup
from trigger_operator.config import HttpSettings
from trigger_operator.kube.interface import Identity
from trigger_operator.web.app import build_app, build_webhook_app
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.ratelimit import (
    CLIENTS_KEPT,
    Limits,
    Notices,
    OpenConnections,
    TokenBuckets,
    TooManyRequests,
    address_of,
    client_key,
)

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


def test_the_webhook_port_is_not_rate_limited_since_the_api_server_is_one_address_for_all_tenants() -> None:
    def admission(app: FastAPI) -> None:
        @app.post("/admission/mutate")
        async def mutate() -> dict[str, Any]:
            return {}

        @app.post("/admission/validate")
        async def validate() -> dict[str, Any]:
            return {}

    app = build_webhook_app(admission=admission, max_body_bytes=4096)
    with TestClient(app, client=("10.0.0.9", 1)) as api_server:
        # One tenant's burst of dry runs: every review still answered, the mutating one too.
        codes = {api_server.post(f"/admission/{kind}", json={}).status_code for _ in range(300)
                 for kind in ("mutate", "validate")}
        assert codes == {200}
        assert api_server.post("/admission/validate", content=b"x" * 5000).status_code == 413  # bodies still bounded


@pytest.mark.parametrize(("address", "key"), [
    ("10.0.0.1", "10.0.0.1"), ("192.168.1.200", "192.168.1.200"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"), ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"), ("fe80::1%eth0", "fe80::/64"),
    ("::ffff:10.0.0.7", "10.0.0.7"), ("unknown", "unknown"),
])
def test_an_ipv4_client_is_its_address_and_an_ipv6_one_its_64(address: str, key: str) -> None:
    assert client_key(address) == key
    assert address_of({"client": (address, 1)}) == key


def test_an_address_is_parsed_once_while_it_is_remembered_and_the_memory_is_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = ipaddress.ip_address

    def counting(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        parsed.append(address)
        return real(address)

    monkeypatch.setattr(ipaddress, "ip_address", counting)
    client_key.cache_clear()
    keys = {address_of({"client": ("2001:db8:9::5", port)}) for port in range(50)}
    assert keys == {"2001:db8:9::/64"} and parsed == ["2001:db8:9::5"]  # one parse, not one per request
    for i in range(CLIENTS_KEPT + 1):  # a flood of new addresses pushes the first out...
        client_key(f"198.51.{i // 256 % 256}.{i % 256}x")  # (not addresses: cheap, and kept the same way)
    assert client_key.cache_info().currsize == CLIENTS_KEPT
    assert client_key("2001:db8:9::5") == "2001:db8:9::/64" and parsed.count("2001:db8:9::5") == 2  # ...and back
    client_key.cache_clear()


def test_rotating_ipv6_addresses_within_a_64_share_one_bucket() -> None:
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    app, _ = app_with(cluster, clock, memory, rate_per_address=0.001, burst_per_address=3)
    codes = []
    for i in range(6):
        with TestClient(app, client=(f"2001:db8:0:1::{i + 1:x}", 1000)) as rotating:
            codes.append(post(rotating, {**CLOUDEVENT, "id": f"r{i}"}, content_type=CE).status_code)
    assert codes == [202, 202, 202, 429, 429, 429]
    with TestClient(app, client=("2001:db8:0:2::1", 1000)) as neighbour:  # another /64: its own
        assert post(neighbour, {**CLOUDEVENT, "id": "n"}, content_type=CE).status_code == 202


def test_new_tokens_from_rotating_addresses_cost_at_most_the_global_reviews_a_second() -> None:
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    app, seconds = app_with(cluster, clock, memory, reviews_per_address=2, reviews_total=5)
    with TestClient(app, client=("10.0.9.9", 1)) as sender:
        assert post(sender, CLOUDEVENT, content_type=CE).status_code == 202  # its token now in the cache
    codes = []
    for i in range(20):  # a fresh address per request: each within its own budget
        with TestClient(app, client=(f"10.1.0.{i + 1}", 1)) as rotating:
            codes.append(post(rotating, CLOUDEVENT, token=secrets.token_hex(16), content_type=CE))
    assert [c.status_code for c in codes] == [401] * 4 + [429] * 16  # 5 reviews in all, one the sender's
    assert "new tokens from all clients" in codes[-1].json()["detail"]
    assert cluster.called("review_token") == 5
    with TestClient(app, client=("10.0.9.9", 1)) as sender:  # a token already seen goes on
        assert post(sender, {**CLOUDEVENT, "id": "e2"}, content_type=CE).status_code == 202
    seconds.now += 1
    with TestClient(app, client=("10.2.0.1", 1)) as rotating:
        assert post(rotating, CLOUDEVENT, token=secrets.token_hex(16), content_type=CE).status_code == 401
    assert cluster.called("review_token") == 6


def test_an_address_refused_its_own_reviews_spends_nothing_of_the_global_ones() -> None:
    seconds = Seconds()
    limits = Limits.of(HttpSettings(reviews_per_address=1, reviews_total=3), monotonic=seconds)
    limits.charge_review("10.0.0.1")
    for _ in range(10):
        with pytest.raises(TooManyRequests, match="from this address"):
            limits.charge_review("10.0.0.1")
    limits.charge_review("10.0.0.2")
    limits.charge_review("10.0.0.3")  # the shared bucket still had two of its three
    with pytest.raises(TooManyRequests, match="from all clients"):
        limits.charge_review("10.0.0.4")


def test_open_connections_are_counted_per_address_up_to_the_bound() -> None:
    connections = OpenConnections(per_address=2)
    assert [connections.open("a") for _ in range(3)] == [True, True, False]  # the third not counted
    assert connections.open("b")
    assert connections.held("a") == 2
    connections.close("a")
    assert connections.open("a") and not connections.open("a")
    for _ in range(2):
        connections.close("a")
    connections.close("b")
    assert connections.held("a") == connections.held("b") == 0 and not connections._open  # nothing kept


def test_a_notice_about_an_address_is_due_once_a_minute() -> None:
    seconds = Seconds()
    notices = Notices(every=60, monotonic=seconds)
    assert [notices.due("a") for _ in range(3)] == [True, False, False]
    assert notices.due("b")
    seconds.now = 59.9
    assert not notices.due("a")
    seconds.now = 60
    assert notices.due("a") and not notices.due("a")
    for i in range(CLIENTS_KEPT + 5):
        notices.due(f"x{i}")
    assert len(notices._last) == CLIENTS_KEPT

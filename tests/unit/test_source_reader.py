"""The source reader against real local HTTP servers: it reaches only what the egress rules admit,
connects to the address it checked, reads a bounded answer, and never repeats a byte of it."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers import RawEndpoint, gzip_bomb, raw_endpoint
from tests.unit.conftest import NAMESPACE, at
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_controller import Clock
from trigger_operator.config import SourcesSettings
from trigger_operator.model.spec import ConditionSource, PrometheusSource
from trigger_operator.sources.read import SourceError, SourceReader

LOOPBACK_OPEN = SourcesSettings(allowed_networks="127.0.0.0/8")
SECRET = b'{"status":"error","errorType":"AKIAEXAMPLE","error":"AKIAEXAMPLE SECRET=xyz"}'
SECRET_PIECES = ("AKIA", "SECRET", "xyz", "errorType")


@pytest.fixture
def server() -> Iterator[RawEndpoint]:
    with raw_endpoint() as e:
        yield e


def read(source: dict[str, Any] | ConditionSource, settings: SourcesSettings = LOOPBACK_OPEN,
         cluster: FakeCluster | None = None, tls: ssl.SSLContext | None = None) -> Any:
    async def scenario() -> Any:
        reader = SourceReader(cluster or FakeCluster(Clock(at())), settings=settings, tls=tls)
        try:
            checked = source if isinstance(source, ConditionSource) else ConditionSource.model_validate(source)
            return await reader.read(NAMESPACE, checked)
        finally:
            await reader.close()
    return asyncio.run(scenario())


def failure(source: dict[str, Any] | ConditionSource, settings: SourcesSettings = LOOPBACK_OPEN, **kwargs: Any) -> str:
    with pytest.raises(SourceError) as caught:
        read(source, settings, **kwargs)
    return str(caught.value)


def prom(url: str, query: str = "up") -> dict[str, Any]:
    return {"prometheus": {"url": url, "query": query}}


def http(url: str, json_path: str = ".") -> dict[str, Any]:
    return {"http": {"url": url, "jsonPath": json_path}}


# --- what an error says --------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "status", "body", "says"), [
    pytest.param("prometheus", 200, SECRET, "Prometheus query 'up' did not answer success", id="prom-not-success"),
    pytest.param("prometheus", 500, SECRET, "HTTP 500", id="prom-500"),
    pytest.param("prometheus", 200, b"AKIAEXAMPLE SECRET=xyz", "the answer is not JSON", id="prom-not-json"),
    pytest.param("prometheus", 200, b'{"status":"success","data":{"resultType":"vector","result":[{"AKIA":'
                 b'"SECRET=xyz"}]}}', "answered no sample value", id="prom-malformed-sample"),
    pytest.param("prometheus", 200, b'{"status":"success","data":{"resultType":"AKIAEXAMPLE SECRET=xyz"}}',
                 "no result type it knows", id="prom-unknown-result-type"),
    pytest.param("http", 500, SECRET, "HTTP 500", id="http-500"),
    pytest.param("http", 404, SECRET, "HTTP 404", id="http-404"),
    pytest.param("http", 200, b"AKIAEXAMPLE SECRET=xyz", "the answer is not JSON", id="http-not-json"),
    pytest.param("http", 200, b'{"AKIAEXAMPLE": "SECRET=xyz"', "the answer is not JSON", id="http-broken-json"),
    pytest.param("http", 200, b"\xff\xfeAKIAEXAMPLE SECRET=xyz", "the answer is not JSON", id="http-not-utf8"),
    pytest.param("http", 200, b"[" * 100_000 + b"]" * 100_000, "the answer is not JSON", id="http-too-deep"),
])
def test_an_error_names_the_source_and_the_failure_never_the_answer(
        server: RawEndpoint, kind: str, status: int, body: bytes, says: str) -> None:
    server.status, server.body = status, body
    server.headers["X-Secret"] = "AKIAEXAMPLE SECRET=xyz"
    said = failure(prom(f"{server.url}/prom") if kind == "prometheus" else http(f"{server.url}/doc"))
    assert says in said
    assert server.requests, "the source was asked"
    assert not any(piece in said for piece in SECRET_PIECES), said


def test_a_lone_surrogate_in_a_picked_value_is_not_repeated(server: RawEndpoint) -> None:
    """A JSON string with an unpaired surrogate cannot be encoded: the codec's own message would
    quote the character and its position (security review)."""
    server.body = b'{"v": "\\ud800AKIA"}'
    said = failure(http(f"{server.url}/doc", ".v"))
    assert said.endswith("the value is not valid Unicode text") and "ud800" not in said and "AKIA" not in said


def test_a_redirect_is_not_followed_and_not_repeated(server: RawEndpoint) -> None:
    server.status, server.headers["Location"] = 302, "http://169.254.169.254/AKIAEXAMPLE"
    said = failure(http(f"{server.url}/doc"))
    assert said == f"GET {server.url}/doc: HTTP 302" and server.requests == ["/doc"]


def test_a_good_prometheus_answer_is_one_parsed_sample(server: RawEndpoint) -> None:
    server.body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}'
    assert read(prom(f"{server.url}/p/", "sum(up) # not a comment")) == 0.5
    assert server.requests == ["/p/api/v1/query?query=sum%28up%29+%23+not+a+comment"]


# --- where a source may connect ------------------------------------------------------------------

def test_default_rules_refuse_loopback_before_connecting(server: RawEndpoint) -> None:
    said = failure(prom(f"{server.url}/x"), SourcesSettings())
    assert "address 127.0.0.1 of 127.0.0.1 is loopback: refused by the operator's egress rules" in said
    assert server.requests == []


def test_default_rules_refuse_the_metadata_address() -> None:
    said = failure(http("http://169.254.169.254/latest/meta-data/iam/security-credentials/"), SourcesSettings())
    assert "address 169.254.169.254 of 169.254.169.254 is link-local" in said


def test_a_name_is_checked_after_resolution(server: RawEndpoint) -> None:
    said = failure(http(f"http://localhost:{server.port}/doc"), SourcesSettings())
    assert "of localhost is loopback" in said and server.requests == []


def test_a_hash_cannot_cancel_the_query_path(server: RawEndpoint) -> None:
    # The model refuses such a URL too; the reader holds the line itself (a Trigger stored before).
    unchecked = ConditionSource.model_construct(prometheus=PrometheusSource.model_construct(
        url=f"{server.url}/latest/meta-data#", query="up"))
    said = failure(unchecked)
    assert said == "spec.scheduleConfig.source.prometheus.url: must not have a query or fragment"
    assert server.requests == []


def test_allowed_urls_limit_where_sources_go(server: RawEndpoint) -> None:
    settings = SourcesSettings(allowed_networks="127.0.0.0/8", allowed_urls=f"{server.url}/api")
    said = failure(http(f"{server.url}/apiary"), settings)
    assert "sources.allowedUrls" in said and server.requests == []
    server.body = b"3"
    assert read(http(f"{server.url}/api/x"), settings) == 3


def default_failure(source: dict[str, Any], settings: SourcesSettings) -> str:
    """Why `SourceReader.read_default` (the catalog's default source) fails, within a short timeout."""
    async def scenario() -> Any:
        reader = SourceReader(FakeCluster(Clock(at())), settings=settings, timeout_seconds=0.5)
        try:
            return await reader.read_default(NAMESPACE, ConditionSource.model_validate(source))
        finally:
            await reader.close()
    with pytest.raises(SourceError) as caught:
        asyncio.run(scenario())
    return str(caught.value)


# A private address with no source behind it: the egress rules refuse it, or the connection fails.
PRIVATE_URL = "http://10.255.255.1:9/v1/namespaces/team-a/stats"


def test_a_default_source_may_reach_a_private_address_a_triggers_own_may_not() -> None:
    said = default_failure(http(PRIVATE_URL), SourcesSettings())
    # Past the rules, it fails as a connection does (no answer, refused, or whatever the network says).
    assert said.startswith("GET http://10.255.255.1:9/") and "egress" not in said, said
    assert "address 10.255.255.1 of 10.255.255.1 is private: refused" in failure(http(PRIVATE_URL), SourcesSettings())


def test_a_default_source_still_obeys_denied_networks_allowed_urls_and_the_loopback_refusal(
        server: RawEndpoint) -> None:
    denied = default_failure(http(PRIVATE_URL), SourcesSettings(denied_networks="10.0.0.0/8"))
    assert "is in 10.0.0.0/8: refused by the operator's egress rules (sources.deniedNetworks)" in denied
    elsewhere = default_failure(http(PRIVATE_URL), SourcesSettings(allowed_urls="https://prometheus.example.com/"))
    assert "sources.allowedUrls" in elsewhere
    loopback = default_failure(prom(f"{server.url}/x"), SourcesSettings())
    assert "address 127.0.0.1 of 127.0.0.1 is loopback: refused by the operator's egress rules" in loopback
    assert server.requests == []


def test_https_is_pinned_and_still_verifies_the_name(certificate: tuple[Path, Path]) -> None:
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    with raw_endpoint(tls=certificate) as server:
        server.body = b"7"
        # Connected to 127.0.0.1, yet the certificate is checked against the name (SNI + hostname).
        assert read(http(f"https://localhost:{server.port}/doc"), tls=trust) == 7
        assert server.host_headers == [f"localhost:{server.port}"]
        # The same certificate for an address it does not name fails verification.
        said = failure(http(f"https://127.0.0.1:{server.port}/doc"), tls=trust)
        assert said == f"GET https://127.0.0.1:{server.port}/doc: its TLS certificate does not verify"


# --- bounded reads -------------------------------------------------------------------------------

def test_a_gzip_bomb_stops_at_the_bound(server: RawEndpoint) -> None:
    server.body, server.headers["Content-Encoding"] = gzip_bomb(), "gzip"
    assert len(server.body) < 64 * 1024
    tracemalloc.start()
    try:
        said = failure(http(f"{server.url}/bomb"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert said == f"GET {server.url}/bomb: the answer is over 1048576 bytes (sources.maxAnswerBytes)"
    assert peak < 50 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("wrap", [
    pytest.param(lambda b: zlib.compress(b), id="zlib-deflate"),
    pytest.param(lambda b: zlib.compress(b)[2:-4], id="raw-deflate"),
])
def test_deflate_is_bounded_too(server: RawEndpoint, wrap: Any) -> None:
    server.body, server.headers["Content-Encoding"] = wrap(b"[" + b"0," * 2_000_000 + b"0]"), "deflate"
    assert "over 1048576 bytes" in failure(http(f"{server.url}/d"))
    server.body = wrap(b"[1, 2, 3]")
    assert read(http(f"{server.url}/d")) == [1, 2, 3]


def test_a_small_gzip_answer_is_read(server: RawEndpoint) -> None:
    server.body, server.headers["Content-Encoding"] = gzip.compress(b'{"a": {"b": 4.5}}'), "gzip"
    assert read(http(f"{server.url}/g", ".a.b")) == 4.5


def test_an_answer_over_the_bound_is_refused_and_a_small_bound_applies(server: RawEndpoint) -> None:
    server.body = json.dumps([0] * 600_000).encode()  # 1.8 MB
    assert "over 1048576 bytes (sources.maxAnswerBytes)" in failure(http(f"{server.url}/big"))
    server.body = b"[1, 2, 3, 4, 5]"
    settings = SourcesSettings(allowed_networks="127.0.0.0/8", max_answer_bytes=10)
    assert "over 10 bytes" in failure(http(f"{server.url}/big"), settings)


def test_an_unknown_encoding_is_refused(server: RawEndpoint) -> None:
    server.body, server.headers["Content-Encoding"] = b"AKIAEXAMPLE", "br"
    said = failure(http(f"{server.url}/b"))
    assert "Content-Encoding is not gzip, deflate or identity" in said and "br" not in said.split(":")[-1]


def test_a_corrupt_gzip_is_a_clear_failure(server: RawEndpoint) -> None:
    server.body, server.headers["Content-Encoding"] = b"\x1f\x8b\x08\x00AKIAEXAMPLE SECRET=xyz", "gzip"
    said = failure(http(f"{server.url}/c"))
    assert "gzip encoding is corrupt" in said and "AKIA" not in said


def test_a_vector_over_the_bound_fails_naming_it(server: RawEndpoint) -> None:
    server.body = json.dumps({"v": [0] * 4097}).encode()
    said = failure(http(f"{server.url}/v", ".v"))
    assert said == f"GET {server.url}/v: the value is a list of 4097 items, over the bound of 4096 " \
                   "(sources.maxVectorLength)"
    server.body = json.dumps({"v": [0] * 4096}).encode()
    assert len(read(http(f"{server.url}/v", ".v"))) == 4096


def config_map_source(cluster: FakeCluster, value: str) -> dict[str, Any]:
    cluster.config_map = {"data": {"v": value}}
    return {"configMap": {"name": "cm", "key": "v"}}


def test_a_config_map_value_comes_parsed_and_bounded() -> None:
    cluster = FakeCluster(Clock(at()))
    assert read(config_map_source(cluster, " [1, 2.5] "), cluster=cluster) == [1, 2.5]
    assert read(config_map_source(cluster, "0.25"), cluster=cluster) == 0.25
    assert read(config_map_source(cluster, "AKIAEXAMPLE"), cluster=cluster) == "AKIAEXAMPLE"  # the core says why
    said = failure(config_map_source(cluster, json.dumps([0] * 5000)), cluster=cluster)
    assert said.endswith("the value is a list of 5000 items, over the bound of 4096 (sources.maxVectorLength)")
    small = SourcesSettings(max_answer_bytes=100)
    said = failure(config_map_source(cluster, json.dumps([0] * 60)), small, cluster=cluster)
    assert said == f"ConfigMap {NAMESPACE}/cm key 'v': the value is over 100 bytes (sources.maxAnswerBytes)"

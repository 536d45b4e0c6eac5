"""The egress rules of condition sources (sources/egress.py): which URLs and addresses a Trigger's
source may reach, and what a refusal says."""

from __future__ import annotations

import ipaddress

import pytest

from trigger_operator.config import ConfigurationError, SourcesSettings
from trigger_operator.sources.egress import EgressError, EgressPolicy, embedded_ipv4, prometheus_query_url

DEFAULT = EgressPolicy.from_settings(SourcesSettings())


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("febf::1", "link-local"),
    ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("100.64.0.1", "shared"), ("100.127.255.254", "shared"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.1.2.3", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("192.0.2.1", "reserved"),
    ("198.51.100.1", "reserved"), ("203.0.113.1", "reserved"), ("2001:db8::1", "reserved"),
    ("2001::1", "reserved"), ("100::1", "reserved"), ("3fff::1", None), ("4000::1", "reserved"),
    ("198.18.0.1", "benchmarking"), ("198.19.255.1", "benchmarking"), ("2001:2::1", "benchmarking"),
    # IPv4 inside IPv6 is judged as the IPv4 it carries.
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("::ffff:10.1.2.3", "private"),
    ("2002:7f00:1::", "loopback"), ("2002:a9fe:a9fe::1", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"), ("64:ff9b::10.0.0.1", "private"), ("::127.0.0.1", "loopback"),
    # Public addresses pass.
    ("8.8.8.8", None), ("1.1.1.1", None), ("172.32.0.1", None), ("100.128.0.1", None), ("169.255.0.1", None),
    ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None), ("64:ff9b::808:808", None), ("2002:808:808::1", None),
])
def test_default_rules_refuse_every_address_that_is_not_public(address: str, reason: str | None) -> None:
    if reason is None:
        DEFAULT.check_address(address, "h.example")
        return
    with pytest.raises(EgressError) as caught:
        DEFAULT.check_address(address, "h.example")
    said = str(caught.value)
    assert f"is {reason}" in said and str(ipaddress.ip_address(address)) in said and "of h.example" in said
    assert "sources.allowedNetworks opens a range" in said


def test_the_refusal_says_which_address_of_which_name_and_which_rule() -> None:
    with pytest.raises(EgressError) as caught:
        DEFAULT.check_address("169.254.169.254", "metadata.example")
    assert str(caught.value) == ("address 169.254.169.254 of metadata.example is link-local: refused by the "
                                 "operator's egress rules (sources.allowedNetworks opens a range)")
    with pytest.raises(EgressError, match=r"address ::ffff:7f00:1 \(IPv4 127\.0\.0\.1\) of x is loopback"):
        DEFAULT.check_address("::ffff:127.0.0.1", "x")


@pytest.mark.parametrize(("address", "ipv4"), [
    ("::ffff:1.2.3.4", "1.2.3.4"), ("2002:102:304::", "1.2.3.4"), ("64:ff9b::102:304", "1.2.3.4"),
    ("::1.2.3.4", "1.2.3.4"), ("::1", None), ("::", None), ("2001:db8::1", None), ("1.2.3.4", None),
])
def test_ipv4_is_unwrapped_from_ipv6(address: str, ipv4: str | None) -> None:
    inner = embedded_ipv4(ipaddress.ip_address(address))
    assert (str(inner) if inner else None) == ipv4


def policy(**settings: str) -> EgressPolicy:
    return EgressPolicy.from_settings(SourcesSettings(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(("settings", "address", "admitted"), [
    pytest.param({"allowed_networks": "10.96.0.0/12"}, "10.96.0.10", True, id="allowed-opens-private"),
    pytest.param({"allowed_networks": "10.96.0.0/12"}, "10.0.0.1", False, id="allowed-only-that-range"),
    pytest.param({"allowed_networks": "127.0.0.0/8"}, "::ffff:127.0.0.1", True, id="allowed-v4-opens-mapped"),
    pytest.param({"allowed_networks": "fd00::/8, 127.0.0.0/8"}, "fd00::5", True, id="a-list"),
    pytest.param({"denied_networks": "8.8.8.0/24"}, "8.8.8.8", False, id="denied-public"),
    pytest.param({"denied_networks": "8.8.8.0/24"}, "::ffff:8.8.8.8", False, id="denied-through-mapped"),
    pytest.param({"denied_networks": "8.8.8.0/24"}, "64:ff9b::808:808", False, id="denied-through-nat64"),
    pytest.param({"allowed_networks": "10.0.0.0/8", "denied_networks": "10.1.0.0/16"}, "10.1.2.3", False,
                 id="denied-wins-over-allowed"),
    pytest.param({"allowed_networks": "0.0.0.0/0", "denied_networks": "169.254.0.0/16"}, "169.254.169.254", False,
                 id="denied-wins-over-everything"),
])
def test_admin_ranges_open_and_close(settings: dict[str, str], address: str, admitted: bool) -> None:
    rules = policy(**settings)
    if admitted:
        rules.check_address(address, "h")
    else:
        with pytest.raises(EgressError):
            rules.check_address(address, "h")


@pytest.mark.parametrize(("address", "admitted"), [
    pytest.param("10.96.0.10", True, id="private-a-service-range"),
    pytest.param("172.20.0.1", True, id="private-172"),
    pytest.param("192.168.1.1", True, id="private-192"),
    pytest.param("100.64.0.10", True, id="shared-cgnat"),
    pytest.param("fd00::5", True, id="private-v6"),
    pytest.param("::ffff:10.0.0.1", True, id="private-mapped"),
    pytest.param("127.0.0.1", False, id="loopback"),
    pytest.param("::1", False, id="loopback-v6"),
    pytest.param("::ffff:127.0.0.1", False, id="loopback-mapped"),
    pytest.param("169.254.169.254", False, id="cloud-metadata"),
    pytest.param("fe80::1", False, id="link-local-v6"),
    pytest.param("0.0.0.0", False, id="unspecified"),
    pytest.param("224.0.0.1", False, id="multicast"),
    pytest.param("192.0.2.1", False, id="documentation"),
    pytest.param("fec0::1", False, id="site-local-is-not-private-here"),
])
def test_a_default_sources_address_may_be_private_or_shared_but_nothing_else_the_rules_refuse(
        address: str, admitted: bool) -> None:
    """A default's host is the admin's (placeholders never fill it), so an in-cluster metrics Service
    is reachable without opening its range to every tenant's own sources (second review, L3)."""
    if admitted:
        DEFAULT.check_address(address, "metrics.platform.svc", admins=True)
        with pytest.raises(EgressError):  # a tenant's own source still is refused
            DEFAULT.check_address(address, "metrics.platform.svc")
    else:
        with pytest.raises(EgressError, match=r"refused by the operator's egress rules"):
            DEFAULT.check_address(address, "metrics.platform.svc", admins=True)


def test_denied_networks_refuse_a_default_sources_address_too() -> None:
    with pytest.raises(EgressError, match=r"is in 10\.96\.0\.0/12: .*\(sources\.deniedNetworks\)"):
        policy(denied_networks="10.96.0.0/12").check_address("10.96.0.10", "metrics.platform.svc", admins=True)


def test_a_denied_range_says_so() -> None:
    with pytest.raises(EgressError, match=r"is in 8\.8\.8\.0/24: .*\(sources\.deniedNetworks\)"):
        policy(denied_networks="8.8.8.0/24").check_address("8.8.8.8", "dns.example")


@pytest.mark.parametrize(("variable", "settings"), [
    ("TRIGGER_OPERATOR_SOURCES_ALLOWED_NETWORKS", {"allowed_networks": "10.0.0.0/33"}),
    ("TRIGGER_OPERATOR_SOURCES_DENIED_NETWORKS", {"denied_networks": "10.0.0.0/8,banana"}),
    ("TRIGGER_OPERATOR_SOURCES_ALLOWED_URLS", {"allowed_urls": "ftp://x/"}),
    ("TRIGGER_OPERATOR_SOURCES_ALLOWED_URLS", {"allowed_urls": "https://x/a?b=1"}),
    ("TRIGGER_OPERATOR_SOURCES_ALLOWED_URLS", {"allowed_urls": "https://user@x/"}),
    ("TRIGGER_OPERATOR_SOURCES_ALLOWED_URLS", {"allowed_urls": "not a url"}),
])
def test_a_bad_setting_names_its_variable(variable: str, settings: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        policy(**settings)


@pytest.mark.parametrize(("prefixes", "url", "admitted"), [
    ("https://prom.example/api", "https://prom.example/api", True),
    ("https://prom.example/api", "https://prom.example/api/v1/query?query=up", True),
    ("https://prom.example/api", "https://prom.example/apiary", False),
    ("https://prom.example/api/", "https://prom.example/api/x", True),
    ("https://prom.example/api/", "https://prom.example/apix", False),
    ("https://prom.example/", "https://PROM.Example/anything", True),
    ("https://prom.example", "https://prom.example:443/x", True),
    ("https://prom.example", "https://prom.example:8443/x", False),
    ("https://prom.example", "http://prom.example/x", False),
    ("http://prom.example:80/", "http://prom.example/x", True),
    ("https://prom.example/", "https://prom.example.evil.com/x", False),
    ("https://prom.example/", "https://evil.com/prom.example/", False),
    ("https://prom.example/api", "https://prom.example/api/../admin", False),
    ("https://prom.example/api", "https://prom.example/api/%2e%2e/admin", False),
    ("https://a.example/x, https://b.example/y", "https://b.example/y/z", True),
    ("", "https://anywhere.example/", True),
])
def test_allowed_urls_compare_parsed_parts(prefixes: str, url: str, admitted: bool) -> None:
    rules = policy(allowed_urls=prefixes)
    if admitted:
        assert rules.check_url(url).host == httpx_host(url)
    else:
        with pytest.raises(EgressError):
            rules.check_url(url)


def httpx_host(url: str) -> str:
    import httpx

    return httpx.URL(url).host


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://x/", "scheme"), ("http:///x", "host"), ("https://user:pw@x/", "user or password"),
    ("http://x:99999/", "port"), ("http://x/a/%2e/b", "segment"), ("http://x/%2E%2E/b", "segment"),
    ("http://x:0/", "port 0"),  # not the default port: it would pass as :80 and connect to :0
    # Read as '..' or '/' by Tomcat, Jetty, Spring or Windows servers, past an allowed prefix:
    ("http://x/api/v1/..;/..;/admin", "';' or"), ("http://x/api/v1/..\\..\\admin", "';' or"),
    ("http://x/api/v1/%5C..%5Cadmin", "';' or"), ("http://x/api/v1/a%3Bb", "';' or"),
])
def test_urls_that_are_never_admitted(url: str, says: str) -> None:
    with pytest.raises(EgressError, match=says):
        DEFAULT.check_url(url)


def test_a_refused_url_is_shown_without_its_query() -> None:
    with pytest.raises(EgressError) as caught:
        policy(allowed_urls="https://ok.example/").check_url("https://other.example/x?token=hunter2")
    assert "hunter2" not in str(caught.value) and "https://other.example/x" in str(caught.value)


@pytest.mark.parametrize("base", ["http://127.0.0.1:9/x#", "http://h/x?", "http://h/x?a=b", "http://h/#frag"])
def test_a_prometheus_url_with_a_query_or_fragment_is_refused(base: str) -> None:
    with pytest.raises(EgressError, match=r"spec\.scheduleConfig\.source\.prometheus\.url: must not have a query "
                                          "or fragment"):
        prometheus_query_url(base, "up")


@pytest.mark.parametrize(("base", "expected"), [
    ("http://prom:9090", "http://prom:9090/api/v1/query?query=sum%28up%29+%23+x"),
    ("http://prom:9090/", "http://prom:9090/api/v1/query?query=sum%28up%29+%23+x"),
    ("https://h/prometheus/", "https://h/prometheus/api/v1/query?query=sum%28up%29+%23+x"),
])
def test_the_prometheus_url_is_built_by_parsing(base: str, expected: str) -> None:
    assert str(prometheus_query_url(base, "sum(up) # x")) == expected

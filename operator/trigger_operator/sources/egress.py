"""Where an http or prometheus source may connect: the admin's egress rules. Pure (parses and
compares; resolving and connecting are the reader's).

A Trigger author chooses the URL, but not what it may reach: by default every address that is not
a public unicast one is refused (loopback, link-local with the cloud metadata address, private,
shared, multicast, reserved, unspecified, documentation and benchmarking ranges, and IPv4
addresses wrapped in IPv6, judged as the IPv4 they carry). ``sources.allowedNetworks`` opens
ranges despite that (an in-cluster Prometheus), ``sources.deniedNetworks`` refuses ranges whatever
else says (the cluster's own public ranges), and ``sources.allowedUrls``, when set, limits URLs to
the admin's prefixes.

A default source from the action catalog (jobs/catalog.py) is the admin's: its scheme, host and
port are fixed by the template (a placeholder can fill neither), so it may reach private and
shared ranges (an in-cluster metrics Service) without ``sources.allowedNetworks`` opening them to
every tenant's own sources. Everything else still holds for it: ``sources.deniedNetworks`` and
``sources.allowedUrls``, the refusal of loopback, link-local (cloud metadata), multicast and
reserved addresses, resolution once, the pinned connection, the bounds, no redirects.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass

import httpx

from trigger_operator.config import ConfigurationError, SourcesSettings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ENV = "TRIGGER_OPERATOR_SOURCES_"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _nets(*specs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), what) for cidr, what in specs)


_PRIVATE, _SHARED = "private", "shared (carrier-grade NAT)"
# What the default rules refuse a tenant's source but not the admin's default (Service ranges live there).
ADMIN_REACHABLE = frozenset({_PRIVATE, _SHARED})
# The default refusals, most specific first (the first match names the reason).
_REFUSED_V4 = _nets(
    ("0.0.0.0/8", "unspecified"), ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"),
    ("10.0.0.0/8", _PRIVATE), ("172.16.0.0/12", _PRIVATE), ("192.168.0.0/16", _PRIVATE),
    ("100.64.0.0/10", _SHARED), ("198.18.0.0/15", "benchmarking"),
    ("192.0.0.0/24", "reserved"), ("192.0.2.0/24", "reserved (documentation)"),
    ("198.51.100.0/24", "reserved (documentation)"), ("203.0.113.0/24", "reserved (documentation)"),
    ("192.88.99.0/24", "reserved (6to4 relay)"), ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
)
_REFUSED_V6 = _nets(
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("fe80::/10", "link-local"),
    ("fc00::/7", _PRIVATE), ("fec0::/10", "private (site-local)"), ("ff00::/8", "multicast"),
    ("2001:2::/48", "benchmarking"), ("2001:db8::/32", "reserved (documentation)"),
    ("2001::/23", "reserved (IETF protocol assignments, Teredo)"), ("64:ff9b:1::/48", "reserved (local NAT64)"),
    ("100::/64", "reserved (discard)"),
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")  # outside it, all IPv6 is reserved
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible ::a.b.c.d


class EgressError(Exception):
    """A URL or an address the egress rules refuse (the message names the rule that refused it)."""


@dataclass(frozen=True)
class Target:
    """A checked URL, in the parts the reader connects with."""

    url: httpx.URL
    scheme: str
    host: str  # lower-case ASCII (IDNA), as resolved and sent as SNI; an IP literal without brackets
    port: int


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def default_refusal(address: Address) -> str | None:
    """Why the default rules refuse ``address`` (``loopback``, ``private``...), or None: a public address."""
    table = _REFUSED_V4 if isinstance(address, ipaddress.IPv4Address) else _REFUSED_V6
    for network, what in table:
        if address in network:
            return what
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return None


@dataclass(frozen=True)
class EgressPolicy:
    allowed_urls: tuple[Target, ...] = ()
    allowed_networks: tuple[Network, ...] = ()
    denied_networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: SourcesSettings) -> EgressPolicy:
        prefixes = []
        for text in _items(settings.allowed_urls):
            try:
                prefixes.append(_target(text))
            except EgressError as error:
                raise ConfigurationError(f"{_ENV}ALLOWED_URLS: {text!r} is not a URL prefix: {error}") from None
            if "?" in text or "#" in text:
                raise ConfigurationError(f"{_ENV}ALLOWED_URLS: {text!r} is not a URL prefix: it has a query or "
                                         "fragment")
        return cls(tuple(prefixes), _networks("ALLOWED_NETWORKS", settings.allowed_networks),
                   _networks("DENIED_NETWORKS", settings.denied_networks))

    def check_url(self, url: str | httpx.URL) -> Target:
        """The URL's parts, when the rules admit the URL itself (its addresses are checked after resolution)."""
        target = _target(url)
        if self.allowed_urls and not any(_under(target, prefix) for prefix in self.allowed_urls):
            raise EgressError(f"{shown_url(target)} is under none of the URL prefixes the operator's egress rules "
                              "allow (sources.allowedUrls)")
        return target

    def check_address(self, address: Address | str, host: str | None = None, *, admins: bool = False) -> None:
        """Refuses an address of ``host`` that the rules do not admit (EgressError says which rule).
        ``admins``: the URL is a default source's, whose host is the admin's: `ADMIN_REACHABLE`
        ranges are admitted for it (deniedNetworks still refuses them)."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        inner = embedded_ipv4(ip)
        forms: list[Address] = [ip] if inner is None else [ip, inner]
        named = f"address {ip}" + ("" if inner is None else f" (IPv4 {inner})") + (f" of {host}" if host else "")
        for form in forms:
            for network in self.denied_networks:
                if form.version == network.version and form in network:
                    raise EgressError(f"{named} is in {network}: refused by the operator's egress rules "
                                      "(sources.deniedNetworks)")
        for form in forms:
            if any(form.version == n.version and form in n for n in self.allowed_networks):
                return
        reason = default_refusal(inner if inner is not None else ip)
        if reason is not None and not (admins and reason in ADMIN_REACHABLE):
            raise EgressError(f"{named} is {reason}: refused by the operator's egress rules "
                              "(sources.allowedNetworks opens a range)")


def prometheus_query_url(base: str, query: str) -> httpx.URL:
    """``<base>/api/v1/query?query=...``, built by parsing: a base with a query or fragment is refused
    (a ``#`` or ``?`` would otherwise cancel the path appended to it)."""
    where = "spec.scheduleConfig.source.prometheus.url"
    if "?" in base or "#" in base:
        raise EgressError(f"{where}: must not have a query or fragment")
    try:
        parsed = httpx.URL(base)
    except (httpx.InvalidURL, ValueError):
        raise EgressError(f"{where}: not a URL") from None
    return parsed.copy_with(path=parsed.path.rstrip("/") + "/api/v1/query", params={"query": query})


def _target(url: str | httpx.URL) -> Target:
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise EgressError("not a URL") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise EgressError(f"the scheme {parsed.scheme!r} is not http or https")
    if not parsed.host:
        raise EgressError("the URL has no host")
    if parsed.userinfo:
        raise EgressError("the URL must not carry a user or password")
    port = _DEFAULT_PORTS[parsed.scheme] if parsed.port is None else parsed.port  # :0 is no default port
    if not 0 < port < 65536:
        raise EgressError(f"the port {port} is out of range")
    if any(urllib.parse.unquote(s) in (".", "..") for s in parsed.path.split("/")):
        raise EgressError("the path has a '.' or '..' segment")
    # Servers that read '\' as '/' or drop ';' parameters (Tomcat, Jetty, Spring: '..;' is '..')
    # would see another path than the prefix check saw.
    if any(c in urllib.parse.unquote(parsed.path) for c in ("\\", ";")):
        raise EgressError("the path has a ';' or '\\' (servers may read them as another path)")
    return Target(parsed, parsed.scheme, parsed.raw_host.decode("ascii").lower(), port)


def _under(target: Target, prefix: Target) -> bool:
    """``target`` is under ``prefix``: same scheme, host and port, and a path prefix ending at a segment
    boundary (``/api`` admits ``/api`` and ``/api/v1``, not ``/apiary``)."""
    if (target.scheme, target.host, target.port) != (prefix.scheme, prefix.host, prefix.port):
        return False
    base = prefix.url.path.rstrip("/")
    return not base or target.url.path == base or target.url.path.startswith(base + "/")


def shown_url(target: Target) -> str:
    """The URL as messages show it: without its query, which may carry anything (a token, say)."""
    return str(target.url.copy_with(query=None, fragment=None))


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _networks(variable: str, text: str) -> tuple[Network, ...]:
    networks = []
    for item in _items(text):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigurationError(f"{_ENV}{variable}: {item!r} is not a CIDR (e.g. 10.96.0.0/12)") from None
    return tuple(networks)

"""Sends one notification to one sink over HTTP, under the egress rules of condition sources
(sources/egress.py, reused as is): the URL must pass ``sources.allowedUrls`` when set; the host is
resolved once and every address checked (loopback, link-local with the cloud metadata address,
private, shared... refused unless ``sources.allowedNetworks`` opens them; ``sources.deniedNetworks``
always refuses); the request goes to the checked address (the name travels as ``Host`` and TLS
SNI); no redirects, no proxy from the environment, no kept-alive connection.

A ``ref`` sink names a Service of the Trigger's own namespace: cluster-internal Services are its
point, so its address, the Service's ClusterIP, may be in a private or shared range (as an
admin's default source may: egress.ADMIN_REACHABLE), while loopback, link-local and metadata
addresses and ``sources.deniedNetworks`` are still refused. The Service is read (never resolved by
DNS), and an ExternalName or headless Service is refused: either would let the name lead out of
the namespace, to another tenant's Service or anywhere. So is a Service without a selector: its
endpoints are whatever someone writes into its EndpointSlices, any address at all (another
tenant's Pod, a node, the API server), reached through a cluster IP the egress rules admit. The URL
is ``http://<name>.<namespace>.svc:<port><path>``, and it passes ``sources.allowedUrls`` when set.

Each request has a total deadline (`TIMEOUT_SECONDS`, connecting, sending and the answer's head
together): httpx's timeout bounds each read alone, so a sink trickling its status line a byte at
a time would otherwise hold a request for hours.

Nothing of the sink's answer is read or repeated: only its status code counts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl

import httpx

from trigger_operator.config import SourcesSettings
from trigger_operator.kube.interface import ClusterApi
from trigger_operator.model.notify import Sink
from trigger_operator.sources.egress import Address, EgressError, EgressPolicy, Target, shown_url
from trigger_operator.sources.read import SourceError, _addresses

TIMEOUT_SECONDS = 10.0  # the whole request, not each read


class SendError(Exception):
    """No HTTP answer: refused by the egress rules, not resolvable, no connection, no answer in time."""


class Refused(SendError):
    """The egress rules (or the ref's Service kind) refuse the sink itself: no retry can deliver to it
    while the operator's settings and the sink stay as they are."""


class Sender:
    def __init__(self, api: ClusterApi, settings: SourcesSettings, *, timeout_seconds: float = TIMEOUT_SECONDS,
                 tls: ssl.SSLContext | None = None) -> None:
        self._api = api
        self._deadline = timeout_seconds
        self._policy = EgressPolicy.from_settings(settings)
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False, trust_env=False,
                                       verify=tls if tls is not None else True,
                                       limits=httpx.Limits(max_keepalive_connections=0))

    async def close(self) -> None:
        await self._http.aclose()

    async def send(self, namespace: str, sink: Sink, headers: dict[str, str], body: bytes) -> int:
        """POSTs ``body``; the answer's status code, or `SendError` when there was none (`Refused`
        when the sink itself is refused)."""
        target, address = await self._destination(namespace, sink)
        shown = shown_url(target)
        pinned = target.url.copy_with(host=str(address))
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with asyncio.timeout(self._deadline):
                async with self._http.stream("POST", pinned, content=body, extensions=extensions,
                                             headers={**headers, "Host": target.url.netloc.decode("ascii")}) as answer:
                    return answer.status_code
        except (httpx.TimeoutException, TimeoutError):
            raise SendError(f"POST {shown}: no answer within {self._deadline:g} s") from None
        except httpx.HTTPError as error:
            reason = "could not connect" if isinstance(error, httpx.ConnectError) else type(error).__name__
            raise SendError(f"POST {shown}: {reason}") from None

    async def _destination(self, namespace: str, sink: Sink) -> tuple[Target, Address]:
        if sink.ref is None:
            assert sink.uri is not None
            target = self._checked(sink.uri)
            try:
                addresses = await _addresses(target)
            except SourceError as error:
                raise SendError(str(error).replace("GET ", "POST ", 1)) from None
            for address in addresses:  # every one: a name may mix a public address with a private one
                self._admit(address, target, admins=False)
            return target, addresses[0]
        ref = sink.ref
        what = f"Service {namespace}/{ref.name}"
        service = await self._api.get_object(namespace, "v1", "Service", ref.name)
        if service is None:
            raise SendError(f"{what} does not exist")  # not Refused: it may be created yet
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName":
            raise Refused(f"{what} is an ExternalName Service: a ref sink sends only to a Service's own "
                          "cluster IP, never where a name leads")
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            raise Refused(f"{what} is headless (no cluster IP): name a Service with one, or use a uri sink")
        target = self._checked(f"http://{ref.name}.{namespace}.svc:{ref.port}{ref.path}")
        self._admit(str(cluster_ip), target, admins=True)
        if not spec.get("selector"):
            raise Refused(f"{what} has no selector: its endpoints may be any address written into its "
                          "EndpointSlices; name a Service that selects Pods, or use a uri sink")
        return target, _address(str(cluster_ip), what)

    def _checked(self, url: str) -> Target:
        try:
            return self._policy.check_url(url)
        except EgressError as error:
            raise Refused(f"{url.split('?', 1)[0]}: {error}") from None

    def _admit(self, address: Address | str, target: Target, *, admins: bool) -> None:
        try:
            self._policy.check_address(address, target.host, admins=admins)
        except (EgressError, ValueError) as error:
            raise Refused(f"POST {shown_url(target)}: {error}") from None


def _address(text: str, what: str) -> Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise Refused(f"{what} has a cluster IP that is no IP address") from None

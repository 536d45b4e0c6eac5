"""Reads condition sources. Kubernetes objects through `ClusterApi`; HTTP and Prometheus with one
shared asynchronous client in the operator's loop (a slow source holds up nothing but its own
check).

A Trigger author chooses the URL, so what is read is bounded and what is said is not theirs to
choose (docs/security.md, boundary 1):
- the host is resolved once, every address is checked against the egress rules (``egress``), and
  the request goes to the checked address (the name travels as ``Host`` and TLS SNI, so a
  certificate is still verified against it); no redirects, no proxy from the environment, no
  kept-alive connection another source's name could reuse;
- at most ``sources.maxAnswerBytes`` are read, counted after decompression, which the reader does
  itself so that a gzip bomb stops at the bound; JSON is parsed on a thread of its own, never on
  the event loop; a vector's length is counted before any conversion;
- an error names the source and the kind of failure, never a byte of the answer (not its body, its
  ``error`` field, a header, or a parser's message quoting it) and never a token.

A default source from the action catalog is read by `read_default`: the same, except that its
host, being the admin's, may be in a private or shared range (egress.py, ``ADMIN_REACHABLE``).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
import ssl
import zlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from trigger_operator.conditions.measure import check_length, extract
from trigger_operator.config import SourcesSettings
from trigger_operator.kube.interface import ClusterApi
from trigger_operator.model.spec import ConditionSource
from trigger_operator.sources.egress import Address, EgressError, EgressPolicy, Target, prometheus_query_url, shown_url

_CHUNK = 64 * 1024
# An encoded answer may be a little larger than what it decodes to (incompressible data); past this
# slack over the bound it cannot decode to an answer within it.
_ENCODED_SLACK = 64 * 1024
_ACCEPT_ENCODING = "gzip, deflate, identity"


class SourceError(Exception):
    """The source could not be read (the message says which and why)."""


class SourceReader:
    def __init__(self, api: ClusterApi, *, timeout_seconds: float = 10.0, settings: SourcesSettings | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: whom HTTPS sources are trusted by; the system's CAs unless given (tests give their own)."""
        settings = settings or SourcesSettings()
        self._api = api
        self._policy = EgressPolicy.from_settings(settings)
        self._max_bytes = settings.max_answer_bytes
        self._max_length = settings.max_vector_length
        # One thread: parses are bounded by max_answer_bytes, and one at a time bounds their memory too.
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="source-parse")
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False, trust_env=False,
                                       verify=tls if tls is not None else True,
                                       limits=httpx.Limits(max_keepalive_connections=0))

    async def close(self) -> None:
        await self._http.aclose()
        self._parser.shutdown(wait=False, cancel_futures=True)

    async def read(self, namespace: str, source: ConditionSource) -> Any:
        """The source's value as JSON data (a string holding JSON comes parsed), bounded."""
        return await self._read(namespace, source, admins=False)

    async def read_default(self, namespace: str, source: ConditionSource) -> Any:
        """As `read`, for the catalog's default source (filled for the Trigger in ``namespace``): its
        address is the admin's choice, so private and shared ranges are admitted (deniedNetworks
        and allowedUrls still apply)."""
        return await self._read(namespace, source, admins=True)

    async def _read(self, namespace: str, source: ConditionSource, *, admins: bool) -> Any:
        if source.config_map is not None:
            ref = source.config_map
            what = f"ConfigMap {namespace}/{ref.name} key {ref.key!r}"
            config_map = await self._api.get_config_map(namespace, ref.name)
            if config_map is None:
                raise SourceError(f"ConfigMap {namespace}/{ref.name} does not exist")
            data = config_map.get("data") or {}
            if ref.key not in data:
                raise SourceError(f"ConfigMap {namespace}/{ref.name} has no key {ref.key!r}")
            return await self._settle(data[ref.key], what)
        if source.object is not None:
            obj = source.object
            body = await self._api.get_object(namespace, obj.api_version, obj.kind, obj.name)
            if body is None:
                raise SourceError(f"{obj.kind} {namespace}/{obj.name} ({obj.api_version}) does not exist")
            return await self._settle(extract(body, obj.field_path), f"{obj.kind} {namespace}/{obj.name}")
        if source.http is not None:
            http = source.http
            headers = {"Accept": "application/json"}
            if http.token_secret is not None:
                token = await self._secret(namespace, http.token_secret.name, http.token_secret.key)
                headers["Authorization"] = f"Bearer {token}"
            target = self._check_url(http.url, "spec.scheduleConfig.source.http.url")
            answer = await self._get_json(target, headers, admins=admins)
            return await self._settle(extract(answer, http.json_path), f"GET {shown_url(target)}")
        assert source.prometheus is not None
        prom = source.prometheus
        try:
            url = prometheus_query_url(prom.url, prom.query)
        except EgressError as error:
            raise SourceError(str(error)) from None
        target = self._check_url(url, "spec.scheduleConfig.source.prometheus.url")
        answer = await self._get_json(target, {"Accept": "application/json"}, admins=admins)
        return await self._settle(_one_sample(answer, prom.query), f"Prometheus query {prom.query!r}")

    async def _secret(self, namespace: str, name: str, key: str) -> str:
        secret = await self._api.get_secret(namespace, name)
        if secret is None or key not in (secret.get("data") or {}):
            raise SourceError(f"Secret {namespace}/{name} has no key {key!r}")
        try:
            token = base64.b64decode(secret["data"][key]).decode().strip()
        except (ValueError, UnicodeDecodeError):
            raise SourceError(f"Secret {namespace}/{name} key {key!r} is not a UTF-8 token") from None
        if not token or not token.isprintable() or " " in token:
            raise SourceError(f"Secret {namespace}/{name} key {key!r} is not a single-line token")
        return token

    def _check_url(self, url: str | httpx.URL, field: str) -> Target:
        try:
            return self._policy.check_url(url)
        except EgressError as error:
            raise SourceError(f"{field}: {error}") from None

    async def _resolve(self, target: Target, *, admins: bool) -> Address:
        """The address to connect to, once every address of the host passed the egress rules."""
        addresses = await _addresses(target)
        for address in addresses:  # every one: a name may mix a public address with a private one
            try:
                self._policy.check_address(address, target.host, admins=admins)
            except EgressError as error:
                raise SourceError(f"GET {shown_url(target)}: {error}") from None
        return addresses[0]

    async def _get_json(self, target: Target, headers: dict[str, str], *, admins: bool) -> Any:
        shown = shown_url(target)
        address = await self._resolve(target, admins=admins)
        pinned = target.url.copy_with(host=str(address))
        headers = {**headers, "Host": target.url.netloc.decode("ascii"), "Accept-Encoding": _ACCEPT_ENCODING}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with self._http.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                if response.status_code != 200:
                    raise SourceError(f"GET {shown}: HTTP {response.status_code}")
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                body = await self._bounded(response.aiter_raw(_CHUNK), encoding, shown)
        except httpx.HTTPError as error:
            raise SourceError(f"GET {shown}: {_failure(error)}") from None
        return await self._parse(body, f"GET {shown}")

    async def _bounded(self, chunks: AsyncIterator[bytes], encoding: str, shown: str) -> bytes:
        """The answer's bytes, decoded, refused past ``max_answer_bytes`` (decoded or encoded)."""
        over = SourceError(f"GET {shown}: the answer is over {self._max_bytes} bytes (sources.maxAnswerBytes)")
        inflater = _Inflater(encoding, self._max_bytes + 1)
        if inflater.refused:
            raise SourceError(f"GET {shown}: the answer's Content-Encoding is not gzip, deflate or identity")
        received = 0
        for_encoded = self._max_bytes + (_ENCODED_SLACK if encoding != "identity" else 0)
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > for_encoded or not inflater.feed(chunk):
                    raise over
            body = inflater.finish()
        except zlib.error:
            raise SourceError(f"GET {shown}: the answer's {encoding} encoding is corrupt") from None
        if body is None:
            raise over
        return body

    async def _parse(self, text: bytes | str, what: str) -> Any:
        """JSON, parsed on the reader's own thread (never the event loop)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._parser, json.loads, text)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise SourceError(f"{what}: the answer is not JSON") from None

    async def _settle(self, value: Any, what: str) -> Any:
        """A value ready for the pure core: text holding JSON parsed (bounded, off the loop), a list
        within ``max_vector_length``. Text that is no JSON stays text: the core says why it is no value."""
        if isinstance(value, str):
            try:
                size = len(value) if len(value) > self._max_bytes else len(value.encode())
            except UnicodeError:  # a lone surrogate; the codec's message would quote it
                raise SourceError(f"{what}: the value is not valid Unicode text") from None
            if size > self._max_bytes:
                raise SourceError(f"{what}: the value is over {self._max_bytes} bytes (sources.maxAnswerBytes)")
            try:
                value = await self._parse(value.strip(), what)
            except SourceError:
                return value
        try:
            check_length(value, self._max_length)
        except ValueError as error:
            raise SourceError(f"{what}: {error}") from None
        return value


class _Inflater:
    """Decodes gzip or deflate, never producing more than ``limit`` bytes (zlib's max_length)."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.refused = False
        self._out = bytearray()
        self._zlib: Any = None
        self._raw_fallback = False
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)  # zlib-wrapped, as RFC 9110 says;
            self._raw_fallback = True                        # raw deflate, as some servers send
        elif encoding not in ("identity", ""):
            self.refused = True

    def feed(self, chunk: bytes) -> bool:
        """False once the decoded answer exceeds the limit."""
        if self._zlib is None:
            self._out += chunk
            return len(self._out) < self.limit
        data = chunk
        while data and not self._zlib.eof:
            try:
                piece = self._zlib.decompress(data, self.limit - len(self._out))
            except zlib.error:
                if not (self._raw_fallback and not self._out):
                    raise
                self._zlib, self._raw_fallback = zlib.decompressobj(-zlib.MAX_WBITS), False
                continue
            self._raw_fallback = False
            self._out += piece
            if len(self._out) >= self.limit:
                return False
            data = self._zlib.unconsumed_tail
        return True

    def finish(self) -> bytes | None:
        """The decoded answer, or None when it exceeds the limit."""
        if self._zlib is not None:
            self._out += self._zlib.flush()  # what zlib holds back is at most its window
        return bytes(self._out) if len(self._out) < self.limit else None


async def _addresses(target: Target) -> list[Address]:
    """The host's addresses (an IP literal is its own), by the loop's resolver."""
    try:
        return [ipaddress.ip_address(target.host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise SourceError(f"GET {shown_url(target)}: the name {target.host} does not resolve") from None
    addresses: list[Address] = []
    for *_, sockaddr in infos:
        try:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        except ValueError:
            raise SourceError(f"GET {shown_url(target)}: {target.host} resolved to an address that is not IP") from None
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise SourceError(f"GET {shown_url(target)}: the name {target.host} has no address")
    return addresses


def _failure(error: httpx.HTTPError) -> str:
    """What went wrong, in our words: an HTTP library's message may quote what the server sent."""
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(error, httpx.ConnectError):
        return ("its TLS certificate does not verify" if "CERTIFICATE_VERIFY_FAILED" in str(error)
                else "could not connect")
    if isinstance(error, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return "the answer is not well-formed HTTP"
    return type(error).__name__


def _one_sample(answer: Any, query: str) -> Any:
    # Nothing of the answer is repeated: not its error, errorType, or any field (status is public).
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise SourceError(f"Prometheus query {query!r} did not answer success")
    data = answer.get("data")
    kind, result = (data.get("resultType"), data.get("result") or []) if isinstance(data, dict) else (None, [])
    try:
        if kind == "scalar":
            return result[1]
        if kind == "vector":
            if not isinstance(result, list) or len(result) != 1:
                count = len(result) if isinstance(result, list) else 0
                raise SourceError(f"Prometheus query {query!r} returned {count} series; it must return one")
            return result[0]["value"][1]
    except (KeyError, IndexError, TypeError):
        raise SourceError(f"Prometheus query {query!r} answered no sample value") from None
    if kind in ("matrix", "string"):
        raise SourceError(f"Prometheus query {query!r} returned a {kind}; it must return a scalar or one series")
    raise SourceError(f"Prometheus query {query!r} answered no result type it knows")

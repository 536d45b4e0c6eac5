"""Reads condition sources. Kubernetes objects through `ClusterApi`; HTTP and Prometheus with one
shared asynchronous client in the operator's loop (a slow source holds up nothing but its own
check). Error messages name the source and never carry a token."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from trigger_operator.conditions.measure import extract
from trigger_operator.kube.interface import ClusterApi
from trigger_operator.model.spec import ConditionSource


class SourceError(Exception):
    """The source could not be read (the message says which and why)."""


class SourceReader:
    def __init__(self, api: ClusterApi, *, timeout_seconds: float = 10.0) -> None:
        self._api = api
        self._http = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def read(self, namespace: str, source: ConditionSource) -> Any:
        if source.config_map is not None:
            ref = source.config_map
            config_map = await self._api.get_config_map(namespace, ref.name)
            if config_map is None:
                raise SourceError(f"ConfigMap {namespace}/{ref.name} does not exist")
            data = config_map.get("data") or {}
            if ref.key not in data:
                raise SourceError(f"ConfigMap {namespace}/{ref.name} has no key {ref.key!r}")
            return data[ref.key]
        if source.object is not None:
            obj = source.object
            body = await self._api.get_object(namespace, obj.api_version, obj.kind, obj.name)
            if body is None:
                raise SourceError(f"{obj.kind} {namespace}/{obj.name} ({obj.api_version}) does not exist")
            return extract(body, obj.field_path)
        if source.http is not None:
            http = source.http
            headers = {"Accept": "application/json"}
            if http.token_secret is not None:
                token = await self._secret(namespace, http.token_secret.name, http.token_secret.key)
                headers["Authorization"] = f"Bearer {token}"
            return extract(await self._get_json(http.url, headers=headers), http.json_path)
        assert source.prometheus is not None
        prom = source.prometheus
        answer = await self._get_json(f"{prom.url.rstrip('/')}/api/v1/query", params={"query": prom.query})
        return _one_sample(answer, prom.query)

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

    async def _get_json(self, url: str, **kwargs: Any) -> Any:
        # With a token sent, nothing of the exchange but its status is repeated (a server may echo it).
        secret = "Authorization" in (kwargs.get("headers") or {})
        try:
            response = await self._http.get(url, **kwargs)
        except httpx.HTTPError as error:
            raise SourceError(f"GET {url}: {type(error).__name__}" + ("" if secret else f": {error}")) from None
        if response.status_code != 200:
            said = "" if secret else f": {response.text[:200]}"
            raise SourceError(f"GET {url}: HTTP {response.status_code}{said}")
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise SourceError(f"GET {url}: the answer is not JSON") from None


def _one_sample(answer: Any, query: str) -> Any:
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise SourceError(f"Prometheus query {query!r} failed: {(answer or {}).get('error', answer)}")
    data = answer.get("data") or {}
    kind, result = data.get("resultType"), data.get("result") or []
    if kind == "scalar":
        return result[1]
    if kind == "vector":
        if len(result) != 1:
            raise SourceError(f"Prometheus query {query!r} returned {len(result)} series; it must return one")
        return result[0]["value"][1]
    raise SourceError(f"Prometheus query {query!r} returned a {kind}; it must return a scalar or one series")

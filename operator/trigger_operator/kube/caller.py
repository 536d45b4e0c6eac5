"""`CallerApi` against a real API server: the same server and CA as the operator's own client, but
the caller's Bearer token on every request (never the operator's credentials)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import kubernetes

from trigger_operator.kube.interface import CallerError


class KubeCallerApi:
    def __init__(self, *, timeout_seconds: float = 30.0) -> None:
        config = kubernetes.client.Configuration.get_default_copy()
        verify: str | bool = config.ssl_ca_cert or True if config.verify_ssl else False
        self._http = httpx.AsyncClient(base_url=config.host, verify=verify, timeout=timeout_seconds)

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, token: str, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                      params: Mapping[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        content = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            content = json.dumps(body)
        try:
            response = await self._http.request(method, path, headers=headers, content=content, params=params)
        except httpx.HTTPError as error:
            raise CallerError(503, f"the Kubernetes API did not answer: {type(error).__name__}") from None
        if response.status_code >= 300:
            try:
                message = str(response.json().get("message") or response.reason_phrase)
            except ValueError:
                message = response.reason_phrase
            raise CallerError(response.status_code, message)
        return response.json() if response.content else None

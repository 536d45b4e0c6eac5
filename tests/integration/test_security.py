"""Every HTTP endpoint of the operator (all that its OpenAPI lists, but the probes and metrics)
refuses, with 401, a request with no token, a malformed one, a foreign one (another audience), a
revoked one (bound to a Secret since deleted: what the API server says of an expired token too) and
one that says it has expired; the admission webhooks are not served on the plain port; no token
appears in the operator's log."""

from __future__ import annotations

import base64
import json
import re
import time

import httpx
from kubernetes.client import AuthenticationV1Api

from tests.harness import Kube, Operator, grant, service_account_token, wait_for
from tests.integration.test_events import SEND

PUBLIC = {"/healthz", "/readyz", "/metrics"}


def endpoints(operator: Operator) -> list[tuple[str, str]]:
    spec = httpx.get(f"{operator.url}/openapi.json", timeout=10).json()
    return sorted((method.upper(), re.sub(r"\{[^}]+\}", "x", path)) for path, operations in spec["paths"].items()
                  if path not in PUBLIC for method in operations)


def accepted(kube: Kube, token: str) -> bool:
    """A TokenReview, as the cluster's admin."""
    result = AuthenticationV1Api(kube.api).create_token_review({"spec": {"token": token}})
    return bool(result.status.authenticated)


def revoked_token(kube: Kube, namespace: str) -> str:
    """A token of an account allowed to send, bound to a Secret that is then deleted."""
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "revoked"}})
    grant(kube, namespace, "revoked", SEND)
    anchor = kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "anchor"}})
    token = kube.core.create_namespaced_service_account_token("revoked", namespace, {"spec": {
        "expirationSeconds": 3600, "boundObjectRef": {"apiVersion": "v1", "kind": "Secret", "name": "anchor",
                                                      "uid": anchor.metadata.uid}}}).status.token
    assert accepted(kube, token)
    kube.core.delete_namespaced_secret("anchor", namespace)
    wait_for("the API server to refuse the revoked token", lambda: not accepted(kube, token), timeout=30)
    return str(token)


def foreign_token(kube: Kube, namespace: str) -> str:
    """A real token of an allowed account, minted for another audience (another service's)."""
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "elsewhere"}})
    grant(kube, namespace, "elsewhere", SEND)
    return str(kube.core.create_namespaced_service_account_token("elsewhere", namespace, {"spec": {
        "expirationSeconds": 3600, "audiences": ["https://elsewhere.example.com"]}}).status.token)


def expired_token() -> str:
    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part({'sub': 'system:serviceaccount:x:y', 'exp': int(time.time()) - 60})}.c2ln"


def test_every_endpoint_refuses_missing_malformed_foreign_revoked_and_expired_tokens(
        kube: Kube, namespace: str, operator: Operator) -> None:
    good = service_account_token(kube, namespace, "sender")
    grant(kube, namespace, "sender", SEND)
    bad = {"no token": None, "not a Bearer token": "Basic dXNlcjpwYXNz", "malformed": "Bearer not-a-token",
           "foreign": f"Bearer {foreign_token(kube, namespace)}", "revoked": f"Bearer {revoked_token(kube, namespace)}",
           "expired": f"Bearer {expired_token()}"}
    routes = endpoints(operator)
    assert ("POST", "/v1/events") in routes and ("POST", "/v1/triggers") in routes and len(routes) >= 10
    refused = []
    for method, path in routes:
        for what, authorization in bad.items():
            headers = {"content-type": "application/json", "x-namespace": namespace}
            if authorization is not None:
                headers["authorization"] = authorization
            response = httpx.request(method, f"{operator.url}{path}", headers=headers, content=b"{}", timeout=30)
            if response.status_code != 401:
                refused.append(f"{method} {path} with {what}: {response.status_code} {response.text[:200]}")
    assert refused == []
    # The same request with a good token gets past authentication (here: a bad body, or RBAC's 403).
    response = httpx.post(f"{operator.url}/v1/triggers/list", headers={
        "authorization": f"Bearer {good}", "x-namespace": namespace, "content-type": "application/json"},
        content=b"{}", timeout=30)
    assert response.status_code in (200, 403), response.text
    assert httpx.post(f"{operator.url}/admission/validate", json={}, timeout=10).status_code == 404
    logs = operator.logs()
    for authorization in [a for a in bad.values() if a] + [f"Bearer {good}"]:
        assert authorization.split(" ", 1)[1] not in logs

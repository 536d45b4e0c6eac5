"""The plugin's calls: the Kubernetes API through the official (synchronous) client, with the
kubeconfig's credentials, and the operator's event endpoint. Every answer is plain JSON data, and
every refusal a `PluginError` naming the verb and resource.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from trigger_operator.api import GROUP, LABEL_TRIGGER, PLURAL, VERSION
from trigger_operator.events.cloudevents import BATCH
from trigger_operator.plugin.errors import FAILED, NOT_FOUND, PluginError, api_error

TRIGGERS = f"triggers.{GROUP}"
MERGE = "application/merge-patch+json"
TIMEOUT = 30  # seconds for one call; the API server answers reads in milliseconds


class Cluster:
    """One kubeconfig context (``--kubeconfig``, ``--context``; kubectl's defaults otherwise)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        try:
            contexts, current = kubernetes.config.list_kube_config_contexts(kubeconfig)
            chosen = current if context is None else next((c for c in contexts if c["name"] == context), None)
            if chosen is None:
                raise PluginError(FAILED, f'context "{context}" does not exist in the kubeconfig')
            self.configuration = kubernetes.client.Configuration()
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context,
                                               client_configuration=self.configuration, persist_config=False)
        except (kubernetes.config.ConfigException, OSError) as error:
            raise PluginError(FAILED, f"cannot use the kubeconfig: {error}") from None
        details = chosen.get("context") or {}
        self.namespace: str = details.get("namespace") or "default"  # as kubectl: the context's, else default
        self.user: str = details.get("user") or "?"
        client = kubernetes.client.ApiClient(self.configuration)
        self._custom = kubernetes.client.CustomObjectsApi(client)
        self._batch = kubernetes.client.BatchV1Api(client)
        self._core = kubernetes.client.CoreV1Api(client)

    def _call(self, verb: str, resource: str, namespace: str | None, name: str | None,
              fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            response = fn(*args, _preload_content=False, _request_timeout=TIMEOUT, **kwargs)
            return json.loads(response.data or b"null")
        except ApiException as error:
            raise api_error(error.status or 0, error.body, verb=verb, resource=resource, namespace=namespace,
                            name=name) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise PluginError(FAILED, f"cannot reach the API server at {self.configuration.host}: {error}") from None

    def bearer_token(self) -> str | None:
        """The kubeconfig user's Bearer token (a token, a token file or an exec plugin's), if any."""
        # The client keeps the Authorization value under "BearerToken" (older releases: "authorization"),
        # basic auth too; asking through get_api_key_with_prefix runs the refresh hook, so an exec
        # plugin's expired token is renewed.
        for key in ("BearerToken", "authorization"):
            value = self.configuration.get_api_key_with_prefix(key) or ""
            if value.startswith("Bearer ") and value.removeprefix("Bearer ").strip():
                return str(value.removeprefix("Bearer ").strip())
        return None

    # --- Triggers -------------------------------------------------------------------------------

    def trigger(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("get", TRIGGERS, namespace, name, self._custom.get_namespaced_custom_object,
                                           GROUP, VERSION, namespace, PLURAL, name)
        return found

    def triggers(self, namespace: str | None) -> list[dict[str, Any]]:
        """The Triggers of ``namespace``, or of every namespace when it is None."""
        if namespace is None:
            listed = self._call("list", TRIGGERS, None, None, self._custom.list_cluster_custom_object,
                                GROUP, VERSION, PLURAL)
        else:
            listed = self._call("list", TRIGGERS, namespace, None, self._custom.list_namespaced_custom_object,
                                GROUP, VERSION, namespace, PLURAL)
        return list(listed.get("items") or [])

    def patch_trigger(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self._call("patch", TRIGGERS, namespace, name,
                                             self._custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                                             PLURAL, name, dict(patch), _content_type=MERGE)
        return patched

    # --- Jobs, Events, namespaces ---------------------------------------------------------------

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call("get", "jobs.batch", namespace, name, self._batch.read_namespaced_job,
                                               name, namespace)
        except PluginError as error:
            if error.code == NOT_FOUND:
                return None
            raise
        return found

    def jobs(self, namespace: str, trigger: str) -> list[dict[str, Any]]:
        listed = self._call("list", "jobs.batch", namespace, None, self._batch.list_namespaced_job, namespace,
                            label_selector=f"{LABEL_TRIGGER}={trigger}")
        return list(listed.get("items") or [])

    def events(self, namespace: str, trigger: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Kubernetes Events about this Trigger (this very object: its uid, not a namesake's)."""
        meta = trigger["metadata"]
        selector = f"involvedObject.kind=Trigger,involvedObject.name={meta['name']},involvedObject.uid={meta['uid']}"
        listed = self._call("list", "events", namespace, None, self._core.list_namespaced_event, namespace,
                            field_selector=selector)
        return list(listed.get("items") or [])

    def namespaces(self) -> list[str]:
        listed = self._call("list", "namespaces", None, None, self._core.list_namespace)
        return [n["metadata"]["name"] for n in listed.get("items") or []]


def post_events(url: str, token: str, namespace: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """POSTs a batch of CloudEvents to the operator's ``/v1/events``; its answer, or a `PluginError`."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/events", data=json.dumps(events).encode(), method="POST",
        headers={"Content-Type": BATCH, "Authorization": f"Bearer {token}", "X-Namespace": namespace})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        raise api_error(error.code, error.read(), verb="create", resource=f"triggers/events.{GROUP}",
                        namespace=namespace) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise PluginError(FAILED, f"cannot reach the operator at {url}: {reason}") from None


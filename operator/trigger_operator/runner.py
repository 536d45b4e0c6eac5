"""``trigger-operator act``: the action a Job runs, against the platform's HTTP endpoint.

Run in a Trigger's Job (the operator's image), it reads the run's facts from the environment the
operator gives every container (``TRIGGER_ACTION_TYPE``, ``TRIGGER_ACTION_CONFIG``, ...) and POSTs
them to ``TRIGGER_ACTION_URL`` (``{field}`` placeholders are filled from ``actionConfig``, e.g.
``https://api.example.com/v1/clusters/{cluster_id}/execute``), with ``TRIGGER_ACTION_TOKEN`` as a
Bearer token when set and the execution id as ``Idempotency-Key``, so a retry never runs the action
twice on a platform that honours it. Timeouts, connection errors, 408, 429 and 5xx are retried with
exponential backoff; any other 4xx is final. On failure it exits 1 and writes the reason to the
container's termination message (``TRIGGER_TERMINATION_LOG``, default ``/dev/termination-log``), which
the operator copies into ``lastExecutionError``; a configuration error exits 2, among them an
actionConfig without a key its action type needs (``ACTION_CONFIG_REQUIRED``: ``cluster_id`` for
``cluster``, ``retriever_id`` for ``retriever_execution``, ``alert_id`` for ``alert_evaluation``...).

The template is the admin's (the action catalog), the values are a Trigger author's (issue 17),
under the one rule of jobs/placeholders.py: a value fills exactly one path segment, made of
letters, digits and ``- . _ ~`` only and never ``.`` nor holding ``..`` (nothing is
percent-encoded there, so no ``%2F`` reaches a server that would decode it before resolving
``..``: the platform's token goes with the request); in the query (or fragment) a value is
form-encoded, where dots and empty values are harmless and allowed. The filled URL must keep the
template's scheme, host, port and the path up to the first placeholder, so placeholders in the
host or port cannot be filled at all: the platform's address is the admin's to choose.
``{namespace}`` is the Trigger's namespace (``TRIGGER_NAMESPACE``, which the operator sets in every
container over the template's own), never actionConfig's ``namespace``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from trigger_operator.jobs import placeholders
from trigger_operator.model.spec import ACTION_CONFIG_REQUIRED, ActionType

RETRIED = {408, 429}


class ActionFailed(Exception):
    pass


class BadConfiguration(Exception):
    pass


@dataclass(frozen=True)
class RunnerSettings:
    url: str
    token: str | None
    timeout_seconds: float
    attempts: int
    backoff_seconds: float
    termination_log: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunnerSettings:
        url = env.get("TRIGGER_ACTION_URL", "").strip()
        if not url.startswith(("http://", "https://")):
            raise BadConfiguration("TRIGGER_ACTION_URL must be an http(s) URL (the action's endpoint)")
        try:
            return cls(url=url, token=env.get("TRIGGER_ACTION_TOKEN") or None,
                       timeout_seconds=float(env.get("TRIGGER_ACTION_TIMEOUT_SECONDS", "30")),
                       attempts=max(1, int(env.get("TRIGGER_ACTION_ATTEMPTS", "5"))),
                       backoff_seconds=float(env.get("TRIGGER_ACTION_BACKOFF_SECONDS", "1")),
                       termination_log=env.get("TRIGGER_TERMINATION_LOG", "/dev/termination-log"))
        except ValueError as error:
            raise BadConfiguration(f"a TRIGGER_ACTION_* number is not a number: {error}") from None


def request_of(env: Mapping[str, str], url_template: str) -> tuple[str, dict[str, Any]]:
    """The URL and JSON body for this run, from the operator's environment."""
    try:
        config = json.loads(env.get("TRIGGER_ACTION_CONFIG") or "{}")
    except ValueError:
        raise BadConfiguration("TRIGGER_ACTION_CONFIG is not JSON") from None
    if not isinstance(config, dict):
        raise BadConfiguration("TRIGGER_ACTION_CONFIG is not a JSON object")
    action_type = env.get("TRIGGER_ACTION_TYPE") or ""
    if action_type in ActionType.__members__.values():
        for key in ACTION_CONFIG_REQUIRED[ActionType(action_type)]:
            if config.get(key) in (None, ""):
                raise BadConfiguration(f"actionConfig.{key} is required for action type {action_type!r} (the seed's "
                                       "typed action config)")
    url = fill_url(url_template, config, namespace=env.get("TRIGGER_NAMESPACE") or None)
    body = {"action_type": env.get("TRIGGER_ACTION_TYPE"), "action_config": config,
            "trigger": {"name": env.get("TRIGGER_NAME"), "namespace": env.get("TRIGGER_NAMESPACE")},
            "scheduled_time": env.get("TRIGGER_SCHEDULED_TIME"), "execution_id": env.get("TRIGGER_EXECUTION_ID"),
            "run_kind": env.get("TRIGGER_RUN_KIND")}
    return url, body


def fill_url(template: str, config: Mapping[str, Any], *, namespace: str | None) -> str:
    """The template with its ``{field}`` placeholders filled from actionConfig (``{namespace}``:
    ``namespace``, the Trigger's), each checked or encoded where it stands (jobs/placeholders.py:
    the one rule, shared with the catalog's default condition sources); raises `BadConfiguration`
    naming the field, or when the URL would leave the template's origin and path prefix."""
    try:
        return placeholders.fill_url(template, config, where="TRIGGER_ACTION_URL", namespace=namespace)
    except placeholders.PlaceholderError as error:
        raise BadConfiguration(str(error)) from None


def perform(settings: RunnerSettings, url: str, body: Mapping[str, Any], execution_id: str | None) -> str:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    if execution_id:
        headers["Idempotency-Key"] = execution_id
    last = ""
    with httpx.Client(timeout=settings.timeout_seconds, follow_redirects=False) as client:
        for attempt in range(1, settings.attempts + 1):
            try:
                response = client.post(url, json=dict(body), headers=headers)
            except httpx.TimeoutException:
                last = f"POST {url}: no answer within {settings.timeout_seconds:g} s"
            except httpx.HTTPError as error:
                last = f"POST {url}: {type(error).__name__}: {error}"
            else:
                if response.is_success:
                    return f"POST {url}: HTTP {response.status_code} after {attempt} attempt(s)"
                last = f"POST {url}: HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code < 500 and response.status_code not in RETRIED:
                    raise ActionFailed(last)
            if attempt < settings.attempts:
                print(f"attempt {attempt} failed, retrying: {last}", file=sys.stderr)
                time.sleep(settings.backoff_seconds * 2 ** (attempt - 1))
    raise ActionFailed(f"{last} (gave up after {settings.attempts} attempts)")


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    log = env.get("TRIGGER_TERMINATION_LOG", "/dev/termination-log")
    try:
        settings = RunnerSettings.from_env(env)
        url, body = request_of(env, settings.url)
        print(perform(settings, url, body, env.get("TRIGGER_EXECUTION_ID")))
        return 0
    except (ActionFailed, BadConfiguration) as error:
        message = str(error)[:4000]  # the kubelet keeps at most 4 KiB of a termination message
        print(message, file=sys.stderr)
        try:
            with open(log, "w") as out:
                out.write(message)
        except OSError:
            pass
        return 2 if isinstance(error, BadConfiguration) else 1

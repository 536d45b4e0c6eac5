"""Job names and manifests for a Trigger's runs. Pure: a function of the Trigger and the run.

The name is the lock against running a moment twice: it is derived from the Trigger and the
scheduled moment (or the run-now token), so a second attempt - after a crash, or from a second
replica - gets AlreadyExists and adopts the Job instead of making another.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trigger_operator.api import (
    ANNOTATION_EVENT_KEY,
    ANNOTATION_PARTS,
    ANNOTATION_SCHEDULED_TIME,
    API_VERSION,
    FINALIZER,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_RUN_KIND,
    LABEL_SHARD,
    LABEL_TRIGGER,
    MANAGER,
)
from trigger_operator.model.status import RunKind, format_time


@dataclass(frozen=True)
class TriggerRef:
    """What a Job needs to know of its Trigger."""

    namespace: str
    name: str
    uid: str
    action_type: str
    action_config: Mapping[str, Any]


def scheduled_job_name(trigger: str, moment: dt.datetime) -> str:
    """``<trigger>-<unix seconds>``: 10 digits until 2286, so at most 52 + 11 = 63 characters.
    Seconds, not CronJob's minutes, because interval Triggers may fire more than once a minute."""
    return f"{trigger}-{int(moment.timestamp())}"


def event_job_name(trigger: str, firing: int) -> str:
    """``<trigger>-e<N>`` for an event Trigger's N-th firing: N is written to status in the same
    guarded write that spends the events, so a crash between counting and creating makes one Job.
    With groupBy N still counts the Trigger's firings, not the key's: a key that left status and
    came back could otherwise meet its own old Job's name (and adopt it instead of running). The
    key is on the Job (annotation and TRIGGER_EVENT_KEY), not in its name: a name has no room for
    a 64-character key, and a hash of it would tell a reader nothing."""
    return f"{trigger}-e{firing}"


def compound_job_name(trigger: str, firing: int) -> str:
    """``<trigger>-x<N>`` for a compound Trigger's N-th firing: N is written to status in the same
    guarded write that uses up the parts' firings (as `event_job_name`)."""
    return f"{trigger}-x{firing}"


def condition_job_name(trigger: str, firing: int) -> str:
    """``<trigger>-c<N>`` for a conditional Trigger's N-th firing (as `event_job_name`)."""
    return f"{trigger}-c{firing}"


def manual_job_name(trigger: str, token: str) -> str:
    """``<trigger>-m<hash of the token>``: one Job per run-now token, whatever happens."""
    return f"{trigger}-m{hashlib.sha256(token.encode()).hexdigest()[:9]}"


def render_job(trigger: TriggerRef, *, name: str, kind: RunKind, scheduled_time: dt.datetime, parts: Sequence[str] = (),
               template: Mapping[str, Any], event_key: str | None = None,
               event_count: int | None = None, shard: str | None = None) -> dict[str, Any]:
    """The Job for one run, from a Job template (``{metadata, spec}`` as in a CronJob's jobTemplate).

    Only our own labels are added: copying the Trigger's labels would carry GitOps tracking labels
    onto Jobs that are in no Git repository. ``shard``: in the sharded mode, LABEL_SHARD's value
    (core/sharding.py's `shard_label`), so that each replica watches only its shards' Jobs. Every
    container (init containers too) gets the run's facts in its environment, and
    ``terminationMessagePolicy: FallbackToLogsOnError`` unless its template chose one.
    """
    meta = template.get("metadata") or {}
    spec = copy.deepcopy(dict(template.get("spec") or {}))
    ours = {LABEL_TRIGGER: trigger.name, LABEL_RUN_KIND: kind.value, LABEL_MANAGED_BY: MANAGER}
    if shard is not None:
        ours[LABEL_SHARD] = shard
    labels = {**(meta.get("labels") or {}), **ours}
    annotations = {**(meta.get("annotations") or {}), ANNOTATION_SCHEDULED_TIME: format_time(scheduled_time)}
    if parts:  # a compound run: the parts that fired it
        annotations[ANNOTATION_PARTS] = ",".join(parts)
    if event_key is not None:
        annotations[ANNOTATION_EVENT_KEY] = event_key

    pod = spec.setdefault("template", {})
    pod_meta = pod.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), LABEL_TRIGGER: trigger.name}
    pod_spec = pod.setdefault("spec", {})
    pod_spec.setdefault("restartPolicy", "Never")
    env: list[dict[str, str | None]] = [
        {"name": "TRIGGER_NAME", "value": trigger.name},
        {"name": "TRIGGER_NAMESPACE", "value": trigger.namespace},
        {"name": "TRIGGER_ACTION_TYPE", "value": trigger.action_type},
        {"name": "TRIGGER_ACTION_CONFIG", "value": json.dumps(trigger.action_config, sort_keys=True)},
        {"name": "TRIGGER_SCHEDULED_TIME", "value": format_time(scheduled_time)},
        {"name": "TRIGGER_EXECUTION_ID", "value": name},
        {"name": "TRIGGER_RUN_KIND", "value": kind.value},
    ]
    if parts:
        env.append({"name": "TRIGGER_PARTS", "value": ",".join(parts)})
    # An event run's facts: the groupBy key it is for; the count an absence run saw in its window.
    if event_key is not None:
        env.append({"name": "TRIGGER_EVENT_KEY", "value": event_key})
    if event_count is not None:
        env.append({"name": "TRIGGER_EVENT_COUNT", "value": str(event_count)})
    ours_env = {e["name"] for e in env}
    for container in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
        kept = [e for e in container.get("env") or [] if e.get("name") not in ours_env]
        container["env"] = kept + env
        # A container that fails before it writes a termination message (an exec refused by the
        # kernel, a crash at start) says why only in its log: with this default its last lines
        # become the message, and so the Trigger's lastExecutionError (found on a real node).
        container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": trigger.namespace,
            "labels": labels,
            "annotations": annotations,
            "finalizers": [FINALIZER],
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": KIND, "name": trigger.name,
                "uid": trigger.uid, "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": spec,
    }


def no_template(action_type: str) -> str:
    """An action type the admin's catalog has no Job template for, and the Trigger has none of its
    own: the webhook's refusal and the controller's ActionTemplateMissing message, in one wording."""
    return (f"spec.actionType: no Job template for action type {action_type!r} in the actions ConfigMap: "
            "the cluster admin adds one, or set spec.jobTemplate")


def template_problem(template: Mapping[str, Any]) -> str | None:
    """Why a Job template cannot make a Job, or None. The API server checks the rest at create."""
    spec = template.get("spec")
    if not isinstance(spec, Mapping):
        return "has no spec"
    pod = spec.get("template")
    if not isinstance(pod, Mapping) or not isinstance(pod.get("spec"), Mapping):
        return "has no spec.template.spec"
    containers = pod["spec"].get("containers")
    if not isinstance(containers, list) or not containers:
        return "has no containers in spec.template.spec.containers"
    return None

"""Trigger manifests for the integration tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.harness import PodBehaviour


def trigger(name: str, *, cron: str | None = None, interval: int | None = None, timezone: str | None = None,
            pod: PodBehaviour | None = None, **spec: Any) -> dict[str, Any]:
    """A Trigger; with ``pod`` it carries its own jobTemplate whose pods end that way, else it uses
    the action catalog's template."""
    schedule: dict[str, Any] = {}
    if cron is not None:
        schedule = {"cronExpression": cron, **({"timezone": timezone} if timezone else {})}
        spec.setdefault("triggerType", "cron")
    if interval is not None:
        schedule = {"intervalSeconds": interval}
        spec.setdefault("triggerType", "interval")
    body: dict[str, Any] = {
        "actionType": "cluster",
        "actionConfig": {"cluster_id": "clust_abc123", "filters": {"status": "active"}},
        "scheduleConfig": schedule,
        **spec,
    }
    if pod is not None:
        body["jobTemplate"] = {"metadata": {"labels": {"team": "data"}},
                               "spec": {"backoffLimit": 0, "template": pod.pod_template()}}
    return {"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": "gitops-app"}}, "spec": body}


def scheduled_time(job: Any) -> dt.datetime:
    """The moment a Job was made for, from its annotation."""
    moment = parse(job.metadata.annotations["trigger-operator.io/scheduled-time"])
    assert moment is not None
    return moment


def parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

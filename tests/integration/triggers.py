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


# The seed API's request examples, verbatim (seed-api.md §5-6), and the RBAC of an editor who uses it.
SEED_EDITOR = [{"apiGroups": ["trigger-operator.io"], "resources": ["triggers"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"]},
               {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]}]
SEED_DAILY = {"action_type": "cluster", "action_config": {"cluster_id": "clust_abc123"}, "trigger_type": "cron",
              "schedule_config": {"cron_expression": "0 2 * * *", "timezone": "UTC"},
              "description": "Daily clustering at 2am"}
SEED_SIX_HOURLY = {"action_type": "taxonomy_enrichment",
                   "action_config": {"taxonomy_id": "tax_products", "collection_id": "col_inventory",
                                     "batch_size": 1000},
                   "trigger_type": "interval", "schedule_config": {"interval_seconds": 21600},
                   "description": "Re-enrich products every 6 hours"}

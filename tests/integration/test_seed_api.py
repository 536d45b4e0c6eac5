"""The seed's REST API on the real control plane, with real ServiceAccount tokens: every endpoint as
the seed describes it, refused without RBAC, and in agreement with kubectl."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.harness import Kube, Operator, grant, service_account_token, wait_for
from tests.integration.triggers import SEED_DAILY as DAILY
from tests.integration.triggers import SEED_EDITOR as EDITOR
from tests.integration.triggers import SEED_SIX_HOURLY as SIX_HOURLY

MODEL_FIELDS = {"trigger_id", "namespace_id", "internal_id", "action_type", "action_config", "trigger_type",
                "schedule_config", "status", "last_triggered_at", "last_execution_task_id", "next_scheduled_at",
                "execution_count", "consecutive_failures", "last_execution_status", "last_execution_error",
                "event_counter", "last_cooldown_at", "baseline_snapshot", "last_drift_measurement",
                "last_condition_check_at", "description", "created_at", "updated_at", "created_by",
                "last_volume_measurement", "name", "is_overdue", "notifications"}


class Client:
    def __init__(self, operator: Operator, namespace: str, token: str | None) -> None:
        self.base, self.namespace, self.token = operator.url, namespace, token

    def __call__(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"X-Namespace": self.namespace}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body)
        return httpx.request(method, f"{self.base}{path}", headers=headers, content=content, timeout=30)


@pytest.fixture
def api(kube: Kube, namespace: str, operator: Operator) -> Client:
    token = service_account_token(kube, namespace, "editor")
    grant(kube, namespace, "editor", EDITOR)
    return Client(operator, namespace, token)


def test_the_seeds_examples_are_created_verbatim_and_agree_with_kubectl(
        kube: Kube, namespace: str, api: Client) -> None:
    created = api("POST", "/v1/triggers", DAILY)
    assert created.status_code == 200, created.text  # 0.82 (the SDK) maps 200 only; 0.81 said 201
    model = created.json()
    assert set(model) == MODEL_FIELDS
    assert model["trigger_id"].startswith("trg-") and model["namespace_id"] == namespace
    assert (model["status"], model["schedule_config"]) == ("active", {"cron_expression": "0 2 * * *",
                                                                      "timezone": "UTC"})
    assert model["created_by"] == f"system:serviceaccount:{namespace}:editor"
    trigger = kube.trigger(namespace, model["trigger_id"])  # the same object, seen by kubectl
    assert trigger["metadata"]["uid"] == model["internal_id"]
    assert trigger["spec"]["scheduleConfig"] == {"cronExpression": "0 2 * * *", "timezone": "UTC"}
    assert api("POST", "/v1/triggers", SIX_HOURLY).status_code == 200
    name = model["trigger_id"]
    wait_for("the operator's status", lambda: kube.status(namespace, name).get("nextScheduledAt"))
    got = api("GET", f"/v1/triggers/{name}").json()
    assert got["next_scheduled_at"].endswith("02:00:00Z") or "T02:00:00" in got["next_scheduled_at"]
    assert got["next_scheduled_at"].replace("Z", "+00:00")[:19] == kube.status(namespace, name)[
        "nextScheduledAt"].replace("Z", "+00:00")[:19]


def test_list_filters_pages_and_sorts(api: Client) -> None:
    names = [api("POST", "/v1/triggers", body).json()["trigger_id"] for body in (DAILY, SIX_HOURLY, DAILY)]
    everything = api("POST", "/v1/triggers/list", {}).json()
    assert everything["total"] == 3 and everything["limit"] == 50
    crons = api("POST", "/v1/triggers/list", {"trigger_type": "cron"}).json()
    assert sorted(r["trigger_id"] for r in crons["results"]) == sorted([names[0], names[2]])
    by_resource = api("POST", "/v1/triggers/list", {"resource_id": "tax_products"}).json()
    assert [r["trigger_id"] for r in by_resource["results"]] == [names[1]]
    page = api("POST", "/v1/triggers/list", {"limit": 1, "offset": 1, "sort_by": "trigger_id",
                                             "direction": "asc"}).json()
    assert [r["trigger_id"] for r in page["results"]] == [sorted(names)[1]] and page["total"] == 3
    bad = api("POST", "/v1/triggers/list", {"limit": 5000})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["errors"][0]["loc"] == ["body", "limit"]


def test_patch_pause_resume_and_the_soft_delete(kube: Kube, namespace: str, api: Client) -> None:
    name = api("POST", "/v1/triggers", DAILY).json()["trigger_id"]
    patched = api("PATCH", f"/v1/triggers/{name}", {"schedule_config": {"cron_expression": "30 3 * * *"},
                                                    "description": "later"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["schedule_config"] == {"cron_expression": "30 3 * * *"}
    assert kube.trigger(namespace, name)["spec"]["description"] == "later"
    immutable = api("PATCH", f"/v1/triggers/{name}", {"action_type": "batch_rerun"})
    assert immutable.status_code == 422 and immutable.json()["error"]["details"]["errors"][0]["loc"] == [
        "body", "action_type"]
    assert api("POST", f"/v1/triggers/{name}/pause").json()["status"] == "paused"
    wait_for("phase Paused", lambda: kube.status(namespace, name).get("phase") == "Paused")
    assert api("POST", f"/v1/triggers/{name}/resume").json()["status"] == "active"
    wait_for("phase Active", lambda: kube.status(namespace, name).get("phase") == "Active")
    deleted = api("DELETE", f"/v1/triggers/{name}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert kube.trigger(namespace, name)["spec"]["state"] == "disabled"  # soft: the object stays
    assert api("GET", f"/v1/triggers/{name}").json()["status"] == "disabled"


def test_execute_returns_a_task_that_polls_to_completed_and_shows_in_history(
        kube: Kube, namespace: str, api: Client) -> None:
    name = api("POST", "/v1/triggers", DAILY).json()["trigger_id"]
    task = api("POST", f"/v1/triggers/{name}/execute").json()
    assert (task["status"], task["task_type"]) == ("PENDING", "engine_cluster_build")
    assert task["inputs"] == [{"cluster_id": "clust_abc123"}]
    assert api("GET", f"/v1/tasks/{task['task_id']}").json()["status"] in ("PENDING", "IN_PROGRESS", "COMPLETED")
    done = wait_for("the task to complete", lambda: (t := api("GET", f"/v1/tasks/{task['task_id']}").json())
                    .get("status") == "COMPLETED" and t, timeout=60)
    assert done["task_id"] == task["task_id"]
    assert [j.metadata.name for j in kube.jobs(namespace, name)] == [task["task_id"]]  # the task is the Job
    history = wait_for("the run in the history", lambda: (h := api("GET", f"/v1/triggers/{name}/history").json())
                       .get("total") == 1 and h["executions"][0]["status"] == "COMPLETED" and h, timeout=30)
    assert history["executions"][0]["task_id"] == task["task_id"]
    assert api("GET", f"/v1/triggers/{name}").json()["execution_count"] == 1
    api("DELETE", f"/v1/triggers/{name}")
    refused = api("POST", f"/v1/triggers/{name}/execute")
    assert refused.status_code == 409 and "disabled" in refused.json()["error"]["message"]


def test_errors_are_the_seeds_codes_with_json_bodies(kube: Kube, namespace: str, operator: Operator,
                                                      api: Client) -> None:
    bad_cron = {**DAILY, "schedule_config": {"cron_expression": "61 2 * * *"}}
    invalid = api("POST", "/v1/triggers", bad_cron)
    assert invalid.status_code == 422
    detail = invalid.json()["error"]["details"]["errors"][0]
    assert detail["loc"] == ["body", "schedule_config", "cron_expression"] and "61" in detail["msg"]
    missing = api("POST", "/v1/triggers", {k: v for k, v in DAILY.items() if k != "action_type"})
    assert missing.status_code == 422 and missing.json()["error"]["details"]["errors"][0]["loc"] == [
        "body", "action_type"]
    assert api("GET", "/v1/triggers/trg-nosuch").status_code == 404
    assert api("GET", "/v1/tasks/trg-nosuch-m123").status_code == 404
    anonymous = Client(operator, namespace, None)
    assert anonymous("POST", "/v1/triggers/list", {}).status_code == 401
    assert Client(operator, namespace, "forged")("POST", "/v1/triggers/list", {}).status_code == 401
    outsider = Client(operator, namespace, service_account_token(kube, namespace, "outsider"))
    for method, path, body in [("POST", "/v1/triggers", DAILY), ("POST", "/v1/triggers/list", {}),
                               ("GET", "/v1/triggers/anything", None)]:
        refused = outsider(method, path, body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert "forbidden" in refused.json()["error"]["message"]
    assert kube.custom.list_namespaced_custom_object("trigger-operator.io", "v1alpha1", namespace,
                                                     "triggers")["items"] == []

"""The seed REST API's calendar extensions (issue 22) typed strictly, and the API server's refusals
(the CRD schema's, the admission webhook's) of what the REST API writes named as the REST API names
its fields: each a 422 with the snake_case loc, never a bare ``["body"]`` with a camelCase path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.unit.fake_cluster import FakeCluster
from trigger_operator.kube.interface import CallerError, Identity
from trigger_operator.seed.mapping import BodyError, api_refusal, trigger_manifest, update_patch
from trigger_operator.seed.models import CreateTriggerRequest, UpdateTriggerRequest
from trigger_operator.web.auth import Authorizer
from trigger_operator.web.seed_routes import add_seed_routes

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
HOURLY: dict[str, Any] = {"action_type": "cluster", "action_config": {"cluster_id": "c1"}, "trigger_type": "cron",
          "schedule_config": {"cron_expression": "0 * * * *"}}


def create(**schedule: Any) -> dict[str, Any]:
    request = CreateTriggerRequest.model_validate({**HOURLY, "schedule_config": {**HOURLY["schedule_config"],
                                                                                  **schedule}})
    return trigger_manifest(request, created_by="alice")


@pytest.mark.parametrize(("key", "value", "words"), [
    pytest.param("start_at", 1700000000, "an RFC 3339 time as a string, with a timezone", id="start-at-number"),
    pytest.param("end_at", "1700000000", "an RFC 3339 time", id="end-at-number-string"),
    pytest.param("jitter_seconds", True, "must be an integer", id="jitter-bool"),
    pytest.param("jitter_seconds", 30.0, "must be an integer", id="jitter-float"),
    pytest.param("max_runs", 1.0, "must be an integer", id="max-runs-float"),
    pytest.param("max_runs", "3", "must be an integer", id="max-runs-string"),
])
def test_a_calendar_key_of_the_wrong_type_is_a_422_naming_the_seed_field(key: str, value: Any, words: str) -> None:
    with pytest.raises(BodyError) as refused:
        create(**{key: value})
    assert refused.value.detail[0]["loc"] == ["body", "schedule_config", key]
    assert words in refused.value.detail[0]["msg"]


def test_an_update_checks_the_calendar_as_strictly() -> None:
    current = {**create(), "metadata": {"name": "trg-abc12", "namespace": "team-a", "resourceVersion": "7",
                                        "annotations": {}}}
    request = UpdateTriggerRequest.model_validate({"schedule_config": {"cron_expression": "0 * * * *",
                                                                       "max_runs": 2.0}})
    with pytest.raises(BodyError) as refused:
        update_patch(current, schedule_config=request.schedule_config, description=None, status=None,
                     fields=set(request.model_fields_set))
    assert refused.value.detail[0]["loc"] == ["body", "schedule_config", "max_runs"]


# What the API server answers, as it words it (kubectl shows the same).
CRD_REFUSAL = ('Trigger.trigger-operator.io "trg-abc12" is invalid: spec.scheduleConfig.startAt: Invalid value: '
               '"integer": spec.scheduleConfig.startAt in body must be of type string: "integer"')
WEBHOOK_REFUSAL = ('admission webhook "triggers.trigger-operator.io" denied the request: '
                   "spec.scheduleConfig.excludeCron: the exclusions remove every moment within 5 years in UTC, "
                   "so the Trigger never fires")


@pytest.mark.parametrize(("message", "loc", "text"), [
    pytest.param(CRD_REFUSAL, ["body", "schedule_config", "start_at"],
                 'is invalid: schedule_config.start_at: Invalid value: "integer": schedule_config.start_at in body',
                 id="crd"),
    pytest.param(WEBHOOK_REFUSAL, ["body", "schedule_config", "exclude_cron"],
                 "denied the request: schedule_config.exclude_cron: the exclusions", id="webhook"),
    pytest.param('Trigger.trigger-operator.io "x" is invalid: spec.scheduleConfig.cronExpressions[1]: Invalid value',
                 ["body", "schedule_config", "cron_expressions[1]"], "schedule_config.cron_expressions[1]",
                 id="an-item"),
])
def test_the_api_servers_refusal_names_the_seed_field(message: str, loc: list[str], text: str) -> None:
    refusal = api_refusal(message)
    assert refusal.detail[0]["loc"] == loc
    assert text in refusal.detail[0]["msg"] and "scheduleConfig" not in refusal.detail[0]["msg"]


class _Refusing:
    """The Kubernetes API as a caller reaches it, refusing every write with ``message``."""

    def __init__(self, message: str) -> None:
        self.message = message

    async def request(self, token: str, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                      params: Mapping[str, str] | None = None) -> Any:
        raise CallerError(422 if "webhook" not in self.message else 400, self.message)


@pytest.mark.parametrize(("message", "loc"), [
    pytest.param(WEBHOOK_REFUSAL, ["body", "schedule_config", "exclude_cron"], id="webhook"),
    pytest.param(CRD_REFUSAL, ["body", "schedule_config", "start_at"], id="crd"),
])
def test_a_create_the_api_server_refuses_is_a_422_naming_the_seed_field(message: str, loc: list[str]) -> None:
    cluster = FakeCluster(clock=lambda: NOW)
    cluster.tokens["t0ken"] = Identity("alice")
    app = FastAPI()
    add_seed_routes(app, caller=_Refusing(message), authorizer=Authorizer(cluster, ttl_seconds=60))
    body = {**HOURLY, "schedule_config": {"cron_expression": "0 * * * *", "exclude_cron": ["* * * * *"]}}
    answer = TestClient(app).post("/v1/triggers", json=body, headers={"Authorization": "Bearer t0ken",
                                                                      "X-Namespace": "team-a"})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["details"]["errors"][0]["loc"] == loc
    assert error["message"].startswith(".".join(loc) + ": ") and "spec.scheduleConfig" not in error["message"]

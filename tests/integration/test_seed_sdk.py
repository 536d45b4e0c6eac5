"""The seed's own SDK (``mixpeek`` 1.3.783, unchanged) against our REST API on the real control plane,
with real ServiceAccount tokens: every method of ``TriggersApi`` and ``ClusterTriggersApi`` returns
its typed model, every error status reaches it as its typed ``ErrorResponse`` and exception class,
and the seed's documented examples, created through it, make their Jobs."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mixpeek import ApiClient, Configuration
from mixpeek.api.cluster_triggers_api import ClusterTriggersApi
from mixpeek.api.triggers_api import TriggersApi
from mixpeek.exceptions import (
    ApiException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
    UnauthorizedException,
    UnprocessableEntityException,
)
from mixpeek.models.error_response import ErrorResponse
from mixpeek.models.shared_clusters_triggers_models_create_trigger_request import (
    SharedClustersTriggersModelsCreateTriggerRequest as ClusterCreate,
)
from mixpeek.models.shared_clusters_triggers_models_list_triggers_request import (
    SharedClustersTriggersModelsListTriggersRequest as ClusterList,
)
from mixpeek.models.shared_clusters_triggers_models_list_triggers_response import (
    SharedClustersTriggersModelsListTriggersResponse as ClusterListResponse,
)
from mixpeek.models.shared_clusters_triggers_models_trigger_history_response import (
    SharedClustersTriggersModelsTriggerHistoryResponse as ClusterHistory,
)
from mixpeek.models.shared_clusters_triggers_models_trigger_model import (
    SharedClustersTriggersModelsTriggerModel as ClusterModel,
)
from mixpeek.models.shared_clusters_triggers_models_update_trigger_request import (
    SharedClustersTriggersModelsUpdateTriggerRequest as ClusterUpdate,
)
from mixpeek.models.shared_triggers_models_create_trigger_request import (
    SharedTriggersModelsCreateTriggerRequest as Create,
)
from mixpeek.models.shared_triggers_models_list_triggers_request import SharedTriggersModelsListTriggersRequest as List
from mixpeek.models.shared_triggers_models_list_triggers_response import (
    SharedTriggersModelsListTriggersResponse as ListResponse,
)
from mixpeek.models.shared_triggers_models_trigger_history_response import (
    SharedTriggersModelsTriggerHistoryResponse as History,
)
from mixpeek.models.shared_triggers_models_trigger_model import SharedTriggersModelsTriggerModel as Model
from mixpeek.models.shared_triggers_models_update_trigger_request import (
    SharedTriggersModelsUpdateTriggerRequest as Update,
)
from mixpeek.models.task_response import TaskResponse
from mixpeek.models.trigger_history_request import TriggerHistoryRequest

from tests.harness import Kube, Operator, grant, service_account_token, wait_for
from tests.integration.triggers import SEED_DAILY as DAILY
from tests.integration.triggers import SEED_EDITOR
from tests.integration.triggers import SEED_SIX_HOURLY as SIX_HOURLY

EDITOR = [*SEED_EDITOR,
          {"apiGroups": ["trigger-operator.io"], "resources": ["triggers/events"], "verbs": ["create"]}]
HOURLY_NOW = {"interval_seconds": 3600, "start_immediately": True}
EVENT = {"event_type": "documents_added", "event_threshold": 100, "collection_id": "col_abc123",
         "cooldown_seconds": 300}
CONDITIONAL = {"condition_type": "drift", "metric": "cosine_drift", "threshold": 0.3, "check_interval_seconds": 3600}


def client(operator: Operator, namespace: str, token: str | None) -> ApiClient:
    return ApiClient(Configuration(host=operator.url, access_token=token, api_key={"NamespaceHeader": namespace}))


@pytest.fixture
def token(kube: Kube, namespace: str) -> str:
    grant(kube, namespace, "editor", EDITOR)
    return service_account_token(kube, namespace, "editor")


@pytest.fixture
def triggers(operator: Operator, namespace: str, token: str) -> TriggersApi:
    return TriggersApi(client(operator, namespace, token))


@pytest.fixture
def clusters(operator: Operator, namespace: str, token: str) -> ClusterTriggersApi:
    return ClusterTriggersApi(client(operator, namespace, token))


def typed_error(call: Callable[[], Any], kind: type[ApiException], status: int) -> ErrorResponse:
    """The exception class the SDK raises and its ErrorResponse (``e.data``; for a 409, which the
    SDK's methods do not map, read from ``e.body`` with the SDK's own model)."""
    with pytest.raises(kind) as caught:
        call()
    error = caught.value.data if caught.value.data is not None else ErrorResponse.from_json(caught.value.body or "")
    assert isinstance(error, ErrorResponse), caught.value.body
    assert error.status == status and error.success is False
    return error


def test_every_triggers_api_method_returns_its_model(kube: Kube, namespace: str, triggers: TriggersApi) -> None:
    created = triggers.create_trigger(Create.model_validate({**DAILY, "name": "Nightly clustering"}))
    assert isinstance(created, Model) and created.trigger_id and created.trigger_id.startswith("trg-")
    assert created.name == "Nightly clustering" and created.is_overdue is False
    assert created.next_scheduled_at is not None and created.next_scheduled_at.hour == 2  # from the core, at once
    name = created.trigger_id
    assert kube.trigger(namespace, name)["metadata"]["annotations"]["trigger-operator.io/display-name"] == \
        "Nightly clustering"
    other = triggers.create_trigger(Create.model_validate({**SIX_HOURLY, "status": "paused"}))
    assert other.status is not None and other.status.value == "paused"

    got = triggers.get_trigger(name)
    assert isinstance(got, Model) and got.trigger_id == name and got.schedule_config == DAILY["schedule_config"]
    listed = triggers.list_triggers()  # GET /v1/triggers
    assert isinstance(listed, ListResponse) and listed.total == 2
    assert {r.trigger_id for r in listed.results} == {name, other.trigger_id}
    posted = triggers.list_triggers_0(List.model_validate({"trigger_type": "interval"}))  # POST /v1/triggers/list
    assert isinstance(posted, ListResponse) and [r.trigger_id for r in posted.results] == [other.trigger_id]
    for new_type in ("retriever_execution", "alert_evaluation"):
        assert triggers.list_triggers_0(List.model_validate({"action_type": new_type})).total == 0
    by_name = triggers.list_triggers_0(List.model_validate({"sort_by": "name", "direction": "asc"}))
    assert [r.trigger_id for r in by_name.results] == [name, other.trigger_id]  # a null name sorts last

    updated = triggers.update_trigger(name, Update.model_validate({"name": "Later clustering", "description": "later",
                                                              "schedule_config": {"cron_expression": "30 3 * * *"}}))
    assert isinstance(updated, Model) and (updated.name, updated.description) == ("Later clustering", "later")
    assert updated.schedule_config == {"cron_expression": "30 3 * * *"}
    assert triggers.pause_trigger(name).status.value == "paused"  # type: ignore[union-attr]
    assert triggers.resume_trigger(name).status.value == "active"  # type: ignore[union-attr]

    task = triggers.execute_trigger_now(name)
    assert isinstance(task, TaskResponse) and task.task_type.value == "engine_cluster_build"
    assert task.inputs is not None and task.inputs[0].actual_instance == {"cluster_id": "clust_abc123"}
    wait_for("the run in the history", lambda: triggers.get_trigger_history(name).total == 1, timeout=60)
    history = triggers.get_trigger_history(name, offset=0, limit=10)
    assert isinstance(history, History) and history.executions[0].task_id == task.task_id
    assert triggers.delete_trigger(name) is None
    assert kube.trigger(namespace, name)["spec"]["state"] == "disabled"


def test_every_cluster_triggers_api_method_returns_its_model(kube: Kube, namespace: str,
                                                             clusters: ClusterTriggersApi) -> None:
    by_cluster = clusters.create_trigger_clusters(ClusterCreate.model_validate(
        {"trigger_type": "interval", "schedule_config": HOURLY_NOW, "cluster_id": "cluster_xyz789",
         "description": "Hourly clustering using cluster_xyz789"}))
    assert isinstance(by_cluster, ClusterModel) and by_cluster.cluster_id == "cluster_xyz789"
    assert by_cluster.execution_config.collection_ids == ["cluster_xyz789"]
    name = by_cluster.trigger_id
    assert name is not None
    assert kube.trigger(namespace, name)["spec"]["actionType"] == "cluster"
    by_config = clusters.create_trigger_clusters(ClusterCreate.model_validate(
        {"trigger_type": "event", "schedule_config": EVENT,
         "execution_config": {"collection_ids": ["col_abc123"], "config": {"algorithm": "kmeans", "n_clusters": 3}},
         "description": "Cluster after 100 new documents"}))
    assert by_config.cluster_id is None and by_config.execution_config.config["n_clusters"] == 3

    assert isinstance(clusters.get_trigger_clusters(name), ClusterModel)
    listed = clusters.list_triggers_clusters(ClusterList.model_validate({"cluster_id": "cluster_xyz789"}))
    assert isinstance(listed, ClusterListResponse) and [r.trigger_id for r in listed.results] == [name]
    assert clusters.list_triggers_clusters(ClusterList.model_validate({})).total == 2
    updated = clusters.update_trigger_clusters(name, ClusterUpdate.model_validate({"description": "hourly"}))
    assert isinstance(updated, ClusterModel) and updated.description == "hourly"
    assert clusters.pause_trigger_clusters(name).status.value == "paused"  # type: ignore[union-attr]
    assert clusters.resume_trigger_clusters(name).status.value == "active"  # type: ignore[union-attr]
    # start_immediately: the first run is the creation's moment; its Job is the history's job_id
    job = wait_for("the interval's first Job", lambda: kube.jobs(namespace, name), timeout=60)[0]
    history = wait_for("the run in the history", lambda: (h := clusters.get_trigger_history_clusters(
        name, TriggerHistoryRequest.model_validate({"limit": 10}))).total >= 1 and h, timeout=60)
    assert isinstance(history, ClusterHistory) and history.executions[0].job_id == job.metadata.name
    assert clusters.get_trigger_history_clusters(name, TriggerHistoryRequest.model_validate(
        {"status_filter": "bogus"})).total == 0
    assert clusters.delete_trigger_clusters(name) is None
    assert kube.trigger(namespace, name)["spec"]["state"] == "disabled"


def test_every_error_status_reaches_the_sdk_as_its_typed_error_response(
        kube: Kube, namespace: str, operator: Operator, token: str, triggers: TriggersApi) -> None:
    error = typed_error(lambda: TriggersApi(client(operator, namespace, None)).list_triggers(),
                        UnauthorizedException, 401)
    assert error.error.type == "UnauthorizedError"
    typed_error(lambda: TriggersApi(client(operator, namespace, "forged")).get_trigger("x"), UnauthorizedException, 401)
    outsider_token = service_account_token(kube, namespace, "outsider")
    outsider = TriggersApi(client(operator, namespace, outsider_token))
    error = typed_error(lambda: outsider.create_trigger(Create.model_validate(DAILY)), ForbiddenException, 403)
    assert "forbidden" in error.error.message and error.error.type == "ForbiddenError"
    typed_error(lambda: ClusterTriggersApi(client(operator, namespace, outsider_token)).list_triggers_clusters(
        ClusterList()), ForbiddenException, 403)
    error = typed_error(lambda: triggers.get_trigger("trg-nosuch"), NotFoundException, 404)
    assert error.error.type == "NotFoundError"
    bad_cron = Create.model_validate({**DAILY, "schedule_config": {"cron_expression": "61 2 * * *"}})
    error = typed_error(lambda: triggers.create_trigger(bad_cron), UnprocessableEntityException, 422)
    assert error.error.message.startswith("body.schedule_config.cron_expression: ") and "61" in error.error.message
    assert error.error.details is not None
    assert error.error.details["errors"][0]["loc"] == ["body", "schedule_config", "cron_expression"]
    # FastAPI's own validation of a body goes through the same shape (the SDK checks limit itself)
    raw = httpx.post(f"{operator.url}/v1/triggers/list", headers={"Authorization": f"Bearer {token}",
                                                                   "X-Namespace": namespace},
                     json={"limit": 5000}, timeout=30)
    parsed = ErrorResponse.from_json(raw.text)
    assert raw.status_code == 422 and parsed is not None and parsed.error.details is not None
    assert parsed.error.details["errors"][0]["loc"] == ["body", "limit"] and "body.limit" in parsed.error.message
    not_cluster = triggers.create_trigger(Create.model_validate(SIX_HOURLY)).trigger_id
    assert not_cluster is not None
    clusters = ClusterTriggersApi(client(operator, namespace, token))
    typed_error(lambda: clusters.get_trigger_clusters(not_cluster), NotFoundException, 404)
    typed_error(lambda: clusters.create_trigger_clusters(ClusterCreate.model_validate(
        {"trigger_type": "cron", "schedule_config": {"cron_expression": "0 2 * * *"}})),
        UnprocessableEntityException, 422)
    triggers.delete_trigger(not_cluster)
    error = typed_error(lambda: triggers.execute_trigger_now(not_cluster), ConflictException, 409)
    assert "disabled" in error.error.message and error.error.type == "ConflictError"


def test_two_callers_patching_one_trigger_at_once_get_one_200_and_one_409(
        kube: Kube, namespace: str, operator: Operator, token: str, triggers: TriggersApi) -> None:
    """Each caller reads, then writes with the resourceVersion it read: whichever writes second
    gets 409 rather than silently undoing the other's edit. Several rounds of two callers released
    together: rounds where both overlap answer exactly one 200 and one 409."""
    name = triggers.create_trigger(Create.model_validate(DAILY)).trigger_id
    assert name is not None
    overlapped = 0

    def edit(description: str, barrier: threading.Barrier, answers: list[tuple[str, int]]) -> None:
        api = TriggersApi(client(operator, namespace, token))
        barrier.wait()
        try:
            api.update_trigger(name, Update.model_validate({"description": description}))
            answers.append((description, 200))
        except ConflictException:
            answers.append((description, 409))

    for round_ in range(10):
        barrier = threading.Barrier(2)
        answers: list[tuple[str, int]] = []
        threads = [threading.Thread(target=edit, args=(f"r{round_}-{who}", barrier, answers)) for who in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(answers) == 2 and all(status in (200, 409) for _, status in answers)
        winners = [d for d, status in answers if status == 200]
        assert winners, answers  # never both refused
        if sorted(status for _, status in answers) == [200, 409]:
            overlapped += 1
            assert kube.trigger(namespace, name)["spec"]["description"] == winners[0]  # the 409's edit is not in
    assert overlapped >= 1, "no round overlapped: the guard was never exercised"


def test_the_seeds_cron_interval_and_event_examples_make_their_jobs(
        kube: Kube, namespace: str, operator: Operator, token: str, triggers: TriggersApi) -> None:
    every_minute = triggers.create_trigger(Create.model_validate(
        {**DAILY, "schedule_config": {"cron_expression": "* * * * *", "timezone": "UTC"}})).trigger_id
    hourly = triggers.create_trigger(Create.model_validate(
        {**SIX_HOURLY, "schedule_config": HOURLY_NOW})).trigger_id  # the seed's interval example
    on_docs = triggers.create_trigger(Create.model_validate(
        {"action_type": "cluster", "action_config": {"cluster_id": "clust_abc123"}, "trigger_type": "event",
         "schedule_config": EVENT, "description": "Cluster after 100 new documents"})).trigger_id
    assert every_minute and hourly and on_docs
    wait_for("the interval's immediate Job", lambda: kube.jobs(namespace, hourly), timeout=60)
    headers = {"Authorization": f"Bearer {token}", "X-Namespace": namespace, "Content-Type": "application/json"}
    for batch in range(2):  # 2 x 50 documents_added in col_abc123: the threshold of 100
        event = {"event_type": "documents_added", "collection_id": "col_abc123", "count": 50, "id": f"b{batch}"}
        sent = httpx.post(f"{operator.url}/v1/events", headers=headers, content=json.dumps(event), timeout=30)
        assert sent.status_code == 202, sent.text
    wait_for("the event example's Job", lambda: kube.jobs(namespace, on_docs), timeout=60)
    assert triggers.get_trigger(on_docs).execution_count in (0, 1)
    wait_for("the cron example's Job", lambda: kube.jobs(namespace, every_minute), timeout=90)
    assert triggers.get_trigger(every_minute).is_overdue is False


def test_the_seeds_conditional_example_verbatim_reads_the_catalogs_default_source_and_makes_its_job(
        kube: Kube, namespace: str, operator: Operator, triggers: TriggersApi) -> None:
    """No source in the body: the catalog's default drift source for the cluster action (a ConfigMap
    named after the Trigger's cluster_id) is read; its first value becomes the baseline, and a moved
    centroid at the next check makes the Job."""
    catalog = kube.core.read_namespaced_config_map("trigger-operator-actions", namespace)
    catalog.data["cluster.sources"] = 'drift:\n  configMap: {name: "stats-{cluster_id}", key: centroid}\n'
    kube.core.replace_namespaced_config_map("trigger-operator-actions", namespace, catalog)
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "stats-clust-abc123"},
                                                       "data": {"centroid": "[1.0, 0.0]"}})
    time.sleep(3)  # the operator polls the catalog every second here
    created = triggers.create_trigger(Create.model_validate(
        {"action_type": "cluster", "action_config": {"cluster_id": "clust-abc123"}, "trigger_type": "conditional",
         "schedule_config": CONDITIONAL, "description": "Re-cluster when drift > 30%"}))
    assert created.schedule_config == CONDITIONAL and created.trigger_id
    name = created.trigger_id
    wait_for("the default source's first value as the baseline",
             lambda: (s := kube.status(namespace, name)).get("baselineSnapshot") and s, timeout=60)
    model = triggers.get_trigger(name)
    assert model.baseline_snapshot is not None and model.last_condition_check_at is not None
    assert model.last_drift_measurement is not None and model.last_drift_measurement["source"] == "configMap"
    # The seed checks hourly: the centroid moves, and the last check is set back by an hour, as if it passed.
    kube.core.patch_namespaced_config_map("stats-clust-abc123", namespace, {"data": {"centroid": "[0.0, 1.0]"}})
    an_hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1, minutes=1)).isoformat().replace("+00:00", "Z")
    kube.custom.patch_namespaced_custom_object_status("trigger-operator.io", "v1alpha1", namespace, "triggers", name,
                                                      {"status": {"lastConditionCheckAt": an_hour_ago}})
    wait_for("the drift's Job", lambda: kube.jobs(namespace, name), timeout=60)


def test_an_sdk_update_of_schedule_config_keeps_the_triggers_own_source_and_comparison(
        kube: Kube, namespace: str, triggers: TriggersApi) -> None:
    """The seed's schedule_config has no source, filters, windowSeconds or comparison: a seed client
    that edits the threshold sends none of them back, and the Trigger keeps its own (it must not fall
    back to the admin's default source). Naming one with null removes it."""
    own = {"config_map": {"name": "stats", "key": "value"}}
    created = triggers.create_trigger(Create.model_validate(
        {"action_type": "cluster", "action_config": {"cluster_id": "c1"}, "trigger_type": "conditional",
         "schedule_config": {"condition_type": "threshold", "metric": "value", "threshold": 3, "comparison": "<",
                             "check_interval_seconds": 3600, "source": own}}))
    name = created.trigger_id
    assert name is not None
    edit = {"condition_type": "threshold", "metric": "value", "threshold": 5, "check_interval_seconds": 3600}
    updated = triggers.update_trigger(name, Update.model_validate({"schedule_config": edit}))
    stored = kube.trigger(namespace, name)["spec"]["scheduleConfig"]
    assert stored == {"conditionType": "threshold", "metric": "value", "threshold": 5, "comparison": "<",
                      "checkIntervalSeconds": 3600, "source": {"configMap": {"name": "stats", "key": "value"}}}
    assert updated.schedule_config == {**edit, "comparison": "<", "source": own}
    triggers.update_trigger(name, Update.model_validate({"schedule_config": {**edit, "comparison": None}}))
    assert "comparison" not in kube.trigger(namespace, name)["spec"]["scheduleConfig"]

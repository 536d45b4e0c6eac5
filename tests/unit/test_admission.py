"""Admission decisions for Triggers. Pure."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.unit.conftest import at, cron_spec, job_template
from trigger_operator.admission.review import mutate, response, validate

CATALOG = ["cluster", "taxonomy_enrichment"]


def request(spec: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "t"} | ({"annotations": annotations} if annotations is not None else {})
    return {"uid": "req-1", "operation": operation, "namespace": "team-a",
            "userInfo": {"username": "alice", "groups": ["devs"]},
            "object": {"metadata": meta, "spec": spec}, "oldObject": {"spec": old} if old is not None else None}


def without_template(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "jobTemplate"}


@pytest.mark.parametrize(("spec", "says"), [
    pytest.param(cron_spec("61 * * * *"), "spec.scheduleConfig.cronExpression: minute field", id="minute-61"),
    pytest.param(cron_spec(timezone="Mars/Base"), "spec.scheduleConfig.timezone", id="unknown-zone"),
    pytest.param(cron_spec("0 0 30 2 *"), "never fires", id="never-fires"),
    pytest.param(without_template({**cron_spec(), "actionType": "batch_rerun"}),
                 "spec.actionType: no Job template for action type 'batch_rerun'", id="no-template"),
    pytest.param({**cron_spec(), "scheduleConfig": {"cronExpression": "0 2 * * *", "timezon": "UTC"}},
                 "spec.scheduleConfig.timezon", id="a-misspelt-field"),
])
def test_what_the_schema_cannot_refuse_is_refused_naming_the_field(spec: dict[str, Any], says: str) -> None:
    decision = validate(request(spec), action_types=CATALOG, now=at())
    assert not decision.allowed and says in decision.message
    answer = response(request(spec), decision)["response"]
    assert answer["allowed"] is False and answer["status"]["code"] == 422 and answer["uid"] == "req-1"


def test_a_good_trigger_is_allowed_and_only_its_own_new_template_needs_job_rights() -> None:
    plain = validate(request(without_template(cron_spec())), action_types=CATALOG, now=at())
    assert plain.allowed and not plain.needs_job_rights
    own = validate(request(cron_spec()), action_types=CATALOG, now=at())
    assert own.allowed and own.needs_job_rights
    unchanged = validate(request(cron_spec(), "UPDATE", old=cron_spec()), action_types=CATALOG, now=at())
    assert unchanged.allowed and not unchanged.needs_job_rights  # e.g. a pause by someone without Job rights
    changed = {**cron_spec(), "jobTemplate": {**job_template(), "metadata": {"labels": {"x": "y"}}}}
    assert validate(request(changed, "UPDATE", old=cron_spec()), action_types=CATALOG, now=at()).needs_job_rights


def test_the_creator_is_recorded_as_an_annotation_on_create_only() -> None:
    for present, path in [(None, "/metadata/annotations"),
                              ({"team": "data"}, "/metadata/annotations/trigger-operator.io~1created-by")]:
        decision = mutate(request(cron_spec(), annotations=present))
        [op] = decision.patch
        assert op["path"] == path and decision.allowed
        patch = json.loads(base64.b64decode(response(request(cron_spec()), decision)["response"]["patch"]))
        assert patch == decision.patch
    assert mutate(request(cron_spec(), "UPDATE")).patch == []

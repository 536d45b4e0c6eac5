"""spec.notifications through the seed's REST API (seed/mapping.py, seed/models.py): snake_case on
create and update bodies and in TriggerModel, the spec's own rules giving a 422 that names the seed
field, and an update that replaces them whole (a key left out is removed, null removes them all)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.conftest import at
from trigger_operator.seed.mapping import BodyError, trigger_manifest, trigger_model, update_patch
from trigger_operator.seed.models import CreateTriggerRequest, UpdateTriggerRequest

DAILY = {"action_type": "cluster", "action_config": {"cluster_id": "c1"}, "trigger_type": "cron",
         "schedule_config": {"cron_expression": "0 2 * * *"}}
SEED_NOTIFICATIONS = {"sinks": [{"uri": "https://hooks.example.com/t"},
                                {"ref": {"kind": "Service", "name": "receiver", "port": 8080, "path": "/events"}}],
                      "types": ["trigger.fired", "trigger.deleted"],
                      "signing_secret_ref": {"name": "hook-key", "key": "key"}}
SPEC_NOTIFICATIONS = {"sinks": [{"uri": "https://hooks.example.com/t"},
                                {"ref": {"kind": "Service", "name": "receiver", "port": 8080, "path": "/events"}}],
                      "types": ["trigger.fired", "trigger.deleted"],
                      "signingSecretRef": {"name": "hook-key", "key": "key"}}


def stored(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the API server keeps it."""
    meta = {"name": "trg-abc12", "namespace": "team-a", "uid": "u-1", "resourceVersion": "7",
            "creationTimestamp": "2026-03-02T09:00:00Z", "annotations": manifest["metadata"]["annotations"]}
    return {"metadata": meta, "spec": manifest["spec"], "status": {}}


def test_notifications_go_in_as_the_spec_names_them_and_come_back_in_snake_case() -> None:
    manifest = trigger_manifest(CreateTriggerRequest.model_validate({**DAILY, "notifications": SEED_NOTIFICATIONS}),
                                created_by="alice")
    assert manifest["spec"]["notifications"] == SPEC_NOTIFICATIONS
    model = trigger_model(stored(manifest), at())
    assert model.notifications == SEED_NOTIFICATIONS
    assert model.model_dump(mode="json")["notifications"] == SEED_NOTIFICATIONS
    plain = trigger_model(stored(trigger_manifest(CreateTriggerRequest.model_validate(DAILY), created_by="a")), at())
    assert plain.notifications is None


@pytest.mark.parametrize(("notifications", "loc", "words"), [
    pytest.param({"sinks": []}, ["body", "notifications", "sinks"], "at least 1", id="no-sink"),
    pytest.param({"sinks": [{"uri": "ftp://x.example.com/"}]}, ["body", "notifications", "sinks", "0", "uri"],
                 "http:// or https://", id="scheme"),
    pytest.param({"sinks": [{"url": "https://x.example.com/"}]}, ["body", "notifications", "sinks", "0", "url"],
                 "Extra inputs", id="unknown-key"),
    pytest.param({"sinks": [{"uri": "https://x.example.com/"}], "signing_secret_ref": {"name": "k"}},
                 ["body", "notifications", "signing_secret_ref", "key"], "required", id="secret-key"),
    pytest.param({"sinks": [{"uri": "https://x.example.com/"}], "types": ["trigger.exploded"]},
                 ["body", "notifications", "types", "0"], "trigger.created", id="type"),
])
def test_bad_notifications_are_a_422_naming_the_seed_field(notifications: dict[str, Any], loc: list[str],
                                                           words: str) -> None:
    with pytest.raises(BodyError) as caught:
        trigger_manifest(CreateTriggerRequest.model_validate({**DAILY, "notifications": notifications}),
                         created_by="a")
    assert caught.value.detail[0]["loc"] == loc
    assert words in caught.value.detail[0]["msg"]


def test_an_update_replaces_notifications_whole_and_null_removes_them() -> None:
    created = CreateTriggerRequest.model_validate({**DAILY, "notifications": SEED_NOTIFICATIONS})
    current = stored(trigger_manifest(created, created_by="a"))
    one_sink = {"sinks": [{"uri": "https://other.example.com/"}]}
    request = UpdateTriggerRequest.model_validate({"notifications": one_sink})
    patch = update_patch(current, schedule_config=None, description=None, status=None,
                         fields=set(request.model_fields_set), notifications=request.notifications)
    # A merge patch: the list is replaced, the keys left out are nulled (the signing key goes too).
    assert patch["spec"] == {"notifications": {"sinks": [{"uri": "https://other.example.com/"}], "types": None,
                                               "signingSecretRef": None}}
    removed = update_patch(current, schedule_config=None, description=None, status=None, fields={"notifications"},
                           notifications=None)
    assert removed["spec"] == {"notifications": None}
    untouched = update_patch(current, schedule_config=None, description="d", status=None, fields={"description"})
    assert "notifications" not in untouched["spec"]
    with pytest.raises(BodyError) as caught:
        update_patch(current, schedule_config=None, description=None, status=None, fields={"notifications"},
                     notifications={"sinks": [{"uri": "https://a.example.com/", "ref": {"name": "r"}}]})
    assert caught.value.detail[0]["loc"] == ["body", "notifications", "sinks", "0"]


def test_the_openapi_document_shows_notifications_on_create_update_and_the_model() -> None:
    from fastapi import FastAPI

    from trigger_operator.seed.models import TriggerModel

    app = FastAPI()

    @app.post("/t", response_model=TriggerModel)
    def create(request: CreateTriggerRequest) -> Any:  # pragma: no cover - only its schema is read
        raise NotImplementedError

    @app.patch("/t")
    def update(request: UpdateTriggerRequest) -> None:  # pragma: no cover
        raise NotImplementedError

    schemas = TestClient(app).get("/openapi.json").json()["components"]["schemas"]
    for name in ("CreateTriggerRequest", "UpdateTriggerRequest", "TriggerModel"):
        assert "signing_secret_ref" in schemas[name]["properties"]["notifications"]["description"], name

"""Bad input (issue: reliability): a corpus of invalid and hostile Trigger specs and HTTP bodies,
and property tests (hypothesis) over the spec and the event endpoint. Each is refused with a clear
message naming the field, or handled; none crashes the parser, the web server or the scheduler's
pass, and a bad Trigger stops no other."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.conftest import NAMESPACE, at, cron_spec
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_controller import FIRST, boot, new_cluster, run
from tests.unit.test_intake import CLOUDEVENT, endpoint, post
from tests.unit.test_reconcile import new_trigger
from trigger_operator.core.reconcile import reconcile
from trigger_operator.events.cloudevents import EventError, read_delivery
from trigger_operator.model.spec import ACTION_CONFIG_MAX_BYTES, SpecError, parse_spec
from trigger_operator.model.status import Phase

VALID = cron_spec()


@pytest.fixture
def client() -> Iterator[tuple[TestClient, FakeCluster]]:
    with endpoint() as made:
        yield made


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=12), inner, max_size=4), max_leaves=12)
FIELDS = ["triggerType", "actionType", "actionConfig", "scheduleConfig", "state", "concurrencyPolicy",
          "catchUpPolicy", "maxConsecutiveFailures", "startingDeadlineSeconds", "jobTemplate",
          "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "description"]

# (what, spec, words the message must contain: the field and the reason)
CORPUS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("no spec at all", {}, ("spec.",)),
    ("wrong type of triggerType", {**VALID, "triggerType": 7}, ("spec.triggerType",)),
    ("unknown triggerType", {**VALID, "triggerType": "sometimes"}, ("spec.triggerType",)),
    ("unknown field", {**VALID, "colour": "blue"}, ("colour",)),
    ("a minute out of range", {**VALID, "scheduleConfig": {"cronExpression": "61 * * * *"}},
     ("spec.scheduleConfig.cronExpression", "59")),
    ("six fields", {**VALID, "scheduleConfig": {"cronExpression": "* * * * * *"}},
     ("spec.scheduleConfig.cronExpression",)),
    ("an empty expression", {**VALID, "scheduleConfig": {"cronExpression": ""}},
     ("spec.scheduleConfig.cronExpression",)),
    ("an unknown zone", {**VALID, "scheduleConfig": {"cronExpression": "0 2 * * *", "timezone": "Mars/Olympus"}},
     ("spec.scheduleConfig.timezone", "unknown time zone")),
    ("a zone that is a path", {**VALID, "scheduleConfig": {"cronExpression": "0 2 * * *",
                                                          "timezone": "../../etc/passwd"}},
     ("spec.scheduleConfig.timezone",)),
    ("a zero interval", {**VALID, "triggerType": "interval", "scheduleConfig": {"intervalSeconds": 0}},
     ("spec.scheduleConfig.intervalSeconds",)),
    ("a negative interval", {**VALID, "triggerType": "interval", "scheduleConfig": {"intervalSeconds": -60}},
     ("spec.scheduleConfig.intervalSeconds",)),
    ("an interval beyond ten years", {**VALID, "triggerType": "interval",
                                      "scheduleConfig": {"intervalSeconds": 10**12}},
     ("spec.scheduleConfig.intervalSeconds",)),
    ("a huge actionConfig", {**VALID, "actionConfig": {"blob": "x" * (ACTION_CONFIG_MAX_BYTES + 1)}},
     ("spec.actionConfig",)),
    ("a negative failure limit", {**VALID, "maxConsecutiveFailures": -1}, ("spec.maxConsecutiveFailures",)),
    ("a string for a number", {**VALID, "startingDeadlineSeconds": "soon"}, ("spec.startingDeadlineSeconds",)),
    ("an event Trigger without its event", {**VALID, "triggerType": "event", "scheduleConfig": {}},
     ("spec.scheduleConfig",)),
]


@pytest.mark.parametrize(("spec", "words"), [pytest.param(spec, words, id=what) for what, spec, words in CORPUS])
def test_each_bad_spec_is_refused_naming_the_field_and_the_reason(spec: dict[str, Any], words: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(spec)
    message = str(refused.value)
    assert all(word in message for word in words), message


@pytest.mark.parametrize(("spec", "words"), [pytest.param(spec, words, id=what) for what, spec, words in CORPUS])
def test_a_bad_trigger_that_exists_anyway_says_why_in_its_status(spec: dict[str, Any], words: tuple[str, ...]) -> None:
    plan = reconcile(new_trigger(spec), {}, {}, at())  # as when the webhook was down
    assert plan.status.phase is Phase.INVALID and plan.create == ()
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert ready.status == "False" and all(word in ready.message for word in words), ready.message


def test_a_valid_expression_that_never_fires_is_not_run_and_says_so() -> None:
    spec = {**VALID, "scheduleConfig": {"cronExpression": "0 0 31 2 *"}}  # February 31st
    plan = reconcile(new_trigger(spec), {}, {}, at())
    ready = next(c for c in plan.status.conditions if c.type == "Ready")
    assert plan.create == () and plan.status.next_scheduled_at is None
    assert (ready.status, ready.reason) == ("False", "NeverFires") and "spec.scheduleConfig" in ready.message


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=JSON)
def test_any_value_in_any_field_is_parsed_or_refused_with_a_spec_error(field: str, value: Any) -> None:
    try:
        parse_spec({**VALID, field: value})
    except SpecError as error:
        assert str(error).startswith("spec"), error


@settings(max_examples=200, deadline=None)
@given(schedule=st.dictionaries(st.sampled_from(["cronExpression", "timezone", "intervalSeconds", "eventType",
                                                 "eventThreshold", "cooldownSeconds", "windowSeconds"]), JSON))
def test_any_schedule_config_is_parsed_or_refused_and_the_pass_never_crashes(schedule: dict[str, Any]) -> None:
    for trigger_type in ("cron", "interval", "event", "conditional"):
        spec = {**VALID, "triggerType": trigger_type, "scheduleConfig": schedule}
        with contextlib.suppress(SpecError):
            parse_spec(spec)
        plan = reconcile(new_trigger(spec), {}, {}, at())  # a decision, whatever the input
        assert plan.status.phase in (Phase.ACTIVE, Phase.INVALID)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=512) | JSON.map(lambda v: json.dumps(v).encode()),
       content_type=st.sampled_from(["application/json", "application/cloudevents+json",
                                     "application/cloudevents-batch+json", "text/plain", ""]),
       headers=st.dictionaries(st.sampled_from(["ce-id", "ce-source", "ce-type", "ce-specversion", "ce-count"]),
                               st.text(max_size=10), max_size=5))
def test_any_delivery_is_read_or_refused_with_an_event_error(body: bytes, content_type: str,
                                                              headers: dict[str, str]) -> None:
    with contextlib.suppress(EventError):
        read_delivery(content_type, headers, body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()),
       content_type=st.sampled_from(["application/json", "application/cloudevents+json",
                                     "application/cloudevents-batch+json", "application/xml"]))
def test_the_event_endpoint_answers_any_body_with_json_and_never_a_500(
        client: tuple[TestClient, FakeCluster], body: bytes, content_type: str) -> None:
    c, _ = client
    response = post(c, body, content_type=content_type)
    assert response.status_code in (202, 400, 404, 413, 415, 422), (response.status_code, response.text)
    assert isinstance(response.json(), dict)


@pytest.mark.parametrize(("body", "content_type", "status"), [
    pytest.param(b"x" * 5000, "application/json", 413, id="over-the-body-limit"),
    pytest.param(b"{", "application/json", 422, id="truncated-json"),
    pytest.param(b"\xff\xfe", "application/cloudevents+json", 422, id="not-utf8"),
    pytest.param(json.dumps([CLOUDEVENT] * 2000).encode(), "application/cloudevents-batch+json", 413,
                 id="a-batch-over-the-limit"),
    pytest.param(json.dumps({**CLOUDEVENT, "count": -5}).encode(), "application/cloudevents+json", 422,
                 id="a-negative-count"),
    pytest.param(json.dumps({**CLOUDEVENT, "count": 10**30}).encode(), "application/cloudevents+json", 422,
                 id="an-absurd-count"),
    pytest.param(json.dumps({**CLOUDEVENT, "specversion": "0.3"}).encode(), "application/cloudevents+json", 422,
                 id="an-unknown-specversion"),
])
def test_hostile_event_bodies_are_refused_and_count_nothing(client: tuple[TestClient, FakeCluster], body: bytes,
                                                             content_type: str, status: int) -> None:
    c, cluster = client
    response = post(c, body, content_type=content_type)
    assert response.status_code == status, response.text
    assert "error" in response.json() or "detail" in response.json()
    assert (cluster.status(NAMESPACE, "on-docs") or {}).get("eventCounter", 0) == 0


def test_bad_triggers_beside_a_good_one_stop_nothing_and_each_says_why() -> None:
    async def scenario() -> None:
        cluster, clock = new_cluster()  # the good Trigger, due at 10:00
        for i, (_, spec, _) in enumerate(CORPUS):
            cluster.apply_trigger(NAMESPACE, f"bad-{i}", spec)
        replica = boot(cluster, clock)

        async def every_trigger_passes() -> None:
            for _ in range(3):
                replica.watch.deliver(replica.scheduler)
                for key in list(replica.scheduler.memory.triggers):
                    await replica.scheduler.sync(key)

        await every_trigger_passes()
        clock.now = at(seconds=1)
        await every_trigger_passes()
        assert cluster.created == [FIRST]
        for i, (what, _, words) in enumerate(CORPUS):
            status = cluster.status(NAMESPACE, f"bad-{i}")
            assert status["phase"] == "Invalid", what
            assert all(word in status["message"] for word in words), (what, status["message"])
    run(scenario)

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
from trigger_operator.model.base import URL_MAX_LENGTH
from trigger_operator.model.filters import MAX_FILTERS, MAX_TERMS, MAX_VALUE_LENGTH
from trigger_operator.model.spec import (
    ACTION_CONFIG_MAX_BYTES,
    COLLECTION_ID_MAX_LENGTH,
    CRON_EXPRESSION_MAX_LENGTH,
    DESCRIPTION_MAX_LENGTH,
    EVENT_TYPE_MAX_LENGTH,
    FIELD_PATH_MAX_LENGTH,
    JOB_TEMPLATE_MAX_BYTES,
    METRIC_MAX_LENGTH,
    PROMETHEUS_QUERY_MAX_LENGTH,
    TIMEZONE_MAX_LENGTH,
    SpecError,
    parse_spec,
)
from trigger_operator.model.status import Phase
from trigger_operator.seed.mapping import BodyError, checked_spec, seed_location

VALID = cron_spec()


def event(**config: Any) -> dict[str, Any]:
    return {**VALID, "triggerType": "event",
            "scheduleConfig": {"eventType": "documents_added", "eventThreshold": 10, **config}}


def conditional(source: dict[str, Any], **config: Any) -> dict[str, Any]:
    return {**VALID, "triggerType": "conditional", "scheduleConfig": {
        "conditionType": "threshold", "metric": "queue", "threshold": 5, "checkIntervalSeconds": 60,
        "source": source, **config}}


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
    # Issue 17: bounds on everything a Trigger author writes, each named with its field and bound.
    ("a description of 100 KB", {**VALID, "description": "x" * 100_000},
     ("spec.description", f"at most {DESCRIPTION_MAX_LENGTH} characters")),
    ("a huge jobTemplate", {**VALID, "jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "busybox", "args": ["x" * JOB_TEMPLATE_MAX_BYTES]}]}}}}},
     ("spec.jobTemplate", f"at most {JOB_TEMPLATE_MAX_BYTES}")),
    ("a long cron expression", {**VALID, "scheduleConfig": {"cronExpression": "0 2 * * " + "1," * 200 + "2"}},
     ("spec.scheduleConfig.cronExpression", f"at most {CRON_EXPRESSION_MAX_LENGTH} characters")),
    ("a long time zone", {**VALID, "scheduleConfig": {"cronExpression": "0 2 * * *", "timezone": "A/" * 40}},
     ("spec.scheduleConfig.timezone", f"at most {TIMEZONE_MAX_LENGTH} characters")),
    ("a long event type", event(eventType="t" * (EVENT_TYPE_MAX_LENGTH + 1)),
     ("spec.scheduleConfig.eventType", f"at most {EVENT_TYPE_MAX_LENGTH} characters")),
    ("a long collection id", event(collectionId="c" * (COLLECTION_ID_MAX_LENGTH + 1)),
     ("spec.scheduleConfig.collectionId", f"at most {COLLECTION_ID_MAX_LENGTH} characters")),
    ("too many filters", event(filters=[{"exact": {"type": "a"}}] * (MAX_FILTERS + 1)),
     ("spec.scheduleConfig.filters", f"at most {MAX_FILTERS} items")),
    ("50,000 filter entries in one any", event(filters=[{"any": [{"exact": {"type": "a"}}] * 50_000}]),
     ("spec.scheduleConfig.filters[0].any[31].exact.type", f"at most {MAX_TERMS} filters and attribute tests")),
    ("a filter on a name that is no CloudEvents attribute", event(filters=[{"exact": {"Region": "eu"}}]),
     ("spec.scheduleConfig.filters[0].exact.Region", "lower-case")),
    ("a long filter value", event(filters=[{"prefix": {"source": "s" * (MAX_VALUE_LENGTH + 1)}}]),
     ("spec.scheduleConfig.filters[0].prefix.source", f"at most {MAX_VALUE_LENGTH}")),
    ("a long metric", conditional({"configMap": {"name": "a", "key": "b"}}, metric="m" * (METRIC_MAX_LENGTH + 1)),
     ("spec.scheduleConfig.metric", f"at most {METRIC_MAX_LENGTH} characters")),
    ("a long prometheus query", conditional({"prometheus": {"url": "http://prom:9090",
                                                            "query": "q" * (PROMETHEUS_QUERY_MAX_LENGTH + 1)}}),
     ("spec.scheduleConfig.source.prometheus.query", f"at most {PROMETHEUS_QUERY_MAX_LENGTH} characters")),
    ("a long url", conditional({"http": {"url": "https://h/" + "p" * URL_MAX_LENGTH}}),
     ("spec.scheduleConfig.source.http.url", f"at most {URL_MAX_LENGTH} characters")),
    ("a long json path", conditional({"http": {"url": "https://h/", "jsonPath": "." + "a" * FIELD_PATH_MAX_LENGTH}}),
     ("spec.scheduleConfig.source.http.jsonPath", f"at most {FIELD_PATH_MAX_LENGTH} characters")),
    ("a long field path", conditional({"object": {"apiVersion": "v1", "kind": "Pod", "name": "p",
                                                  "fieldPath": ".status." + "a" * FIELD_PATH_MAX_LENGTH}}),
     ("spec.scheduleConfig.source.object.fieldPath", f"at most {FIELD_PATH_MAX_LENGTH} characters")),
    ("a prometheus url ending in #", conditional({"prometheus": {"url": "http://169.254.169.254/latest/x#",
                                                                  "query": "up"}}),
     ("spec.scheduleConfig.source.prometheus.url", "must not have a query or fragment: the operator appends "
      "/api/v1/query")),
    ("a prometheus url ending in ?", conditional({"prometheus": {"url": "http://prom:9090/x?", "query": "up"}}),
     ("spec.scheduleConfig.source.prometheus.url", "must not have a query or fragment")),
    ("an http url with a fragment", conditional({"http": {"url": "https://h/doc#x"}}),
     ("spec.scheduleConfig.source.http.url", "must not have a fragment")),
    ("an http url with user:pass@", conditional({"http": {"url": "https://user:pass@h/doc"}}),
     ("spec.scheduleConfig.source.http.url", "must not carry user information")),
    ("a prometheus url disguising its host", conditional({"prometheus": {"url": "http://prom.example.com@10.0.0.1/",
                                                                          "query": "up"}}),
     ("spec.scheduleConfig.source.prometheus.url", "must not carry user information")),
    ("an http url without a host", conditional({"http": {"url": "http:///doc"}}),
     ("spec.scheduleConfig.source.http.url", "must name a host")),
    ("an http url with a bad port", conditional({"http": {"url": "http://h:99999/doc"}}),
     ("spec.scheduleConfig.source.http.url", "invalid port")),
    ("a file url", conditional({"http": {"url": "file:///etc/passwd"}}),
     ("spec.scheduleConfig.source.http.url", "http:// or https://")),
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
                for key in list(replica.scheduler.store.triggers):
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


@pytest.mark.parametrize("source", [
    {"http": {"url": "https://stats.internal/collections/col_abc?window=1h&x=%2F", "jsonPath": ".centroid"}},
    {"http": {"url": "http://[::1]:8080/doc"}},
    {"http": {"url": "https://h/" + "p" * (URL_MAX_LENGTH - len("https://h/"))}},
    {"prometheus": {"url": "http://prometheus:9090", "query": "max(ingest_queue_depth)"}},
    {"prometheus": {"url": "https://thanos.example.com/prometheus/", "query": "q" * PROMETHEUS_QUERY_MAX_LENGTH}},
    {"object": {"apiVersion": "example.io/v1beta1", "kind": "EmbeddingStats", "name": "stats",
                "fieldPath": "{.status.items[0].value}"}},
])
def test_the_bounds_leave_real_sources_alone(source: dict[str, Any]) -> None:
    parse_spec(conditional(source))


def test_the_bounds_leave_real_event_triggers_alone() -> None:
    parse_spec({**event(eventType="com.example.ingest.documents_added", collectionId="col_" + "a" * 200,
                        filters=[{"exact": {"collectionid": "col_abc", "region": "eu"}},
                              {"any": [{"prefix": {"source": "//ingest/eu/"}}, {"suffix": {"subject": ".pdf"}}]},
                              {"not": {"exact": {"type": "documents_deleted"}}}]),
                "description": "d" * DESCRIPTION_MAX_LENGTH})


def test_the_rest_api_names_a_bad_filter_with_the_event_attributes_own_case() -> None:
    with pytest.raises(BodyError) as refused:
        checked_spec(event(filters=[{"exact": {"Region": "eu"}}]))
    assert refused.value.detail[0]["loc"] == ["body", "schedule_config", "filters[0]", "exact", "Region"]
    assert seed_location("spec.scheduleConfig.filters") == ["schedule_config", "filters"]

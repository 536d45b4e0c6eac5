"""Event deliveries, filters and counting: what the intake endpoint reads and how it counts. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.conftest import at
from trigger_operator.events.cloudevents import BATCH, STRUCTURED, EventError, Occurrence, read_delivery
from trigger_operator.events.counting import applies_to, count_events, spend_threshold
from trigger_operator.model.filters import FilterError, check_filters, matches
from trigger_operator.model.spec import SpecError, parse_spec
from trigger_operator.model.status import RECENT_EVENT_IDS, TriggerStatus

CE = {"specversion": "1.0", "id": "evt-1", "source": "//ingest/col_abc", "type": "documents_added",
      "collectionid": "col_abc", "count": 5}


def spec(**config: Any) -> Any:
    return parse_spec({"actionType": "cluster", "triggerType": "event",
                       "scheduleConfig": {"eventType": "documents_added", "eventThreshold": 100, **config}})


def occurrence(event_id: str | None = "evt-1", count: int = 1, **attributes: str) -> Occurrence:
    attrs = {"type": "documents_added", "source": "s", **attributes}
    return Occurrence(type=attrs["type"], source=attrs["source"], id=event_id, count=count, attributes=attrs)


# --- reading deliveries ----------------------------------------------------------------------

def test_binary_mode_reads_the_attributes_from_ce_headers() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "evt-1", "ce-source": "//ingest", "ce-type": "documents_added",
               "ce-collectionid": "col_abc", "ce-count": "7", "content-type": "text/plain"}
    [event] = read_delivery("text/plain", headers, b"any body, not read")
    assert (event.type, event.source, event.id, event.count, event.collection_id) == (
        "documents_added", "//ingest", "evt-1", 7, "col_abc")


def test_structured_mode_reads_one_event_with_its_extensions() -> None:
    [event] = read_delivery(STRUCTURED, {}, json.dumps({**CE, "region": "eu"}).encode())
    assert (event.count, event.collection_id, event.attributes["region"]) == (5, "col_abc", "eu")


def test_batched_mode_reads_every_event() -> None:
    events = read_delivery(BATCH, {}, json.dumps([CE, {**CE, "id": "evt-2", "count": 1}]).encode())
    assert [(e.id, e.count) for e in events] == [("evt-1", 5), ("evt-2", 1)]


def test_the_seeds_plain_json_reads_as_events() -> None:
    body = {"event_type": "documents_added", "collection_id": "col_abc", "count": 100, "id": "batch-7"}
    [event] = read_delivery("application/json", {}, json.dumps(body).encode())
    assert (event.type, event.collection_id, event.count, event.id, event.source) == (
        "documents_added", "col_abc", 100, "batch-7", "")


@pytest.mark.parametrize(("content_type", "headers", "body", "loc"), [
    pytest.param(STRUCTURED, {}, {**CE, "specversion": "0.3"}, ["body", "specversion"], id="old-specversion"),
    pytest.param(STRUCTURED, {}, {k: v for k, v in CE.items() if k != "id"}, ["body", "id"], id="no-id"),
    pytest.param(STRUCTURED, {}, {**CE, "count": 0}, ["body", "count"], id="count-zero"),
    pytest.param(BATCH, {}, [CE, {**CE, "type": ""}], ["body", 1, "type"], id="second-of-a-batch"),
    pytest.param(BATCH, {}, CE, ["body"], id="a-batch-that-is-no-list"),
    pytest.param("application/json", {}, {"event_type": "x", "colour": "red"}, ["body", "colour"],
                 id="plain-json-unknown-field"),
    pytest.param("application/json", {}, {"count": 3}, ["body", "event_type"], id="plain-json-without-type"),
    pytest.param("text/plain", {}, {}, ["header", "content-type"], id="unknown-media-type"),
    pytest.param("text/plain", {"ce-specversion": "1.0", "ce-id": "1", "ce-type": "t"}, {}, ["header", "source"],
                 id="binary-without-source"),
])
def test_a_bad_delivery_names_the_field(content_type: str, headers: dict[str, str], body: Any,
                                        loc: list[Any]) -> None:
    with pytest.raises(EventError) as caught:
        read_delivery(content_type, headers, json.dumps(body).encode())
    assert caught.value.detail[0]["loc"] == loc


def test_a_body_that_is_not_json_is_refused_with_the_reason() -> None:
    with pytest.raises(EventError, match="body: not JSON"):
        read_delivery(STRUCTURED, {}, b"{not json")


def test_a_batch_over_the_limit_is_refused() -> None:
    with pytest.raises(EventError, match="at most 1000 events"):
        read_delivery(BATCH, {}, json.dumps([CE] * 1001).encode())


# --- filters ------------------------------------------------------------------------------------

ATTRS = {"type": "documents_added", "source": "//ingest/eu/col_abc", "subject": "docs/42.pdf", "region": "eu"}


@pytest.mark.parametrize(("filters", "expected"), [
    pytest.param([], True, id="no-filter"),
    pytest.param([{"exact": {"region": "eu"}}], True, id="exact"),
    pytest.param([{"exact": {"region": "us"}}], False, id="exact-other"),
    pytest.param([{"exact": {"tenant": "a"}}], False, id="exact-missing-attribute"),
    pytest.param([{"prefix": {"source": "//ingest/eu/"}}], True, id="prefix"),
    pytest.param([{"suffix": {"subject": ".pdf"}}], True, id="suffix"),
    pytest.param([{"suffix": {"subject": ".png"}}], False, id="suffix-other"),
    pytest.param([{"all": [{"exact": {"region": "eu"}}, {"suffix": {"subject": ".pdf"}}]}], True, id="all"),
    pytest.param([{"any": [{"exact": {"region": "us"}}, {"suffix": {"subject": ".pdf"}}]}], True, id="any"),
    pytest.param([{"not": {"exact": {"region": "eu"}}}], False, id="not"),
    pytest.param([{"exact": {"region": "eu"}}, {"not": {"prefix": {"subject": "docs/"}}}], False,
                 id="a-list-needs-all"),
])
def test_filters_match_as_the_cloudevents_subscriptions_api_says(filters: list[Any], expected: bool) -> None:
    check_filters(filters)
    assert matches(filters, ATTRS) is expected


@pytest.mark.parametrize(("filters", "path"), [
    pytest.param([{"cesql": "region = 'eu'"}], "filters[0].cesql", id="cesql-unsupported"),
    pytest.param([{"regex": {"a": "b"}}], "filters[0].regex", id="unknown-dialect"),
    pytest.param([{"exact": {"a": "b"}, "prefix": {"a": "b"}}], "filters[0]", id="two-dialects-in-one"),
    pytest.param([{"prefix": {"source": ""}}], "filters[0].prefix.source", id="empty-prefix"),
    pytest.param([{"all": []}], "filters[0].all", id="empty-all"),
    pytest.param([{"exact": {"count": 3}}], "filters[0].exact.count", id="a-number"),
])
def test_a_malformed_filter_is_refused_naming_it(filters: list[Any], path: str) -> None:
    with pytest.raises(FilterError) as caught:
        check_filters(filters)
    assert caught.value.path == path


def test_a_malformed_filter_makes_the_spec_invalid_naming_the_field() -> None:
    with pytest.raises(SpecError) as caught:
        spec(filters=[{"regex": {"a": "b"}}])
    assert caught.value.field == "spec.scheduleConfig.filters"
    assert "filters[0].regex: unknown dialect" in str(caught.value)


# --- counting -----------------------------------------------------------------------------------

def test_an_event_applies_by_type_collection_and_filters() -> None:
    s = spec(collectionId="col_abc", filters=[{"exact": {"region": "eu"}}])
    assert applies_to(s, occurrence(collectionid="col_abc", region="eu"))
    assert not applies_to(s, occurrence(collectionid="col_other", region="eu"))
    assert not applies_to(s, occurrence(collectionid="col_abc", region="us"))
    assert not applies_to(s, occurrence(collectionid="col_abc", region="eu", type="documents_deleted"))


def test_counting_adds_counts_and_skips_a_source_and_id_counted_before() -> None:
    status, tally = count_events(TriggerStatus(), spec(), [occurrence("a", 5), occurrence("b", 2)], at())
    again, tally2 = count_events(status, spec(), [occurrence("a", 5), occurrence("c", 1)], at())
    assert (status.event_counter, tally.counted, tally.duplicates) == (7, 7, 0)
    assert (again.event_counter, tally2.counted, tally2.duplicates) == (8, 1, 1)


def test_the_same_id_from_another_source_is_another_event() -> None:
    first = occurrence("a", source="one")
    second = Occurrence(type="documents_added", source="two", id="a", count=1, attributes={})
    status, tally = count_events(TriggerStatus(), spec(), [first, second], at())
    assert (status.event_counter, tally.duplicates) == (2, 0)


def test_events_without_an_id_are_all_counted() -> None:
    status, _ = count_events(TriggerStatus(), spec(), [occurrence(None), occurrence(None)], at())
    assert status.event_counter == 2 and status.recent_event_ids == ()


def test_only_the_last_ids_are_remembered() -> None:
    events = [occurrence(f"e{i}") for i in range(RECENT_EVENT_IDS + 10)]
    status, _ = count_events(TriggerStatus(), spec(), events, at())
    assert len(status.recent_event_ids) == RECENT_EVENT_IDS
    _, late = count_events(status, spec(), [occurrence(f"e{RECENT_EVENT_IDS + 9}"), occurrence("e0")], at())
    assert (late.duplicates, late.counted) == (1, 1)  # the newest is remembered, the oldest forgotten


def test_a_window_counts_into_buckets_and_firing_spends_the_oldest_first() -> None:
    s = spec(windowSeconds=600)
    status, _ = count_events(TriggerStatus(), s, [occurrence("a", 60)], at(minutes=-5))
    status, _ = count_events(status, s, [occurrence("b", 50)], at())
    assert status.event_counter == 110 and [n for _, n in status.event_window] == [60, 50]
    spent = spend_threshold(status, s)
    assert spent.event_counter == 10 and [n for _, n in spent.event_window] == [10]
    later, _ = count_events(spent, s, [], at(minutes=11))
    assert later.event_counter == 0 and later.event_window == ()


def test_a_body_nested_too_deeply_is_refused_not_a_crash() -> None:
    with pytest.raises(EventError, match="nested too deeply"):
        read_delivery(STRUCTURED, {}, b"[" * 100_000)

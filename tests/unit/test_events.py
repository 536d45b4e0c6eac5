"""Event deliveries, filters and counting: what the intake endpoint reads and how it counts. Pure."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.unit.conftest import at
from trigger_operator.events.cloudevents import BATCH, STRUCTURED, EventError, Occurrence, read_delivery
from trigger_operator.events.counting import applies_to, count_events, event_keys, message_follows, spend_threshold
from trigger_operator.model.filters import (
    MAX_DEPTH,
    MAX_FILTERS,
    MAX_TERMS,
    MAX_VALUE_LENGTH,
    FilterError,
    check_filters,
    matches,
)
from trigger_operator.model.spec import SpecError, parse_spec
from trigger_operator.model.status import RECENT_EVENT_IDS, Condition, TriggerStatus

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


@pytest.mark.parametrize(("content_type", "body", "loc"), [
    (STRUCTURED, b'{"specversion":"1.0","id":"e","source":"s","type":"t","region":"x\\ud800"}', "body.region"),
    (BATCH, b'[{"specversion":"1.0","id":"e","source":"s","type":"t","collectionid":"\\udfff"}]',
     "body.0.collectionid"),
    ("application/json", b'{"event_type":"t","collection_id":"\\ud83d"}', "body.collection_id"),
])
def test_a_lone_surrogate_is_refused_naming_the_field_as_no_utf8_text_holds_it(content_type: str, body: bytes,
                                                                               loc: str) -> None:
    """Stored nowhere (an inbox object is UTF-8): refused at the door, not met by the shared writer."""
    with pytest.raises(EventError, match=rf"^{loc}: not valid Unicode text"):
        read_delivery(content_type, {}, body)
    [paired] = read_delivery("application/json", {}, b'{"event_type":"t","collection_id":"\\ud83d\\ude00"}')
    assert paired.collection_id == "\U0001f600"


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
    assert caught.value.field == "spec.scheduleConfig.filters[0].regex"
    assert str(caught.value).startswith("spec.scheduleConfig.filters[0].regex: unknown dialect")


# The filter: one `any` of 50,000 `exact` entries cost 29 ms per event on the event loop.
HUGE_ANY = [{"any": [{"exact": {"type": f"t{i}"}} for i in range(50_000)]}]


def test_filters_are_bounded_in_all_not_only_at_the_top_level() -> None:
    with pytest.raises(FilterError) as caught:
        check_filters(HUGE_ANY)
    # 1 for the any, 2 for each exact (the node and its test): the 65th term is the 32nd exact's test.
    assert caught.value.path == "filters[0].any[31].exact.type"
    assert f"at most {MAX_TERMS} filters and attribute tests in all" in caught.value.reason
    with pytest.raises(SpecError) as refused:
        spec(filters=HUGE_ANY)
    assert refused.value.field == "spec.scheduleConfig.filters[0].any[31].exact.type"
    assert str(MAX_TERMS) in refused.value.reason


def nested(depth: int) -> dict[str, Any]:
    return {"exact": {"type": "a"}} if depth == 1 else {"not": nested(depth - 1)}


@pytest.mark.parametrize(("filters", "path", "reason"), [
    pytest.param([{"exact": {"type": "a"}}] * (MAX_FILTERS + 1), "filters", f"at most {MAX_FILTERS}",
                 id="too-many-at-the-top"),
    pytest.param([{"all": [{"any": [{"exact": {"type": "a"}}] * 10}] * 10}], "filters[0].all[3]",
                 "in all", id="nested-lists-each-short-but-too-many-in-all"),
    pytest.param([{"exact": {f"a{i}": "v" for i in range(MAX_TERMS)}}], f"filters[0].exact.a{MAX_TERMS - 1}",
                 "in all", id="too-many-attribute-tests-in-one-exact"),
    pytest.param([nested(MAX_DEPTH + 1)], "filters[0]" + ".not" * MAX_DEPTH, f"at most {MAX_DEPTH} deep",
                 id="too-deep"),
    pytest.param([{"exact": {"Type": "a"}}], "filters[0].exact.Type", "lower-case", id="upper-case-name"),
    pytest.param([{"exact": {"my_attr": "a"}}], "filters[0].exact.my_attr", "lower-case", id="underscore-in-name"),
    pytest.param([{"prefix": {"a" * 21: "a"}}], f"filters[0].prefix.{'a' * 21}", "1 to 20", id="name-too-long"),
    pytest.param([{"exact": {"": "a"}}], "filters[0].exact.", "1 to 20", id="empty-name"),
    pytest.param([{"suffix": {"subject": "x" * (MAX_VALUE_LENGTH + 1)}}], "filters[0].suffix.subject",
                 f"at most {MAX_VALUE_LENGTH}", id="value-too-long"),
])
def test_each_filter_bound_is_refused_naming_the_path_and_the_bound(filters: list[Any], path: str,
                                                                    reason: str) -> None:
    with pytest.raises(FilterError) as caught:
        check_filters(filters)
    assert (caught.value.path, reason in caught.value.reason) == (path, True), caught.value


def test_filters_at_every_bound_are_allowed() -> None:
    check_filters([nested(MAX_DEPTH)])
    check_filters([{"exact": {"a" * 20: "x" * MAX_VALUE_LENGTH}}] * (MAX_TERMS // 2))
    check_filters([{"any": [{"exact": {"type": "t"}}] * ((MAX_TERMS - 1) // 2)}])


class CountingAttributes(dict[str, str]):
    """An event's attributes that count every lookup matching makes."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        CountingAttributes.lookups += 1
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        CountingAttributes.lookups += 1
        return super().__contains__(key)

    def __getitem__(self, key: str) -> str:
        CountingAttributes.lookups += 1
        return super().__getitem__(key)


LONG = "x" * MAX_VALUE_LENGTH
# Allowed filters that make matching visit every term, each comparing a full-length value.
WORST_CASES = {
    "any-of-near-misses": [{"any": [{"exact": {"type": LONG[:-1] + "y"}}] * ((MAX_TERMS - 1) // 2)}],
    "one-prefix-of-many-attributes": [{"prefix": {f"a{i}": LONG for i in range(MAX_TERMS - 1)}}],
    "top-level-list-of-suffixes": [{"suffix": {"a0": LONG}}] * (MAX_TERMS // 2),
    "deep-nots-and-alls": [{"not": {"not": {"all": [{"prefix": {f"a{i}": LONG}} for i in range(29)]}}}],
}


@pytest.mark.parametrize("filters", list(WORST_CASES.values()), ids=list(WORST_CASES))
def test_matching_an_allowed_filter_costs_a_bounded_number_of_lookups(filters: list[Any]) -> None:
    check_filters(filters)
    attributes = CountingAttributes({"type": LONG, **{f"a{i}": LONG for i in range(MAX_TERMS)}})
    CountingAttributes.lookups = 0
    started = time.perf_counter()
    for _ in range(1000):  # a full batch (MAX_BATCH events) against the worst filter allowed
        matches(filters, attributes)
    elapsed = time.perf_counter() - started
    # Each attribute test looks up at most twice, and each term is visited at most once per event.
    assert CountingAttributes.lookups <= 1000 * 2 * MAX_TERMS
    assert elapsed < 1.0, elapsed  # a sanity bound with a wide margin (it takes a few ms), not a benchmark


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



def test_status_remembers_an_id_in_11_characters_and_still_knows_the_former_16_hex_digits() -> None:
    import hashlib
    event = occurrence("e1")
    former = hashlib.sha256(b"s\0e1").hexdigest()[:16]  # what earlier operators wrote
    status, _ = count_events(TriggerStatus(), spec(), [event], at())
    assert status.recent_event_ids == (event_keys(event)[0],) and len(status.recent_event_ids[0]) == 11  # type: ignore[index]
    assert event_keys(event)[1] == former  # type: ignore[index]
    # A retry of an event an earlier operator counted (its hex id in status) is not counted again.
    _, retried = count_events(TriggerStatus(event_counter=1, recent_event_ids=(former,)), spec(), [event], at())
    assert (retried.counted, retried.duplicates) == (0, 1)
    # 1,000 ids are about 5 KB lighter than the hex spelling in every counting write.
    events = [occurrence(f"e{i}") for i in range(RECENT_EVENT_IDS)]
    ids = count_events(TriggerStatus(), spec(), events, at())[0].recent_event_ids
    assert len(json.dumps(list(ids), separators=(",", ":"))) <= 14 * RECENT_EVENT_IDS + 1  # 19 per hex id


def _stating(status: TriggerStatus, message: str) -> TriggerStatus:
    ready = Condition(type="Ready", status="True", reason="Scheduled", message=message, last_transition_time=at())
    return TriggerStatus(**{**status.__dict__, "conditions": (ready,), "message": message})


@pytest.mark.parametrize(("stored", "follows"), [
    ("1 of 100 documents_added events counted", True),  # it states the count: the count's write restates it
    ("Paused", False),  # another phase's message is the scheduler's to write
    ("2 of 100 documents_added events counted", False),  # not what the stored counts say: left alone
])
def test_the_count_write_restates_the_ready_message_that_states_the_count(stored: str, follows: bool) -> None:
    before = _stating(count_events(TriggerStatus(), spec(), [occurrence("a")], at())[0], stored)
    after, _ = count_events(before, spec(), [occurrence("b", 4)], at())
    followed = message_follows(before, after, spec())
    message = "5 of 100 documents_added events counted" if follows else stored
    assert (followed.message, followed.conditions[0].message) == (message, message)
    assert followed.conditions[0].last_transition_time == at()  # the condition's status did not change
    assert message_follows(before, before, spec()) is before  # nothing counted: nothing restated

    s = spec(windowSeconds=600)
    status, _ = count_events(TriggerStatus(), s, [occurrence("a", 60)], at(minutes=-5))
    status, _ = count_events(status, s, [occurrence("b", 50)], at())
    assert status.event_counter == 110 and [n for _, n in status.event_window] == [60, 50]
    spent = spend_threshold(status, s)
    assert spent.event_counter == 10 and [n for _, n in spent.event_window] == [10]
    later, _ = count_events(spent, s, [], at(minutes=11))
    assert later.event_counter == 0 and later.event_window == ()


def test_count_events_keeps_every_count_of_a_window_written_by_the_old_code() -> None:
    """The old code appended a bucket whenever the last start differed, so after a clock step back
    and forward a window may hold one start twice: each of its counts stays."""
    t0 = int(at().timestamp())
    legacy = TriggerStatus(event_window=((t0, 1), (t0 - 5, 1), (t0, 1)), event_counter=3)
    status, _ = count_events(legacy, spec(windowSeconds=60), [occurrence("n")], at())
    assert status.event_counter == 4 and status.event_window == ((t0 - 5, 1), (t0, 3))


def test_a_body_nested_too_deeply_is_refused_not_a_crash() -> None:
    with pytest.raises(EventError, match="nested too deeply"):
        read_delivery(STRUCTURED, {}, b"[" * 100_000)

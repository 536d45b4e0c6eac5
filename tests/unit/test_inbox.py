"""The shared event inbox: the pure fold rule (events/inbox.py) in table tests, and the shell's
protocol (intake/inbox.py) against the fake cluster, with a crash between any two API calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.unit.conftest import NAMESPACE, at
from tests.unit.fake_cluster import Crash, FakeCluster
from tests.unit.test_controller import Clock
from tests.unit.test_intake import EVENT_SPEC, Memory, docs
from trigger_operator.events import inbox as rule
from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.events.counting import count_events
from trigger_operator.intake.committer import EventCommitter, NotStored
from trigger_operator.intake.inbox import MAX_REFUSALS, MAX_SWEPT_OBJECTS, Inbox
from trigger_operator.metrics import Metrics
from trigger_operator.model.spec import parse_spec
from trigger_operator.model.status import RECENT_EVENT_IDS, TriggerStatus

INBOX_NS = "trigger-operator-system"
SPEC = parse_spec(EVENT_SPEC)
T0 = int(at().timestamp())


def entry(*ids: str | None, stored: int = T0, count: int = 1) -> rule.Entry:
    return rule.Entry(NAMESPACE, "on-docs", stored, tuple(docs(i, count) for i in ids))


def read_back(e: rule.Entry) -> rule.Entry:
    """As a folder reads it from the object (keys only, no source or id)."""
    body = rule.manifest(rule.object_name("a" * 12, 1), "a" * 12, rule.pack([rule.entry_json(e, SPEC)])[0][0])
    body["metadata"]["name"] = rule.object_name("a" * 12, 1)
    return rule.read_object(body).entries[0]


# --- the pure rule -------------------------------------------------------------------------------

def test_a_fold_repeated_counts_nothing_twice_even_for_events_without_ids() -> None:
    entries = [("inc1", 1, read_back(entry("a", None, None))), ("inc1", 2, read_back(entry("b", None)))]
    once, tally, folded = rule.fold(TriggerStatus(), SPEC, entries, T0)
    assert (once.event_counter, tally.counted, folded) == (5, 5, 2)
    again, tally, folded = rule.fold(once, SPEC, entries, T0 + 5)
    assert (again.event_counter, tally.counted, folded) == (5, 0, 0)


def test_a_crash_between_fold_and_delete_counts_once_however_many_ids_passed_meanwhile() -> None:
    """The watermark, not the 1,000 remembered ids, makes the fold idempotent: at 20,000 events a
    second, 1,000 ids pass through a Trigger in well under a second."""
    first = [("inc1", 1, read_back(entry("a", None, count=7)))]
    folded_once, _, _ = rule.fold(TriggerStatus(), SPEC, first, T0)
    busy, _ = count_events(folded_once, SPEC, [docs(f"x{i}") for i in range(RECENT_EVENT_IDS + 10)],
                           at())  # ids of later events push "a" out of the remembered ones
    again, tally, folded = rule.fold(busy, SPEC, first, T0 + 60)  # the object was never deleted
    assert (tally.counted, folded, again.event_counter) == (0, 0, busy.event_counter)


def test_a_fold_from_a_stale_list_skips_what_another_folder_folded_and_folds_the_rest() -> None:
    one, two = ("inc1", 1, read_back(entry("a"))), ("inc1", 2, read_back(entry("b", count=3)))
    by_other, _, _ = rule.fold(TriggerStatus(), SPEC, [one], T0)  # the other folder had object 1 only
    both, tally, folded = rule.fold(by_other, SPEC, [two, one], T0)
    assert (both.event_counter, tally.counted, folded) == (4, 3, 1)


def test_a_retry_stored_in_two_objects_counts_once() -> None:
    entries = [("inc1", 1, read_back(entry("a", count=2))), ("inc2", 1, read_back(entry("a", count=2)))]
    status, tally, _ = rule.fold(TriggerStatus(), SPEC, entries, T0)
    assert (status.event_counter, tally.counted, tally.duplicates) == (2, 2, 1)


def test_an_event_counts_in_the_window_of_the_moment_it_was_stored() -> None:
    config = {"eventType": "documents_added", "eventThreshold": 100, "windowSeconds": 60}
    spec = parse_spec({**EVENT_SPEC, "scheduleConfig": config})
    late, _ = count_events(TriggerStatus(), spec, [docs("late", 2)], at(seconds=30))  # folded first
    status, _, _ = rule.fold(late, spec, [("inc1", 1, read_back(entry("early", stored=T0 + 10, count=5)))], T0 + 31)
    assert status.event_window == ((T0 + 10, 5), (T0 + 30, 2))  # in order, each at its own time
    assert status.event_counter == 7


def test_entries_stored_in_one_second_fold_as_one_delivery_of_their_events_and_each_second_in_its_bucket() -> None:
    """One counting pass per second stored (the fold's speed), the same result as one delivery of
    all their events: a retry in a later entry of the same second is a duplicate, and an entry of
    the next second counts in its own time."""
    config = {"eventType": "documents_added", "eventThreshold": 10_000, "windowSeconds": 60}
    spec = parse_spec({**EVENT_SPEC, "scheduleConfig": config})
    same = [read_back(entry(f"e{i}", "e0" if i == 3 else None, stored=T0 + 1, count=2)) for i in range(5)]
    later = read_back(entry("e1", "f", stored=T0 + 2, count=3))  # "e1" again: a duplicate across seconds too
    entries = [("inc1", i + 1, e) for i, e in enumerate([*same, later])]
    status, tally, folded = rule.fold(TriggerStatus(), spec, entries, T0 + 5)
    as_one, _ = count_events(TriggerStatus(), spec, [e for x in same for e in x.events], at(seconds=1))
    assert folded == 6 and (tally.counted, tally.duplicates) == (5 * 2 + 4 * 2 + 3, 2)
    assert status.event_window == ((T0 + 1, as_one.event_counter), (T0 + 2, 3))
    assert status.recent_event_ids[:len(as_one.recent_event_ids)] == as_one.recent_event_ids


def test_old_watermarks_leave_status_only_once_no_object_of_theirs_is_listed() -> None:
    status = TriggerStatus(inbox_folded={"old": [4, T0], "live": [9, T0]})
    day_later = T0 + rule.MARK_KEPT_SECONDS + 1
    kept, _, _ = rule.fold(status, SPEC, [], day_later, listed=frozenset({"live"}))
    assert kept.inbox_folded == {"live": [9, T0]}
    unlisted, _, _ = rule.fold(status, SPEC, [], day_later, listed=None)  # no recent list: keep all
    assert unlisted.inbox_folded == status.inbox_folded


def test_a_commit_is_split_under_the_object_bound_and_an_entry_too_large_is_refused() -> None:
    rows = [json.dumps(["ns", f"t{i}", T0, [["k" * 11, 1, None]] * 20]) for i in range(10)]
    packed = rule.pack(rows, limit=1000)
    assert len(packed) > 1 and all(len(data) <= 1000 for data, _ in packed)
    assert sum(n for _, n in packed) == 10 and json.loads(packed[0][0])[0][1] == "t0"
    with pytest.raises(rule.InboxError, match="above 100"):
        rule.pack(rows, limit=100)


@pytest.mark.parametrize("limit", range(60, 200))
def test_one_objects_data_is_packs_whenever_pack_makes_one_object(limit: int) -> None:
    """The writer's shortcut (one encoding of every row) and pack agree on the text and the bound."""
    rows = [["ns", f"t{i}", T0, [["k" * 11, 1, None]] * i, None, None] for i in range(3)]
    packed = rule.pack([rule.row_json(r) for r in rows], limit=limit) if all(
        rule.fits(rule.size_of(rule.row_json(r)), limit) for r in rows) else []
    whole = rule.one_object(rows, limit=limit)
    if len(packed) == 1:
        assert whole == packed[0][0] and packed[0][1] == 3
    else:
        assert whole is None


def test_the_writers_rows_read_back_as_their_stored_text_does() -> None:
    rows = [rule.entry_row(rule.Entry("ns", "t", T0, (docs("a"), docs("b")), "uid-1"), SPEC)]
    name = rule.object_name("c" * 12, 5)
    listed = rule.read_object(rule.manifest(name, "c" * 12, rule.one_object(rows) or ""))
    assert (rule.read_entry(rows[0]),) == listed.entries and listed.entries[0].events[0].key is not None


def test_an_unreadable_inbox_object_is_named() -> None:
    body = {"metadata": {"name": rule.object_name("b" * 12, 3)}, "data": {"entries": "[[1]]"}}
    with pytest.raises(rule.InboxError, match=r"events-inbox-bbbbbbbbbbbb-0000000003: data\.entries"):
        rule.read_object(body)


# --- the shell against the fake cluster -----------------------------------------------------------

def setup_inbox(clock: Clock | None = None) -> tuple[FakeCluster, Clock, Memory]:
    clock = clock or Clock(at())
    cluster = FakeCluster(clock)
    for name in ("on-docs", "also-docs"):
        cluster.apply_trigger(NAMESPACE, name, EVENT_SPEC)
    return cluster, clock, Memory(cluster)


def replica(cluster: FakeCluster, clock: Clock, memory: Memory) -> tuple[EventCommitter, Inbox]:
    inbox = Inbox(cluster, INBOX_NS, latest=memory.bodies.get,
                  committed=lambda b: memory.bodies.__setitem__((b["metadata"]["namespace"], b["metadata"]["name"]), b),
                  spec_of=lambda b: committer.spec_of(b), clock=clock)
    committer = EventCommitter(cluster, follow=memory.bodies.follow,
                               latest=memory.bodies.get, committed=lambda b: None, clock=clock, inbox=inbox)
    return committer, inbox


def counters(cluster: FakeCluster) -> dict[str, int]:
    return {name: int(cluster.status(NAMESPACE, name).get("eventCounter", 0)) for name in ("on-docs", "also-docs")}


def test_one_create_acknowledges_many_senders_of_many_triggers_and_the_fold_follows() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        results = await asyncio.gather(*(committer.count(NAMESPACE, [docs(f"e{i}", 2)]) for i in range(100)))
        assert cluster.called("create_config_map") <= 2 and cluster.called("patch_trigger_status") == 0
        assert counters(cluster) == {"on-docs": 0, "also-docs": 0}  # stored in the inbox, not folded yet
        stored = [e for body in cluster.config_maps.values() for e in rule.read_object(body).entries]
        assert sum(ev.count for e in stored for ev in e.events) == 400
        assert all(r[0].counted == 2 for r in results) and results[-1][-1].event_counter == 200
        retry = (await committer.count(NAMESPACE, [docs("e7", 2)]))[0]
        assert retry.duplicates == 1  # stored here, not folded yet: known as a duplicate already
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 200, "also-docs": 200}
        assert cluster.called("patch_trigger_status") == 2 and cluster.config_maps == {}
    asyncio.run(scenario())


def test_an_absence_trigger_still_counts_in_its_own_status_write() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        cluster.apply_trigger(NAMESPACE, "quiet", {**EVENT_SPEC, "scheduleConfig": {
            "eventType": "documents_added", "absence": {"withinSeconds": 60, "fewerThan": 5}}})
        memory.refresh()
        committer, _ = replica(cluster, clock, memory)
        await committer.count(NAMESPACE, [docs("a")])
        assert cluster.called("patch_trigger_status", "quiet") == 1
        assert {e.trigger for b in cluster.config_maps.values() for e in rule.read_object(b).entries} == \
            {"on-docs", "also-docs"}
    asyncio.run(scenario())


def _run_until_crash(cluster: FakeCluster, clock: Clock, memory: Memory,
                     crash_after: int) -> tuple[dict[str, int], set[int]]:
    """Replica A sends 4 requests one after the other, folding after each, and dies at API call
    ``crash_after``; returns what was acknowledged per Trigger, and which requests."""
    acknowledged, requests = {"on-docs": 0, "also-docs": 0}, set()

    async def scenario() -> None:
        committer, inbox = replica(cluster, clock, memory)
        cluster.calls_before_crash = crash_after
        for i in range(4):
            try:
                tallies = await committer.count(NAMESPACE, [docs(f"e{i}", i + 1), docs(None, 10)])
            except (Crash, NotStored):
                return
            requests.add(i)
            for t in tallies:
                acknowledged[t.name] += t.counted
            try:
                await inbox.fold_once()
            except Crash:
                return
    asyncio.run(scenario())
    return acknowledged, requests


@pytest.mark.parametrize("crash_after", range(16))
def test_a_crash_between_any_two_calls_loses_and_doubles_nothing_acknowledged(crash_after: int) -> None:
    cluster, clock, memory = setup_inbox()
    acknowledged, requests = _run_until_crash(cluster, clock, memory, crash_after)
    assert cluster.calls_before_crash is None  # it did crash there: every call of the protocol is crashed at

    async def restart() -> None:
        memory.refresh()
        committer, inbox = replica(cluster, clock, memory)  # a new incarnation: it finds A's objects
        await inbox.sweep()
        await inbox.fold_once()
        assert counters(cluster) == acknowledged
        assert cluster.config_maps == {}
        memory.refresh()
        for i in range(4):  # the senders retry the events with ids: those acknowledged count once
            await committer.count(NAMESPACE, [docs(f"e{i}", i + 1)])
        await inbox.fold_once()
        missed = sum(i + 1 for i in range(4) if i not in requests)
        assert counters(cluster) == {name: n + missed for name, n in acknowledged.items()}
    asyncio.run(restart())


def test_two_folders_at_once_count_each_entry_once() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, a = replica(cluster, clock, memory)
        await asyncio.gather(*(committer.count(NAMESPACE, [docs(None, 3)]) for _ in range(10)))
        _, b = replica(cluster, clock, Memory(cluster))
        await b.sweep()
        await asyncio.gather(a.fold_once(), b.fold_once())
        assert counters(cluster) == {"on-docs": 30, "also-docs": 30}
        assert cluster.config_maps == {}
    asyncio.run(scenario())


def test_an_object_stored_while_a_fold_is_under_way_is_folded_by_the_next_round_not_the_next_sweep() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        inbox._sweep_seconds = 3600.0  # only a stored object brings a round
        folder = asyncio.create_task(inbox.run())
        gate = cluster.pause_at("patch_trigger_status:answered")
        await committer.count(NAMESPACE, [docs("a")])
        while "patch_trigger_status:answered" in cluster.gates:  # the round's first write is under way
            await asyncio.sleep(0.01)
        await committer.count(NAMESPACE, [docs("b")])  # stored during the round
        gate.set()
        for _ in range(500):  # rounds are FOLD_EVERY_SECONDS apart; the bug waited for the hour's sweep
            if counters(cluster) == {"on-docs": 2, "also-docs": 2}:
                break
            await asyncio.sleep(0.01)
        folder.cancel()
        assert counters(cluster) == {"on-docs": 2, "also-docs": 2} and cluster.config_maps == {}
    asyncio.run(scenario())


# --- the review's findings (rev21i), each a behaviour --------------------------------------------

def keyed(cluster: FakeCluster, memory: Memory, name: str = "on-docs", namespace: str = NAMESPACE,
          group_by: str = "region") -> None:
    config: dict[str, Any] = {**EVENT_SPEC["scheduleConfig"], "groupBy": group_by}  # type: ignore[dict-item]
    cluster.apply_trigger(namespace, name, {**EVENT_SPEC, "scheduleConfig": config})
    memory.refresh()


def with_attrs(event_id: str, **attributes: str) -> Occurrence:
    ev = docs(event_id)
    return Occurrence(ev.type, ev.source, ev.id, 1, {**ev.attributes, **attributes})


def test_groupby_event_folded_by_its_own_replica_counts_for_its_key() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        keyed(cluster, memory)
        committer, inbox = replica(cluster, clock, memory)
        tally = {t.name: t for t in await committer.count(NAMESPACE, [with_attrs("a", region="eu")])}
        assert (tally["on-docs"].counted, tally["on-docs"].event_counter) == (1, 1)
        await inbox.fold_once()  # from memory: the object as a list would read it back
        status = cluster.status(NAMESPACE, "on-docs")
        assert status.get("eventCounter") == 1 and [r[0] for r in status["eventKeyState"]] == ["eu"]
        memory.refresh()
        assert (await committer.count(NAMESPACE, [with_attrs("a", region="eu")]))[0].duplicates == 1  # id kept
    asyncio.run(scenario())


def _slow_creates(cluster: FakeCluster, fail: bool) -> tuple[asyncio.Event, asyncio.Event]:
    """The next create waits for ``hold``, then fails (``fail``) or goes through; ``reached`` says it began."""
    hold, reached, real = asyncio.Event(), asyncio.Event(), cluster.create_config_map

    async def slow(namespace: str, body: Any) -> Any:
        cluster.create_config_map = real  # type: ignore[method-assign]
        reached.set()
        await hold.wait()
        if fail:
            raise TimeoutError("the API server did not answer")
        return await real(namespace, body)
    cluster.create_config_map = slow  # type: ignore[method-assign]
    return hold, reached


def test_a_retry_of_an_event_whose_create_failed_under_way_is_stored_itself_not_acknowledged_as_duplicate() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        hold, reached = _slow_creates(cluster, fail=True)
        first = asyncio.create_task(committer.count(NAMESPACE, [docs("X", 5)]))
        await reached.wait()
        retry = asyncio.create_task(committer.count(NAMESPACE, [docs("X", 5)]))  # the sender timed out, retried
        await asyncio.sleep(0)
        assert not retry.done()  # it waits for the first create's outcome
        hold.set()
        with pytest.raises(NotStored):
            await first
        tallies = await retry
        assert (tallies[0].counted, tallies[0].duplicates) == (5, 0)  # stored itself
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 5, "also-docs": 5}
    asyncio.run(scenario())


def test_a_retry_of_an_event_whose_create_succeeded_under_way_is_a_duplicate() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        hold, reached = _slow_creates(cluster, fail=False)
        first = asyncio.create_task(committer.count(NAMESPACE, [docs("X", 5)]))
        await reached.wait()
        retry = asyncio.create_task(committer.count(NAMESPACE, [docs("X", 5)]))
        hold.set()
        assert (await first)[0].counted == 5 and (await retry)[0].duplicates == 1
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 5, "also-docs": 5} and cluster.called("create_config_map") == 1
    asyncio.run(scenario())


def test_one_tenants_huge_group_value_neither_fails_another_tenants_commit_nor_enters_the_inbox() -> None:
    """The entry keeps key_of's value (at most 64 characters): a longer one counts for no key, as
    without the inbox, and weighs nothing in the object."""
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        keyed(cluster, memory, "keyed", "team-b")
        committer, inbox = replica(cluster, clock, memory)
        big = Occurrence(type="documents_added", source="//b", id="b1", count=1,
                         attributes={"type": "documents_added", "source": "//b", "collectionid": "col_abc",
                                     "region": "x" * 950_000})
        a, b = await asyncio.gather(committer.count(NAMESPACE, [docs("a1")]), committer.count("team-b", [big]))
        assert a[0].counted == 1 and (b[0].counted, b[0].ungrouped) == (0, 1)
        assert all(len(json.dumps(body)) < 2_000 for body in cluster.config_maps.values())
        await inbox.fold_once()
        assert counters(cluster)["on-docs"] == 1
        assert cluster.status("team-b", "keyed").get("eventKeyState") in (None, [])
    asyncio.run(scenario())


def test_a_defect_in_the_writer_fails_its_senders_with_503_and_the_next_commit_is_stored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Until issue 21's last change the writer task ended on any exception of its own, and every
    sender waiting on it, then every later one, waited for ever."""
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        one_object = rule.one_object
        monkeypatch.setattr(rule, "one_object", lambda rows: 1 / 0)
        failed = await asyncio.wait_for(asyncio.gather(committer.count(NAMESPACE, [docs("a")]),
                                                       return_exceptions=True), timeout=5)
        assert isinstance(failed[0], NotStored) and failed[0].public == "the events could not be stored; send again"
        [error] = await inbox.store([(("x", "y"), parse_spec(EVENT_SPEC), [docs("z")], 1, None)])
        # Handed over without its traceback (whose frames, a commit's text, would make a cycle).
        assert isinstance(error, ZeroDivisionError) and error.__traceback__ is None
        monkeypatch.setattr(rule, "one_object", one_object)
        [stored, _] = await asyncio.wait_for(committer.count(NAMESPACE, [docs("a")]), timeout=5)
        assert stored.counted == 1 and stored.duplicates == 0  # the failed one was never stored
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 1, "also-docs": 1} and inbox._waiting_events == 0
    asyncio.run(scenario())


@pytest.mark.parametrize(("row", "public"), [
    (lambda row: 1 / 0, "the events could not be stored; send again"),  # a defect: 503
    (lambda row: [*row[:3], [[row[3][0][0], 1, "\ud800"]], *row[4:]], "not UTF-8 text: surrogates not allowed"),
    (lambda row: [*row[:3], [["k", 1, None]]], "events[0]: key: not 11 base64url characters"),  # no read-back
])
def test_an_entry_the_writer_cannot_write_fails_its_own_sender_alone(monkeypatch: pytest.MonkeyPatch,
                                                                    row: Any, public: str) -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        entry_row = rule.entry_row
        monkeypatch.setattr(rule, "entry_row", lambda entry, spec: row(entry_row(entry, spec))
                            if entry.events[0].id == "bad" else entry_row(entry, spec))
        good, bad = await asyncio.gather(committer.count(NAMESPACE, [docs("good")]),
                                         committer.count(NAMESPACE, [docs("bad")]), return_exceptions=True)
        assert isinstance(bad, NotStored) and bad.public == public
        assert not isinstance(good, BaseException) and good[0].counted == 1
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 1, "also-docs": 1} and inbox._waiting_events == 0
    asyncio.run(scenario())


def test_a_request_with_more_events_than_the_inbox_holds_is_refused_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        monkeypatch.setattr("trigger_operator.intake.inbox.MAX_WAITING_EVENTS", 1)
        with pytest.raises(NotStored) as refused:  # one event, two Triggers: 2 entries' events
            await committer.count(NAMESPACE, [docs("a")])
        assert refused.value.public.endswith("above 1 the inbox holds: send fewer events per request")
        assert not cluster.config_maps and inbox._waiting_events == 0
    asyncio.run(scenario())


def test_a_request_past_the_waiting_bound_is_refused_whole_none_of_its_triggers_stored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not some of its Triggers stored and a 503 for the rest: a retry of events without an id
    would count those twice."""
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        monkeypatch.setattr("trigger_operator.intake.inbox.MAX_WAITING_EVENTS", 3)
        await committer.count(NAMESPACE, [docs("a")])  # 1 per Trigger: 2 waiting
        with pytest.raises(NotStored, match="events stored and not folded yet"):
            await committer.count(NAMESPACE, [docs("b")])  # 2 more: the first Trigger's alone would fit
        assert inbox._waiting_events == 2 and len(cluster.config_maps) == 1
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 1, "also-docs": 1}
    asyncio.run(scenario())


def test_an_entry_too_large_for_an_object_fails_its_own_sender_alone_naming_the_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        monkeypatch.setattr(rule, "MAX_OBJECT_BYTES", 2_000)
        many = [docs(f"m{i}") for i in range(100)]  # ~20 bytes each: 2 KB for each Trigger
        small, large = await asyncio.gather(committer.count(NAMESPACE, [docs("s")]), committer.count(NAMESPACE, many),
                                            return_exceptions=True)
        assert isinstance(large, NotStored) and "above 2000" in large.public and "fewer events" in large.public
        assert not isinstance(small, BaseException) and small[0].counted == 1
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 1, "also-docs": 1} and inbox._waiting_events == 0
    asyncio.run(scenario())


def test_events_for_a_deleted_trigger_are_not_counted_by_its_namesake() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        await committer.count(NAMESPACE, [docs("a", 70)])  # 202 for the old on-docs
        cluster.delete_trigger(NAMESPACE, "on-docs")
        cluster.apply_trigger(NAMESPACE, "on-docs", EVENT_SPEC)  # a new object (new uid), same name
        memory.refresh()
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 0, "also-docs": 70} and cluster.config_maps == {}
    asyncio.run(scenario())


def test_a_poisoned_inbox_object_is_refused_at_reading_and_does_not_stall_legit_entries() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        name = rule.object_name("f" * 12, 1)
        cluster.config_maps[INBOX_NS, name] = rule.manifest(
            name, "f" * 12, f'[["{NAMESPACE}","on-docs",{T0},[["a",1,null]]]]')
        cluster.config_maps[INBOX_NS, name]["metadata"]["namespace"] = INBOX_NS
        with pytest.raises(rule.InboxError, match=r"data\.entries\[0\]: events\[0\]: key"):
            rule.read_object(cluster.config_maps[INBOX_NS, name])
        await inbox.sweep()
        await committer.count(NAMESPACE, [docs("legit", 3)])
        await inbox.fold_once()
        assert counters(cluster) == {"on-docs": 3, "also-docs": 3}
    asyncio.run(scenario())


@pytest.mark.parametrize(("entries", "field"), [
    ('[["ns","t",1,[["AAAAAAAAAAA",0,null]]]]', r"events\[0\]: count"),
    ('[["ns","t",1,[["AAAAAAAAAAA",1,7]]]]', r"events\[0\]: group"),
    ('[["ns","t",1,[[null,1,"' + "x" * 65 + '"]]]]', r"events\[0\]: group"),
    ('[["ns","t",-1,[]]]', r"\[0\]: at"),
    ('[["","t",1,[]]]', r"\[0\]: namespace"),
    ('[["ns","t",1,[],5,null]]', r"\[0\]: uid"),
    ('{"x": 1}', "not a list of entries"),
])
def test_every_value_of_an_inbox_object_is_checked_and_named(entries: str, field: str) -> None:
    body = {"metadata": {"name": rule.object_name("b" * 12, 3)}, "data": {"entries": entries}}
    with pytest.raises(rule.InboxError, match=field):
        rule.read_object(body)


def test_an_unreadable_inbox_folded_is_named() -> None:
    with pytest.raises(rule.InboxError, match=r"status\.inboxFolded\['x'\]"):
        rule.fold(TriggerStatus(inbox_folded={"x": []}), SPEC, [], T0)


def test_a_fold_refused_for_good_drops_its_entries_after_bounded_rounds_with_a_warning_and_a_metric() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, inbox = replica(cluster, clock, memory)
        metrics = Metrics()
        inbox._metrics = metrics
        cluster.max_patch_bytes = 10  # the API server refuses the status write (413)
        await committer.count(NAMESPACE, [docs("e", 4)])
        for _ in range(MAX_REFUSALS - 1):
            await inbox.fold_once()
        assert len(cluster.config_maps) == 1 and inbox._waiting_events == 2  # still tried
        await inbox.fold_once()
        assert cluster.config_maps == {} and inbox._waiting_events == 0 and counters(cluster)["on-docs"] == 0
        assert sorted(n.reason for n in cluster.events) == ["InboxEventsDropped"] * 2
        assert "4 acknowledged event(s) were not counted" in cluster.events[0].message
        assert metrics.registry.get_sample_value("trigger_operator_events_total", {"result": "inbox_dropped"}) == 8
    asyncio.run(scenario())


def test_a_bad_inbox_folded_on_one_trigger_blocks_only_that_trigger() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        cluster.triggers[NAMESPACE, "on-docs"].setdefault("status", {})["inboxFolded"] = {"x": []}
        memory.refresh()
        committer, inbox = replica(cluster, clock, memory)
        await committer.count(NAMESPACE, [docs("e", 2)])
        await inbox.fold_once()
        assert counters(cluster)["also-docs"] == 2 and cluster.events == []
        for _ in range(MAX_REFUSALS - 1):
            await inbox.fold_once()
        assert [n.reason for n in cluster.events] == ["InboxEventsDropped"] and cluster.config_maps == {}
    asyncio.run(scenario())


def test_groupby_changed_between_store_and_fold_does_not_relabel_values() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        keyed(cluster, memory)
        committer, _ = replica(cluster, clock, memory)
        await committer.count(NAMESPACE, [with_attrs("a", region="eu", customer="acme")])
        body = cluster.triggers[NAMESPACE, "on-docs"]
        body["spec"]["scheduleConfig"]["groupBy"] = "customer"
        body["metadata"]["generation"] = 2
        _, other = replica(cluster, clock, Memory(cluster))  # replica A crashed; B folds from a list
        await other.sweep()
        await other.fold_once()
        status = cluster.status(NAMESPACE, "on-docs")
        assert not status.get("eventKeyState") and status.get("eventCounter", 0) == 0  # ungrouped, not "eu"
    asyncio.run(scenario())


def test_a_sweep_takes_in_a_bounded_number_of_objects_lowest_first_and_forgets_those_deleted_elsewhere() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup_inbox()
        committer, a = replica(cluster, clock, memory)
        for i in range(MAX_SWEPT_OBJECTS + 3):
            await committer.count(NAMESPACE, [docs(f"e{i}")])
        _, b = replica(cluster, clock, Memory(cluster))
        await b.sweep()
        assert len(b._known) == MAX_SWEPT_OBJECTS and b._more
        assert max(k.obj.seq for k in b._known.values()) == MAX_SWEPT_OBJECTS  # a prefix of A's objects
        await a.fold_once()  # A folds and deletes them all
        await b.sweep()
        assert b._known == {} and not b._more
        assert counters(cluster) == {"on-docs": MAX_SWEPT_OBJECTS + 3, "also-docs": MAX_SWEPT_OBJECTS + 3}
    asyncio.run(scenario())

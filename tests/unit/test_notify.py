"""Outbound notifications' pure rules (core/outbox.py, model/notify.py): which events a pass makes and
their ids, the outbox's bounds, the signature, the retry schedule and when an event is given up."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from tests.unit.conftest import TRIGGER_NAME, TRIGGER_UID, at, interval_spec, job_view, trigger_view
from trigger_operator.admission.approval import notifications_refusal, sign, signing_subject, subject
from trigger_operator.api import ANNOTATION_NOTIFICATIONS_APPROVAL, ANNOTATION_SOURCE_APPROVAL
from trigger_operator.core.outbox import (
    DEAD_LETTERS_KEPT,
    OUTBOX_FULL,
    OUTBOX_MAX,
    Event,
    Outbox,
    Settled,
    SigningKeyError,
    backoff,
    cloudevent,
    derive,
    enqueue,
    finalizer_verdict,
    given_up,
    headers,
    settle,
    signature,
    signing_key,
)
from trigger_operator.core.plan import Observed
from trigger_operator.core.reconcile import reconcile, refused_creates
from trigger_operator.jobs.observe import JobPhase
from trigger_operator.model.notify import Notifications, NotificationType, SigningSecretRef, Sink
from trigger_operator.model.spec import ConditionSource, SecretKeyRef, SpecError, parse_spec
from trigger_operator.model.status import ActiveRun, Execution, Outcome, Phase, RunKind, TriggerStatus, token_hash
from trigger_operator.plugin.views import describe

T = NotificationType
SINK_A, SINK_B = {"uri": "https://a.example.com/hook"}, {"ref": {"name": "receiver", "port": 8080}}
NOTIFY = {"sinks": [SINK_A, SINK_B], "signingSecretRef": {"name": "hook-key", "key": "key"}}
BOTH = Notifications.model_validate(NOTIFY)
KEYS = BOTH.sink_keys()


def spec_with(notifications: dict[str, Any] | None = NOTIFY, **more: Any) -> dict[str, Any]:
    return {**interval_spec(60), **({"notifications": notifications} if notifications else {}), **more}


# --- the spec -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("notifications", "says"), [
    pytest.param({"sinks": []}, "spec.notifications.sinks", id="no-sink"),
    pytest.param({"sinks": [SINK_A] * 5}, "spec.notifications.sinks", id="five-sinks"),
    pytest.param({"sinks": [{}]}, "spec.notifications.sinks.0: Value error, exactly one of uri and ref", id="none"),
    pytest.param({"sinks": [{**SINK_A, **SINK_B}]}, "exactly one of uri and ref is required, found both", id="both"),
    pytest.param({"sinks": [{"uri": "ftp://a.example.com/"}]}, "spec.notifications.sinks.0.uri", id="scheme"),
    pytest.param({"sinks": [{"uri": "https://u:p@a.example.com/"}]}, "must not carry user information", id="user"),
    pytest.param({"sinks": [{"uri": "https://a.example.com/#x"}]}, "must not have a fragment", id="fragment"),
    pytest.param({"sinks": [{"ref": {"name": "Receiver"}}]}, "spec.notifications.sinks.0.ref.name", id="svc-name"),
    pytest.param({"sinks": [{"ref": {"name": "r", "namespace": "other"}}]}, "sinks.0.ref.namespace",
                 id="other-namespace"),
    pytest.param({"sinks": [SINK_A], "types": ["trigger.exploded"]}, "spec.notifications.types.0", id="type"),
    pytest.param({"sinks": [SINK_A], "signingSecretRef": {"name": "k"}}, "signingSecretRef.key", id="key"),
])
def test_bad_notifications_are_refused_naming_the_field(notifications: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(spec_with(notifications))
    assert says in str(refused.value)


def test_a_sink_takes_knatives_defaults_and_all_eight_types_are_the_default() -> None:
    parsed = parse_spec(spec_with({"sinks": [{"ref": {"name": "receiver"}}]})).notifications
    assert parsed is not None and parsed.types == tuple(NotificationType) and len(parsed.types) == 8
    ref = parsed.sinks[0].ref
    assert ref is not None and (ref.kind, ref.port, ref.path) == ("Service", 80, "/")


def test_the_signing_secret_reference_is_bounded_as_the_token_secrets() -> None:
    assert SigningSecretRef.model_json_schema()["properties"] == SecretKeyRef.model_json_schema()["properties"]


# --- which events a pass makes --------------------------------------------------------------------------

RUN = ActiveRun("t-1", RunKind.SCHEDULED, at(), at())
DONE = Execution("t-1", RunKind.SCHEDULED, at(), Outcome.SUCCEEDED, at(minutes=1), at())
ACTIVE = TriggerStatus(phase=Phase.ACTIVE, observed_generation=1)


@pytest.mark.parametrize(("before", "after", "generation", "finished", "expected"), [
    pytest.param(TriggerStatus(), ACTIVE, 1, (), [(T.CREATED, "created")], id="created"),
    pytest.param(TriggerStatus(), dataclasses.replace(ACTIVE, phase=Phase.PAUSED), 1, (), [(T.CREATED, "created")],
                 id="created-paused-is-only-created"),
    pytest.param(ACTIVE, ACTIVE, 1, (), [], id="nothing-new"),
    pytest.param(ACTIVE, ACTIVE, 2, (), [(T.UPDATED, "updated.2")], id="updated"),
    pytest.param(ACTIVE, dataclasses.replace(ACTIVE, phase=Phase.PAUSED), 2, (), [(T.PAUSED, "paused.2")],
                 id="paused-not-also-updated"),
    pytest.param(dataclasses.replace(ACTIVE, phase=Phase.PAUSED), ACTIVE, 3, (), [(T.RESUMED, "resumed.3")],
                 id="resumed"),
    pytest.param(dataclasses.replace(ACTIVE, phase=Phase.FAILED), dataclasses.replace(ACTIVE, last_resume_token="r1"),
                 1, (), [(T.RESUMED, f"resumed.1.{token_hash('r1')}")], id="resumed-from-failed-by-token"),
    pytest.param(ACTIVE, dataclasses.replace(ACTIVE, active=(RUN,)), 1, (), [(T.FIRED, "fired.t-1")], id="fired"),
    pytest.param(dataclasses.replace(ACTIVE, active=(RUN,)), dataclasses.replace(ACTIVE, active=(RUN,)), 1, (), [],
                 id="still-running-is-no-new-fire"),
    pytest.param(dataclasses.replace(ACTIVE, active=(RUN,)), ACTIVE, 1, (DONE,),
                 [(T.EXECUTION_COMPLETED, "execution.completed.t-1")], id="completed"),
    *[pytest.param(dataclasses.replace(ACTIVE, active=(RUN,)), ACTIVE, 1,
                   (dataclasses.replace(DONE, outcome=outcome),), [(T.EXECUTION_FAILED, "execution.failed.t-1")],
                   id=f"not-completed-{outcome.value}")
      for outcome in (Outcome.FAILED, Outcome.LOST, Outcome.REPLACED)],
])
def test_a_pass_makes_the_events_of_its_transitions_with_ids_of_durable_facts(
        before: TriggerStatus, after: TriggerStatus, generation: int, finished: tuple[Execution, ...],
        expected: list[tuple[NotificationType, str]]) -> None:
    o = Observed(trigger_view(spec=spec_with(), status=before, generation=generation), {}, at())
    made = derive(o, after, finished, parse_spec(spec_with()))
    assert [(e.type, e.id) for e in made] == [(kind, f"{TRIGGER_UID}.{suffix}") for kind, suffix in expected]
    again = derive(o, after, finished, parse_spec(spec_with()))
    assert [e.id for e in again] == [e.id for e in made]  # the same facts: the same ids


def test_an_events_data_is_the_seeds_webhook_payload() -> None:
    failed = dataclasses.replace(DONE, outcome=Outcome.FAILED, error="x" * 1000)
    o = Observed(trigger_view(spec=spec_with(), status=dataclasses.replace(ACTIVE, active=(RUN,))), {}, at())
    [event] = derive(o, ACTIVE, (failed,), parse_spec(spec_with()))
    assert event.data["trigger_id"] == TRIGGER_NAME and event.data["status"] == "active"
    assert (event.data["job_name"], event.data["outcome"], event.data["duration_ms"]) == ("t-1", "Failed", 60000)
    assert len(event.data["error"]) == 256  # cut: status holds many events


def test_a_reconcile_pass_records_its_events_in_its_own_status_write() -> None:
    """Created on the first pass, fired when a run starts, completed when it is counted: each in the
    patch of the pass that stores its cause (no write of its own)."""
    first = reconcile(trigger_view(spec=spec_with()), {}, {}, at())
    pending = first.patch["notifications"]["pending"]
    assert [(e["type"], e["sinks"]) for e in pending] == [("trigger.created", list(KEYS))]
    ran = trigger_view(spec=spec_with(), status=first.status, created_at=at(minutes=-5))
    fired = reconcile(ran, {}, {}, at(minutes=1))
    assert [new.run.name for new in fired.create]
    name = fired.create[0].run.name
    assert [e["id"] for e in fired.patch["notifications"]["pending"]] == [
        f"{TRIGGER_UID}.created", f"{TRIGGER_UID}.fired.{name}"]
    done = reconcile(dataclasses.replace(ran, status=fired.status),
                     {name: job_view(name, JobPhase.SUCCEEDED, started_at=at(minutes=1), finished_at=at(minutes=2))},
                     {}, at(minutes=2))
    assert [e["type"] for e in done.patch["notifications"]["pending"]][-1] == "trigger.execution.completed"


def test_a_trigger_without_notifications_writes_no_outbox_and_dropping_them_empties_it() -> None:
    plain = reconcile(trigger_view(spec=spec_with(None)), {}, {}, at())
    assert "notifications" not in plain.patch and plain.status.notifications is None
    first = reconcile(trigger_view(spec=spec_with()), {}, {}, at())
    dropped = reconcile(trigger_view(spec=spec_with(None), status=first.status, generation=2), {}, {}, at())
    assert dropped.status.notifications is None and dropped.patch["notifications"] is None


# --- the outbox -------------------------------------------------------------------------------------------


def event(n: int, kind: NotificationType = T.FIRED, sinks: tuple[str, ...] = ()) -> Event:
    return Event(f"u.fired.t-{n}", kind, at(seconds=n), {"trigger_id": "t"}, sinks)


def test_the_outbox_is_bounded_and_the_oldest_beyond_it_are_dead_lettered_per_sink() -> None:
    full, letters = enqueue(Outbox(), [event(n) for n in range(OUTBOX_MAX + 3)], BOTH, at())
    assert len(full.pending) == OUTBOX_MAX and full.pending[0].id == "u.fired.t-3"
    assert [(d.id, d.reason) for d in letters] == [(f"u.fired.t-{n}", OUTBOX_FULL) for n in range(3) for _ in KEYS]
    assert [d.sink for d in letters[:2]] == ["https://a.example.com/hook", "Service receiver:8080/"]
    more, _ = enqueue(full, [event(n) for n in range(200, 200 + DEAD_LETTERS_KEPT)], BOTH, at())
    assert len(more.dead_letters) == DEAD_LETTERS_KEPT  # the newest letters only


def test_a_pass_overflowing_the_outbox_posts_one_warning_for_all_it_dropped() -> None:
    """Many events at once (e.g. a thousand keys firing) must not post one Warning per dead letter."""
    first = reconcile(trigger_view(spec=spec_with()), {}, {}, at())
    full = Outbox(tuple(event(n, sinks=KEYS) for n in range(OUTBOX_MAX))).to_status()
    stored = dataclasses.replace(first.status, notifications=full)
    edited = reconcile(trigger_view(spec=spec_with(), status=stored, generation=2), {}, {}, at())
    assert [e["id"] for e in edited.patch["notifications"]["pending"]][-1] == f"{TRIGGER_UID}.updated.2"
    [notice] = [n for n in edited.notices if n.reason == "NotificationDeadLettered"]
    assert notice.message == f"1 events dropped (2 dead letters, one per event and sink): {OUTBOX_FULL}"
    assert len(edited.patch["notifications"]["deadLetters"]) == 2  # status still names each


def test_the_outbox_adds_an_id_once_keeps_only_wanted_types_and_sinks_still_named() -> None:
    only_fired = Notifications.model_validate({**NOTIFY, "types": ["trigger.fired"]})
    box, _ = enqueue(Outbox(), [event(1), event(1), event(2, T.UPDATED)], only_fired, at())
    assert [(e.id, e.sinks) for e in box.pending] == [("u.fired.t-1", KEYS)]
    one_sink = Notifications.model_validate({**NOTIFY, "sinks": [SINK_B]})
    narrowed, letters = enqueue(box, [], one_sink, at())
    assert [e.sinks for e in narrowed.pending] == [(KEYS[1],)] and letters == []
    gone, _ = enqueue(narrowed, [], Notifications.model_validate({"sinks": [{"uri": "https://c.example.com/"}]}),
                      at())
    assert gone.pending == ()  # taken out of the spec: dropped, not dead-lettered


def test_settling_removes_acknowledged_pairs_and_buries_dead_ones() -> None:
    box = Outbox((event(1, sinks=KEYS), event(2, sinks=KEYS)))
    done = Settled(frozenset({("u.fired.t-1", KEYS[0]), ("u.fired.t-1", KEYS[1]), ("u.fired.t-2", KEYS[0])}),
                   (("u.fired.t-2", KEYS[1], "the sink answered HTTP 410"),))
    after, letters = settle(box, done, BOTH, at())
    assert after.pending == () and [(d.id, d.sink, d.reason) for d in letters] == [
        ("u.fired.t-2", "Service receiver:8080/", "the sink answered HTTP 410")]
    partly, _ = settle(box, Settled(frozenset({("u.fired.t-1", KEYS[0])})), BOTH, at())
    assert [(e.id, e.sinks) for e in partly.pending] == [("u.fired.t-1", (KEYS[1],)), ("u.fired.t-2", KEYS)]
    assert Outbox.of(TriggerStatus(notifications=partly.to_status())) == partly  # round trip through status


def test_an_outbox_edited_into_nonsense_reads_as_empty() -> None:
    assert Outbox.of(TriggerStatus(notifications={"pending": [{"id": "x"}]})) == Outbox()


# --- delivery rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "seconds"), [
    (0, 0), (1, 1), (2, 2), (3, 4), (5, 16), (10, 512), (11, 600), (60, 600),
])
def test_a_sink_backs_off_exponentially_from_one_second_to_ten_minutes(failures: int, seconds: int) -> None:
    assert backoff(failures) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(("status", "age", "final"), [
    (500, dt.timedelta(hours=1), None),
    (None, dt.timedelta(hours=23, minutes=59), None),
    (408, dt.timedelta(0), None),
    (429, dt.timedelta(0), None),
    (400, dt.timedelta(0), "the sink answered HTTP 400"),
    (404, dt.timedelta(0), "the sink answered HTTP 404"),
    (410, dt.timedelta(0), "the sink answered HTTP 410"),
    (503, dt.timedelta(hours=24), "not delivered within 24 h (last: HTTP 503)"),
    (None, dt.timedelta(hours=30), "not delivered within 24 h (last: no answer)"),
])
def test_a_final_4xx_or_a_day_of_failures_gives_an_event_up(status: int | None, age: dt.timedelta,
                                                            final: str | None) -> None:
    assert given_up(status, at(), at() + age) == final


def test_the_signature_is_standard_webhooks_reference_vector() -> None:
    """The Standard Webhooks specification's own example (secret, id, timestamp, payload, signature)."""
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(("text", "says"), [
    ("whsec_not base64!", "is not whsec_ followed by base64"),
    ("whsec_c2hvcnQ=", "decodes to 5 bytes"),
])
def test_a_key_that_is_no_standard_webhooks_key_is_refused_without_quoting_it(text: str, says: str) -> None:
    with pytest.raises(SigningKeyError) as refused:
        signing_key(text)
    assert says in str(refused.value) and text.removeprefix("whsec_") not in str(refused.value)


def test_an_event_is_a_structured_cloudevent_with_the_webhook_headers() -> None:
    sent = event(7, sinks=KEYS)
    body = cloudevent(sent, "team-a", "nightly")
    assert body == cloudevent(sent, "team-a", "nightly")  # a re-send is byte for byte the first
    parsed = json.loads(body)
    assert parsed == {"specversion": "1.0", "id": "u.fired.t-7", "type": "trigger.fired", "subject": "nightly",
                      "source": "/apis/trigger-operator.io/v1alpha1/namespaces/team-a/triggers/nightly",
                      "time": "2026-03-02T10:00:07Z", "datacontenttype": "application/json",
                      "data": {"trigger_id": "t"}}
    key = b"k" * 32
    signed = headers(sent, body, key, at())
    assert signed["Content-Type"] == "application/cloudevents+json"
    assert (signed["webhook-id"], signed["webhook-timestamp"]) == ("u.fired.t-7", str(int(at().timestamp())))
    assert signed["webhook-signature"] == signature(key, "u.fired.t-7", int(at().timestamp()), body)
    assert "webhook-signature" not in headers(sent, body, None, at())  # no key: unsigned, as documented


# --- the signing Secret's approval ---------------------------------------------------------------------------


def body_with(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": "team-a", "name": "t", "annotations": annotations}}


def test_the_signing_secret_is_read_only_with_its_own_approval() -> None:
    key, by = b"a" * 32, "0" * 32
    approved = signing_subject(BOTH)
    assert approved is not None
    good = sign(key, "team-a", "t", approved, by)
    assert notifications_refusal(body_with({ANNOTATION_NOTIFICATIONS_APPROVAL: good}), BOTH, key, True) is None
    assert notifications_refusal(body_with({}), BOTH, key, False) is None  # approvals off
    # A source approval of the same Secret is no approval to sign with it (another subject), nor is
    # another Trigger's, nor one for another Secret.
    token = subject(ConditionSource.model_validate(
        {"http": {"url": "https://m.example.com/", "tokenSecret": {"name": "hook-key", "key": "key"}}}))
    assert token is not None
    for wrong in ({ANNOTATION_NOTIFICATIONS_APPROVAL: sign(key, "team-a", "t", token, by)},
                  {ANNOTATION_SOURCE_APPROVAL: good},
                  {ANNOTATION_NOTIFICATIONS_APPROVAL: sign(key, "team-a", "other", approved, by)}):
        refused = notifications_refusal(body_with(wrong), BOTH, key, True)
        assert refused is not None and refused.startswith("spec.notifications.signingSecretRef: not approved")
    other = Notifications.model_validate({**NOTIFY, "signingSecretRef": {"name": "their-key", "key": "key"}})
    assert notifications_refusal(body_with({ANNOTATION_NOTIFICATIONS_APPROVAL: good}), other, key, True) is not None
    assert notifications_refusal(body_with({}), Notifications.model_validate({"sinks": [SINK_A]}), key, True) is None
    assert isinstance(Sink.model_validate(SINK_A).key(), str)


# --- trigger.deleted, durable by the notify finalizer --------------------------------------------------

DELETED_ID = f"{TRIGGER_UID}.deleted"
WITH_DELETED = Outbox((event(1, sinks=KEYS), Event(DELETED_ID, T.DELETED, at(), {}, KEYS)))
FIRED_ONLY = Outbox((event(1, sinks=KEYS),))
GRACE = dt.timedelta(minutes=10)
NO_DELETED = Notifications.model_validate({**NOTIFY, "types": ["trigger.fired"]})


@pytest.mark.parametrize(("notifications", "deleting", "before", "after", "now", "verdict"), [
    pytest.param(BOTH, None, FIRED_ONLY, Outbox(), at(), None, id="live-keeps-it"),
    pytest.param(None, None, FIRED_ONLY, FIRED_ONLY, at(), "spec.notifications was removed", id="removed"),
    pytest.param(None, at(), WITH_DELETED, WITH_DELETED, at(), "spec.notifications was removed",
                 id="removed-while-deleting"),
    pytest.param(BOTH, at(), Outbox(), Outbox(), at(), None, id="deleted-not-recorded-yet"),
    pytest.param(BOTH, at(), WITH_DELETED, WITH_DELETED, at(minutes=9), None, id="still-owed"),
    pytest.param(BOTH, at(), WITH_DELETED, Outbox((WITH_DELETED.pending[1],)), at(), None,
                 id="older-delivered-deleted-still-owed"),
    pytest.param(BOTH, at(), WITH_DELETED, Outbox((dataclasses.replace(WITH_DELETED.pending[1], sinks=KEYS[1:]),)),
                 at(), None, id="one-sink-of-two-acknowledged"),
    pytest.param(BOTH, at(), WITH_DELETED, Outbox(), at(), "trigger.deleted was delivered or given up",
                 id="delivered"),
    pytest.param(BOTH, at(), WITH_DELETED, WITH_DELETED, at(minutes=10), "the deletion grace (10 min) passed",
                 id="grace"),
    pytest.param(NO_DELETED, at(), FIRED_ONLY, FIRED_ONLY, at(), None, id="unwanted-deleted-waits-for-the-rest"),
    pytest.param(NO_DELETED, at(), FIRED_ONLY, Outbox(), at(), "every event was delivered or given up",
                 id="unwanted-deleted-nothing-left"),
])
def test_the_notify_finalizer_comes_off_when_trigger_deleted_is_done_or_the_grace_passed(
        notifications: Notifications | None, deleting: dt.datetime | None, before: Outbox, after: Outbox,
        now: dt.datetime, verdict: str | None) -> None:
    assert finalizer_verdict(notifications, TRIGGER_UID, deleting, before, after, now, GRACE) == verdict


def test_a_deleted_trigger_records_trigger_deleted_last_counts_its_runs_and_starts_nothing() -> None:
    live = reconcile(trigger_view(spec=spec_with(), created_at=at(minutes=-5)), {}, {}, at(minutes=1))
    [new] = live.create
    name = new.run.name
    held = dataclasses.replace(trigger_view(spec=spec_with(), status=live.status, created_at=at(minutes=-5)),
                               deleting_since=at(minutes=2))
    plan = reconcile(held, {name: job_view(name)}, {}, at(minutes=5))  # a moment is due: not run
    assert plan.create == () and [e["type"] for e in plan.patch["notifications"]["pending"]][-1] == "trigger.deleted"
    finished = reconcile(dataclasses.replace(held, status=plan.status),
                         {name: job_view(name, JobPhase.SUCCEEDED, started_at=at(minutes=1),
                                         finished_at=at(minutes=6))}, {}, at(minutes=6))
    pending = [(e["type"], e["id"]) for e in finished.patch["notifications"]["pending"]]
    assert pending[-2:] == [("trigger.execution.completed", f"{TRIGGER_UID}.execution.completed.{name}"),
                            ("trigger.deleted", DELETED_ID)]  # still last: it is sent after everything
    assert [e["id"] for e in finished.patch["notifications"]["pending"]].count(DELETED_ID) == 1
    assert finished.create == () and finished.status.execution_count == 1


def test_a_job_the_api_server_refuses_for_good_is_reported_as_trigger_execution_failed() -> None:
    first = reconcile(trigger_view(spec=spec_with(), created_at=at(minutes=-5)), {}, {}, at(minutes=1))
    [new] = first.create
    name = new.run.name
    # a new generation not yet reconciled: refused_creates decides nothing about it, so reports no update
    seen = trigger_view(spec=spec_with(), status=first.status, created_at=at(minutes=-5), generation=2)
    plan = refused_creates(seen, {name: "spec.template: Invalid value"}, at(minutes=1, seconds=1))
    pending = plan.patch["notifications"]["pending"]
    assert [(e["type"], e["id"]) for e in pending][-1] == ("trigger.execution.failed",
                                                         f"{TRIGGER_UID}.execution.failed.{name}")
    assert [e["type"] for e in pending].count("trigger.updated") == 0
    failed = pending[-1]["data"]
    assert failed["outcome"] == "Failed" and "the API server refused Job" in failed["error"]
    without = refused_creates(dataclasses.replace(seen, spec=spec_with(None)), {name: "refused"}, at(minutes=1))
    assert without.status.notifications is None  # no notifications: nothing recorded


def test_describe_shows_the_sinks_what_is_owed_and_the_newest_dead_letters() -> None:
    letters = [{"id": f"u.fired.t-{n}", "type": "trigger.fired", "sink": "https://a.example.com/hook",
                "reason": f"the sink answered HTTP 41{n}", "at": "2026-03-02T10:00:00Z"} for n in range(7)]
    status = {"phase": "Active", "observedGeneration": 1,
              "notifications": {"pending": [event(1, sinks=KEYS).to_dict()], "deadLetters": letters}}
    body = {"metadata": {"name": "t", "namespace": "team-a", "creationTimestamp": "2026-03-02T09:00:00Z"},
            "spec": spec_with(), "status": status}
    text = describe(body, [], [], at(hours=100))
    section = text.split("Notifications:\n", 1)[1].split("\nJobs:", 1)[0]
    assert "Sinks:" in section and "https://a.example.com/hook, Service receiver:8080/" in section
    assert "all eight" in section and "with Secret hook-key key key" in section
    assert "1 event(s) still owed" in section
    assert "Dead letters (7 kept, newest last):" in section
    assert "HTTP 416" in section and "HTTP 412" in section and "HTTP 411" not in section  # the newest 5
    plain = {**body, "spec": spec_with(None), "status": {"phase": "Active", "observedGeneration": 1}}
    assert "Notifications:" not in describe(plain, [], [], at())


def test_the_notifier_reads_only_the_triggers_that_concern_it_as_the_store_changes() -> None:
    """Its tick (every second) reads these, not all 5,000 Triggers of an idle operator."""
    from trigger_operator.api import FINALIZER_NOTIFY
    from trigger_operator.controller.store import Store
    from trigger_operator.notify.notifier import Concerned

    def body(name: str, uid: str, spec: dict[str, Any], status: dict[str, Any] | None = None,
             finalizers: tuple[str, ...] = ()) -> dict[str, Any]:
        return {"metadata": {"namespace": "team-a", "name": name, "uid": uid, "resourceVersion": uid + "1",
                             "generation": 1, "finalizers": list(finalizers)}, "spec": spec, "status": status or {}}

    store = Store(None, lambda key: None)  # type: ignore[arg-type]  # no API call on these paths
    sink = {"sinks": [{"uri": "https://hooks.example.com/x"}]}
    store.on_trigger("ADDED", body("plain", "u1", interval_spec(60)))
    store.on_trigger("ADDED", body("told", "u2", {**interval_spec(60), "notifications": sink}))
    concerned = Concerned()
    store.follow_triggers(concerned.changed)  # told of those held already
    assert [b["metadata"]["name"] for b in concerned()] == ["told"]
    store.on_trigger("MODIFIED", body("plain", "u1", interval_spec(60), {"notifications": {"pending": [["e", "s"]]}}))
    store.on_trigger("MODIFIED", body("told", "u2", interval_spec(60)))  # notifications removed, nothing owed
    assert [b["metadata"]["name"] for b in concerned()] == ["plain"]
    store.on_trigger("ADDED", body("held", "u3", interval_spec(60), finalizers=(FINALIZER_NOTIFY,)))
    store.on_trigger("DELETED", body("plain", "u1", interval_spec(60)))
    assert [b["metadata"]["name"] for b in concerned()] == ["held"]

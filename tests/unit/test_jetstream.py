"""The JetStream intake's pure parts (a subject's namespace, a message read as an event, outcomes)
and its batch handling: acknowledged only once stored, malformed terminated, foreign subjects
dropped, a failed store redelivered. The committer is the real one over the fake API."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.conftest import NAMESPACE, at
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_controller import Clock
from tests.unit.test_intake import EVENT_SPEC, Memory
from trigger_operator.config import ConfigurationError, JetStreamSettings, OperatorConfig
from trigger_operator.events.cloudevents import EventError
from trigger_operator.intake.committer import NotStored
from trigger_operator.intake.jetstream import JetStreamIntake, namespace_of_subject, read_message
from trigger_operator.metrics import Metrics

SETTINGS = JetStreamSettings(url="nats://127.0.0.1:4222", stream="EVENTS")


@pytest.mark.parametrize(("subject", "namespace"), [
    ("trigger-events.team-a", "team-a"),
    ("trigger-events.a", "a"),
    ("trigger-events.team-a.extra", None),  # deeper than <prefix>.<namespace>
    ("trigger-events.Team-A", None),  # not a namespace's name
    ("trigger-events.-a", None),
    ("trigger-events." + "a" * 64, None),  # 64 characters: too long
    ("trigger-events.", None),
    ("other.team-a", None),
    ("trigger-events", None),
    ("x.trigger-events.team-a", None),
])
def test_a_subject_names_a_namespace_only_as_prefix_dot_namespace(subject: str, namespace: str | None) -> None:
    assert namespace_of_subject(subject, "trigger-events") == namespace


def test_a_dotted_prefix_is_one_prefix() -> None:
    assert namespace_of_subject("acme.events.team-a", "acme.events") == "team-a"
    assert namespace_of_subject("acme.team-a", "acme.events") is None


def cloudevent(**attributes: Any) -> bytes:
    return json.dumps({"specversion": "1.0", "type": "documents_added", **attributes}).encode()


def test_a_structured_cloudevent_keeps_its_own_id_and_source() -> None:
    event = read_message(cloudevent(id="e1", source="//ingest", collectionid="col_abc", count=3), None, "EVENTS", 7)
    assert (event.type, event.source, event.id, event.count, event.collection_id) == (
        "documents_added", "//ingest", "e1", 3, "col_abc")


def test_without_an_id_a_message_is_named_by_its_stream_sequence_so_a_redelivery_is_the_same_event() -> None:
    event = read_message(cloudevent(), None, "EVENTS", 42)
    assert (event.id, event.source) == ("EVENTS:42", "nats://EVENTS")
    again = read_message(cloudevent(), None, "EVENTS", 42)
    assert (again.id, again.source) == (event.id, event.source)
    assert read_message(cloudevent(), None, "EVENTS", 43).id == "EVENTS:43"
    assert read_message(cloudevent(source="//mine"), None, "EVENTS", 42).source == "//mine"


def test_binary_mode_reads_the_ce_headers() -> None:
    headers = {"ce-specversion": "1.0", "ce-type": "documents_added", "ce-collectionid": "col_abc", "ce-count": "2"}
    event = read_message(b"anything", headers, "EVENTS", 5)
    assert (event.type, event.id, event.source, event.count, event.collection_id) == (
        "documents_added", "EVENTS:5", "nats://EVENTS", 2, "col_abc")
    assert read_message(b"", {**headers, "Ce-Id": "x", "ce-source": "//s"}, "EVENTS", 5).id == "x"


@pytest.mark.parametrize(("data", "field_"), [
    (b"not json", "body"),
    (b"[1, 2]", "body"),
    (json.dumps({"type": "t"}).encode(), "body.specversion"),
    (cloudevent(count=0), "body.count"),
    (json.dumps({"specversion": "1.0"}).encode(), "body.type"),
])
def test_a_malformed_message_is_refused_naming_the_field(data: bytes, field_: str) -> None:
    with pytest.raises(EventError) as error:
        read_message(data, None, "EVENTS", 1)
    assert field_ in str(error.value)


@pytest.mark.parametrize(("env", "named"), [
    ({"TRIGGER_OPERATOR_JETSTREAM_SUBJECT_PREFIX": "events.>"}, "TRIGGER_OPERATOR_JETSTREAM_SUBJECT_PREFIX"),
    ({"TRIGGER_OPERATOR_JETSTREAM_SUBJECT_PREFIX": "a..b"}, "TRIGGER_OPERATOR_JETSTREAM_SUBJECT_PREFIX"),
    ({"TRIGGER_OPERATOR_JETSTREAM_STREAM": "a.b"}, "TRIGGER_OPERATOR_JETSTREAM_STREAM"),
    ({"TRIGGER_OPERATOR_JETSTREAM_BATCH": "0"}, "TRIGGER_OPERATOR_JETSTREAM_BATCH"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        OperatorConfig.from_env(env)


def test_settings_are_read_from_the_environment_and_off_by_default() -> None:
    assert OperatorConfig.from_env({}).jetstream.url == ""
    config = OperatorConfig.from_env({"TRIGGER_OPERATOR_JETSTREAM_URL": "nats://n:4222",
                                      "TRIGGER_OPERATOR_JETSTREAM_STREAM": "EVENTS",
                                      "TRIGGER_OPERATOR_JETSTREAM_ACK_WAIT_SECONDS": "5"}).jetstream
    assert (config.stream, config.ack_wait_seconds, config.batch, config.subject_prefix) == (
        "EVENTS", 5.0, 500, "trigger-events")


def test_more_unacknowledged_messages_than_a_trigger_remembers_or_no_stream_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="MAX_ACK_PENDING"):
        JetStreamIntake(JetStreamSettings(stream="EVENTS", max_ack_pending=1001), _never_counts())
    with pytest.raises(ConfigurationError, match="TRIGGER_OPERATOR_JETSTREAM_STREAM is required"):
        JetStreamIntake(JetStreamSettings(url="nats://n:4222"), _never_counts())


def _never_counts() -> Any:
    return SimpleNamespace(candidates=lambda namespace: [], count=None)


@dataclass
class FakeMessage:
    """A delivered message, recording how it was answered (nats-py's Msg has the same surface)."""

    subject: str
    data: bytes
    sequence: int
    headers: dict[str, str] | None = None
    answers: list[str] = field(default_factory=list)
    pending: int = 0

    @property
    def metadata(self) -> Any:
        return SimpleNamespace(sequence=SimpleNamespace(stream=self.sequence), num_pending=self.pending)

    async def ack(self) -> None:
        self.answers.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.answers.append("nak")

    async def term(self) -> None:
        self.answers.append("term")


def intake_over_fake(**spec: Any) -> tuple[JetStreamIntake, FakeCluster, Metrics]:
    clock = Clock(at())
    cluster = FakeCluster(clock)
    cluster.apply_trigger(NAMESPACE, "on-docs", {**EVENT_SPEC, **spec})
    memory = Memory(cluster)
    metrics = Metrics()
    intake = JetStreamIntake(SETTINGS, memory.committer(cluster, clock), metrics=metrics)
    return intake, cluster, metrics


def sample(metrics: Metrics, outcome: str) -> float:
    return metrics.registry.get_sample_value("trigger_operator_jetstream_messages_total", {"outcome": outcome}) or 0


def docs_message(sequence: int, namespace: str = NAMESPACE, **attributes: Any) -> FakeMessage:
    body = cloudevent(collectionid="col_abc", **attributes)
    return FakeMessage(f"trigger-events.{namespace}", body, sequence)


def test_a_batch_is_counted_once_and_acknowledged_after_the_store() -> None:
    intake, cluster, metrics = intake_over_fake()
    batch = [docs_message(n) for n in range(1, 6)]
    batch[-1].pending = 17
    asyncio.run(intake.handle(batch))
    assert cluster.triggers[(NAMESPACE, "on-docs")]["status"]["eventCounter"] == 5
    assert [m.answers for m in batch] == [["ack"]] * 5
    assert metrics.registry.get_sample_value("trigger_operator_jetstream_pending") == 17  # the lag
    # Redelivered (the ack was lost, or the reader crashed before it): acknowledged, not counted again.
    again = [docs_message(n) for n in range(1, 6)]
    asyncio.run(intake.handle(again))
    assert cluster.triggers[(NAMESPACE, "on-docs")]["status"]["eventCounter"] == 5
    assert [m.answers for m in again] == [["ack"]] * 5
    assert (sample(metrics, "counted"), sample(metrics, "duplicate")) == (5, 5)


def test_malformed_messages_are_terminated_and_foreign_subjects_dropped_without_a_payload_byte(
        caplog: pytest.LogCaptureFixture) -> None:
    intake, cluster, metrics = intake_over_fake()
    secret = b"\xff secret payload"
    batch = [FakeMessage(f"trigger-events.{NAMESPACE}", secret, 1),
             FakeMessage("trigger-events.Not_A_Namespace", cloudevent(collectionid="col_abc"), 2),
             FakeMessage("trigger-events.Not_A_Namespace", cloudevent(collectionid="col_abc"), 3),
             docs_message(4),
             docs_message(5)]
    with caplog.at_level(logging.WARNING, logger="trigger_operator.intake.jetstream"):
        asyncio.run(intake.handle(batch))
    assert [m.answers for m in batch] == [["term"], ["ack"], ["ack"], ["ack"], ["ack"]]
    assert cluster.triggers[(NAMESPACE, "on-docs")]["status"]["eventCounter"] == 2
    assert (sample(metrics, "malformed"), sample(metrics, "foreign-subject"), sample(metrics, "counted")) == (1, 2, 2)
    assert "secret" not in caplog.text and "ff" not in caplog.text.lower().replace("off", "")
    assert caplog.text.count("Not_A_Namespace") == 1  # once per subject


def test_a_message_on_another_namespaces_subject_counts_only_there() -> None:
    intake, cluster, metrics = intake_over_fake()
    asyncio.run(intake.handle([docs_message(1, namespace="team-b")]))
    assert cluster.triggers[(NAMESPACE, "on-docs")].get("status", {}).get("eventCounter", 0) == 0
    assert sample(metrics, "unmatched") == 1


def test_a_batch_that_could_not_be_stored_is_not_acknowledged_but_redelivered() -> None:
    intake, _, metrics = intake_over_fake()

    async def refuse(namespace: str, events: Any) -> Any:
        raise NotStored("the API server is down")

    intake._committer = SimpleNamespace(candidates=lambda namespace: [], count=refuse)
    batch = [docs_message(1), docs_message(2)]
    asyncio.run(intake.handle(batch))
    assert [m.answers for m in batch] == [["nak"], ["nak"]]
    assert sample(metrics, "counted") == 0


# --- the consumer's bounds and the lead (issue 23 review, F6) ---------------------------------------

def consumer(**config: Any) -> Any:
    from nats.js.api import AckPolicy, ConsumerConfig
    made: dict[str, Any] = {"durable_name": "trigger-operator", "ack_policy": AckPolicy.EXPLICIT,
                            "filter_subject": "trigger-events.>", "ack_wait": 30.0, "max_ack_pending": 1000}
    return ConsumerConfig(**(made | config))


@pytest.mark.parametrize(("config", "named"), [
    pytest.param({"ack_policy": "all"}, "ack_policy is 'all', not 'explicit'", id="ack-all"),
    pytest.param({"ack_policy": "none"}, "ack_policy is 'none', not 'explicit'", id="ack-none"),
    pytest.param({"max_ack_pending": 1001}, "max_ack_pending is 1001, not 1 to 1000", id="pending-over-window"),
    pytest.param({"max_ack_pending": -1}, "max_ack_pending is -1, not 1 to 1000", id="pending-unbounded"),
    pytest.param({"filter_subject": "other.>"}, "filter subjects are ['other.>'], not ['trigger-events.>']",
                 id="wrong-filter"),
    pytest.param({"filter_subject": None}, "filter subjects are none (the whole stream)", id="no-filter"),
    pytest.param({"filter_subject": None, "filter_subjects": ["trigger-events.>", "x.>"]},
                 "filter subjects are ['trigger-events.>', 'x.>']", id="more-filters"),
])
def test_an_existing_consumer_that_breaks_the_bounds_is_refused_naming_the_setting(
        config: dict[str, Any], named: str) -> None:
    from trigger_operator.intake.jetstream import consumer_refusals
    assert [p for p in consumer_refusals(consumer(**config), SETTINGS) if named in p] != []
    assert len(consumer_refusals(consumer(**config), SETTINGS)) == 1


@pytest.mark.parametrize("config", [pytest.param({}, id="as-created"),
                                    pytest.param({"max_ack_pending": 10, "filter_subject": None,
                                                  "filter_subjects": ["trigger-events.>"]}, id="filter-subjects")])
def test_a_consumer_within_the_bounds_is_read(config: dict[str, Any]) -> None:
    from trigger_operator.intake.jetstream import consumer_refusals
    assert consumer_refusals(consumer(**config), SETTINGS) == []


class _Stop(Exception):
    pass


def test_a_replica_that_regains_the_lead_waits_one_ack_wait_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another replica read while this one did not lead: its unacknowledged messages (maybe counted)
    must come back before this one reads new ones, as at start."""
    from trigger_operator.intake import jetstream
    done: list[Any] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        done.append(("sleep", seconds))
        await real_sleep(0)

    class Js:
        async def consumer_info(self, stream: str, name: str) -> Any:
            done.append("info")
            return SimpleNamespace(num_ack_pending=3)

    class Subscription:
        async def fetch(self, batch: int, timeout: float) -> list[Any]:
            done.append("fetch")
            if done.count("fetch") == 2:
                raise _Stop
            return []

    monkeypatch.setattr(asyncio, "sleep", sleep)  # the intake calls asyncio.sleep
    leads = iter([True, True, False, True, True])
    intake = JetStreamIntake(SETTINGS, _never_counts(), leading=lambda: next(leads))
    with pytest.raises(_Stop):
        asyncio.run(intake.read(Js(), Subscription(), 30.0))
    assert done == ["info", ("sleep", 30.0), "fetch", ("sleep", jetstream.FETCH_SECONDS), "info", ("sleep", 30.0),
                    "fetch"]

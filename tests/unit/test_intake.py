"""Durable event intake against the fake API: group commit, conflicts, de-duplication, the HTTP
endpoint's status codes and bodies (FastAPI's test client), authentication and RBAC."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.conftest import NAMESPACE, at
from tests.unit.fake_cluster import FakeCluster
from tests.unit.test_controller import Clock
from trigger_operator.config import OperatorConfig
from trigger_operator.controller.loop import Scheduler
from trigger_operator.controller.store import TriggerIndex
from trigger_operator.events.cloudevents import Occurrence
from trigger_operator.intake.committer import EventCommitter, NotStored
from trigger_operator.kube.interface import Body, Identity
from trigger_operator.web.app import build_app
from trigger_operator.web.auth import Authorizer

EVENT_SPEC = {"actionType": "cluster", "triggerType": "event",
              "scheduleConfig": {"eventType": "documents_added", "eventThreshold": 100, "collectionId": "col_abc"}}
SENDER = Identity(user="system:serviceaccount:team-a:ingest", groups=("system:serviceaccounts",))


class Memory:
    """What the scheduler would hold: the newest copy of each Trigger, fed by the committer's writes."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.bodies = TriggerIndex()  # as the store's: it tells the committer of every change
        self.refresh()

    def refresh(self) -> None:
        """The cluster's Triggers as a new watch would tell them (in place: followers see the change)."""
        fresh = {k: json.loads(json.dumps(v)) for k, v in self.cluster.triggers.items()}
        for key in [k for k in self.bodies if k not in fresh]:
            self.bodies.forget(key)
        for key, body in fresh.items():
            self.bodies[key] = body

    def committer(self, cluster: FakeCluster, clock: Clock) -> EventCommitter:
        return EventCommitter(cluster, follow=self.bodies.follow,
                              latest=self.bodies.get,
                              committed=lambda b: self.bodies.__setitem__(
                                  (b["metadata"]["namespace"], b["metadata"]["name"]), b),
                              clock=clock)


def setup(**spec: Any) -> tuple[FakeCluster, Clock, Memory]:
    clock = Clock(at())
    cluster = FakeCluster(clock)
    cluster.apply_trigger(NAMESPACE, "on-docs", {**EVENT_SPEC, **spec})
    cluster.apply_trigger(NAMESPACE, "nightly", {"actionType": "cluster", "triggerType": "cron",
                                                 "scheduleConfig": {"cronExpression": "0 2 * * *"}})
    return cluster, clock, Memory(cluster)


def docs(event_id: str | None, count: int = 1, collection: str = "col_abc") -> Occurrence:
    return Occurrence(type="documents_added", source="//ingest", id=event_id, count=count,
                      attributes={"type": "documents_added", "source": "//ingest", "collectionid": collection})


def test_concurrent_senders_share_a_few_writes_and_every_count_is_stored() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup()
        committer = memory.committer(cluster, clock)
        results = await asyncio.gather(*(committer.count(NAMESPACE, [docs(f"e{i}", 2)]) for i in range(200)))
        assert cluster.status(NAMESPACE, "on-docs")["eventCounter"] == 400
        assert cluster.called("patch_trigger_status") <= 3  # group commit: not one write per sender
        assert all(r[0].name == "on-docs" and r[0].counted == 2 for r in results)
    asyncio.run(scenario())


def test_a_conflicting_writer_costs_a_retry_not_a_count() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup()
        committer = memory.committer(cluster, clock)
        await committer.count(NAMESPACE, [docs("a", 5)])
        cluster.edit_trigger(NAMESPACE, "on-docs", status={**cluster.status(NAMESPACE, "on-docs"), "phase": "Active"})
        [tally] = await committer.count(NAMESPACE, [docs("b", 3)])  # the memory copy is stale now
        assert (tally.counted, tally.event_counter) == (3, 8)
        assert cluster.status(NAMESPACE, "on-docs")["eventCounter"] == 8
    asyncio.run(scenario())


def test_a_retried_delivery_is_acknowledged_and_counted_once() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup()
        committer = memory.committer(cluster, clock)
        await committer.count(NAMESPACE, [docs("a", 5)])
        writes = cluster.called("patch_trigger_status")
        [tally] = await committer.count(NAMESPACE, [docs("a", 5)])
        assert (tally.counted, tally.duplicates, tally.event_counter) == (0, 1, 5)
        assert cluster.called("patch_trigger_status") == writes  # nothing to write for a duplicate
    asyncio.run(scenario())


@pytest.mark.parametrize(("spec", "event", "counted"), [
    pytest.param({}, docs("a", collection="col_other"), False, id="another-collection"),
    pytest.param({"state": "disabled"}, docs("a"), False, id="a-disabled-trigger-ignores-events"),
    pytest.param({"state": "paused"}, docs("a"), True, id="a-paused-trigger-still-counts"),
])
def test_which_triggers_an_event_counts_for(spec: dict[str, Any], event: Occurrence, counted: bool) -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup(**spec)
        tallies = await memory.committer(cluster, clock).count(NAMESPACE, [event])
        assert [t.name for t in tallies] == (["on-docs"] if counted else [])
    asyncio.run(scenario())


def test_events_for_a_trigger_deleted_meanwhile_are_not_acknowledged() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup()
        del cluster.triggers[NAMESPACE, "on-docs"]
        with pytest.raises(NotStored):
            await memory.committer(cluster, clock).count(NAMESPACE, [docs("a")])
    asyncio.run(scenario())


# --- the endpoint ------------------------------------------------------------------------------------

class Alive:
    def alive(self) -> bool:
        return True

    def ready(self) -> tuple[bool, str]:
        return True, ""


@pytest.fixture
def client() -> Iterator[tuple[TestClient, FakeCluster]]:
    with endpoint() as made:
        yield made


@contextmanager
def endpoint() -> Iterator[tuple[TestClient, FakeCluster]]:
    """The HTTP app over the fake API: a sender allowed to send events to NAMESPACE, a stranger not."""
    cluster, clock, memory = setup()
    cluster.tokens = {"sender-token": SENDER, "stranger-token": Identity(user="system:serviceaccount:b:x")}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    app = build_app(intake=memory.committer(cluster, clock), authorizer=Authorizer(cluster, ttl_seconds=10),
                    health=Alive(), max_body_bytes=4096)
    with TestClient(app) as c:
        yield c, cluster


CLOUDEVENT = {"specversion": "1.0", "id": "e1", "source": "//ingest", "type": "documents_added",
              "collectionid": "col_abc", "count": 7}


def post(c: TestClient, body: Any, *, token: str | None = "sender-token", content_type: str = "application/json",
         headers: dict[str, str] | None = None, namespace: str | None = NAMESPACE) -> Any:
    h = {"content-type": content_type, **(headers or {})}
    if token:
        h["authorization"] = f"Bearer {token}"
    if namespace:
        h["x-namespace"] = namespace
    return c.post("/v1/events", content=body if isinstance(body, bytes) else json.dumps(body), headers=h)


def test_an_event_is_accepted_once_stored_and_the_answer_names_triggers_only_to_who_may_get_them(
        client: tuple[TestClient, FakeCluster]) -> None:
    c, cluster = client
    response = post(c, CLOUDEVENT, content_type="application/cloudevents+json")
    assert response.status_code == 202, response.text
    # A sender who may send but not get Triggers learns how much was counted, not for what.
    assert response.json() == {"namespace": NAMESPACE, "received": 1, "counted": 7, "triggers": []}
    assert cluster.status(NAMESPACE, "on-docs")["eventCounter"] == 7
    with endpoint() as (reader, reader_cluster):
        reader_cluster.grants.add((SENDER.user, NAMESPACE, "get", "triggers"))
        response = post(reader, CLOUDEVENT, content_type="application/cloudevents+json")
        assert response.json() == {"namespace": NAMESPACE, "received": 1, "counted": 7, "triggers": [
            {"name": "on-docs", "counted": 7, "duplicates": 0, "event_counter": 7}]}


def test_a_503_says_what_failed_in_our_words_and_the_clients_error_only_in_the_log(
        client: tuple[TestClient, FakeCluster], caplog: pytest.LogCaptureFixture) -> None:
    c, cluster = client

    async def refused(namespace: str, name: str, resource_version: str, patch: Any) -> Body:
        raise OSError("HTTPSConnectionPool(host='10.96.0.1'): internal detail 5f3a")
    cluster.patch_trigger_status = refused  # type: ignore[method-assign]
    response = post(c, CLOUDEVENT, content_type="application/cloudevents+json")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json() == {"detail": "the Trigger's status could not be written; send again"}
    assert "internal detail 5f3a" in caplog.text


def test_the_namespace_may_come_as_a_query_parameter(client: tuple[TestClient, FakeCluster]) -> None:
    c, _ = client
    response = c.post(f"/v1/events?namespace={NAMESPACE}", content=json.dumps({"event_type": "documents_added"}),
                      headers={"authorization": "Bearer sender-token", "content-type": "application/json"})
    assert response.status_code == 202 and response.json()["received"] == 1


@pytest.mark.parametrize(("token", "status", "says"), [
    pytest.param(None, 401, "Authorization: Bearer", id="no-token"),
    pytest.param("forged", 401, "not accepted by the Kubernetes API", id="unknown-token"),
    pytest.param("stranger-token", 403, "may not create triggers/events.trigger-operator.io in namespace team-a",
                 id="no-rbac"),
])
def test_senders_are_authenticated_and_authorized(client: tuple[TestClient, FakeCluster], token: str | None,
                                                 status: int, says: str) -> None:
    c, cluster = client
    response = post(c, CLOUDEVENT, token=token, content_type="application/cloudevents+json")
    assert response.status_code == status and says in response.json()["detail"]
    assert "eventCounter" not in cluster.status(NAMESPACE, "on-docs")
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_answers_of_the_api_server_are_cached_briefly(client: tuple[TestClient, FakeCluster]) -> None:
    c, cluster = client
    for i in range(5):
        post(c, {**CLOUDEVENT, "id": f"e{i}"}, content_type="application/cloudevents+json")
    assert (cluster.called("review_token"), cluster.called("review_access")) == (1, 2)  # may send; may get?


@pytest.mark.parametrize(("body", "content_type", "status", "loc"), [
    pytest.param({**CLOUDEVENT, "specversion": "0.3"}, "application/cloudevents+json", 422, ["body", "specversion"],
                 id="bad-cloudevent"),
    pytest.param(b"{nope", "application/cloudevents+json", 422, ["body"], id="not-json"),
    pytest.param(b"x" * 5000, "application/json", 413, None, id="too-large"),
])
def test_bad_bodies_get_json_errors(client: tuple[TestClient, FakeCluster], body: Any, content_type: str,
                                    status: int, loc: list[str] | None) -> None:
    c, _ = client
    response = post(c, body, content_type=content_type)
    assert response.status_code == status
    detail = response.json()["detail"]
    if loc is not None:
        assert detail[0]["loc"] == loc
    else:
        assert "at most 4096" in detail


def test_a_missing_namespace_is_a_422_naming_it(client: tuple[TestClient, FakeCluster]) -> None:
    c, _ = client
    response = post(c, CLOUDEVENT, content_type="application/cloudevents+json", namespace=None)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["header", "x-namespace"]


def test_the_openapi_document_is_derived_from_the_models(client: tuple[TestClient, FakeCluster]) -> None:
    c, _ = client
    document = c.get("/openapi.json").json()
    events = document["paths"]["/v1/events"]["post"]
    assert set(events["requestBody"]["content"]) == {"application/cloudevents+json",
                                                     "application/cloudevents-batch+json", "application/json"}
    assert "202" in events["responses"] and "403" in events["responses"]
    assert events["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventsAccepted"}
    # Served past FastAPI's router (EventsRoute), documented by the route declared with injection.
    assert [(p["name"], p["in"], p["required"], p.get("description")) for p in events["parameters"]] == [
        ("namespace", "query", False, "if no X-Namespace"), ("x-namespace", "header", False, None),
        ("authorization", "header", False, None)]
    assert events["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HTTPValidationError"}
    assert c.get("/healthz").json() == {"status": "ok", "detail": ""}
    assert c.get("/readyz").status_code == 200


def test_the_events_route_answers_errors_with_the_apps_handlers_and_leaves_other_methods_to_the_app() -> None:
    """POST /v1/events is served past FastAPI's router (web/app.py, EventsRoute): an error it has no
    handler of its own for still gets the app's 500 body (and is raised on, for the traceback in the
    log, as on every route), a 503 the app's Retry-After, and any other method is FastAPI's (405)."""
    class Failing:
        def __init__(self, error: Exception) -> None:
            self.error = error

        async def count(self, namespace: str, events: Any) -> list[Any]:
            raise self.error

    cluster, _, _ = setup()
    cluster.tokens = {"sender-token": SENDER}
    cluster.grants = {(SENDER.user, NAMESPACE, "create", "triggers/events")}
    for error, status in ((RuntimeError("boom"), 500), (NotStored("the API server said no", "not stored"), 503)):
        app = build_app(intake=Failing(error), authorizer=Authorizer(cluster, ttl_seconds=10), health=Alive(),
                        max_body_bytes=4096)
        with TestClient(app, raise_server_exceptions=False) as c:
            response = post(c, CLOUDEVENT, content_type="application/cloudevents+json")
            assert response.status_code == status, response.text
            if status == 500:
                assert response.json() == {"detail": "internal error (RuntimeError); the operator's log says more"}
            else:
                assert response.json() == {"detail": "not stored"} and response.headers["retry-after"] == "1"
            assert c.get("/v1/events").status_code == 405
        if status == 500:
            with TestClient(app) as c, pytest.raises(RuntimeError, match="boom"):  # raised on, as before
                post(c, CLOUDEVENT, content_type="application/cloudevents+json")


def test_every_endpoint_bounds_its_body(client: tuple[TestClient, FakeCluster]) -> None:
    c, _ = client
    response = c.post("/v1/events", content=b"x" * 5000, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json() == {"detail": "the body is 5000 bytes; at most 4096 are "
                                                                          "accepted"}


def test_a_trigger_whose_status_is_unreadable_counts_no_events() -> None:
    async def scenario() -> None:
        cluster, clock, memory = setup()
        cluster.edit_trigger(NAMESPACE, "on-docs", status={"lastScheduleTime": "yesterday"})
        memory.refresh()
        assert await memory.committer(cluster, clock).count(NAMESPACE, [docs(None, 40)]) == []
    asyncio.run(scenario())


def test_a_token_that_is_not_one_line_is_refused_and_never_repeated() -> None:
    from trigger_operator.model.spec import ConditionSource
    from trigger_operator.sources.read import SourceError, SourceReader

    async def scenario() -> None:
        cluster = FakeCluster(Clock(at()))
        cluster.secrets[(NAMESPACE, "tok")] = {"data": {"token": "c2VjcmV0CkhvcDogeQ=="}}  # "secret\nHop: y"
        source = ConditionSource.model_validate({"http": {"url": "http://127.0.0.1:9/x",
                                                          "tokenSecret": {"name": "tok", "key": "token"}}})
        reader = SourceReader(cluster)
        with pytest.raises(SourceError) as caught:
            await reader.read(NAMESPACE, source)
        await reader.close()
        assert "single-line" in str(caught.value) and "secret" not in str(caught.value).replace("Secret", "")
    asyncio.run(scenario())


def test_a_streamed_body_over_the_limit_is_a_413_on_every_route(client: tuple[TestClient, FakeCluster]) -> None:
    c, _ = client

    def chunks() -> Any:
        for _ in range(5):
            yield b"x" * 1000

    for path in ("/v1/events", "/v1/triggers"):
        response = c.post(path, content=chunks(), headers={"content-type": "application/json", "x-namespace": "a"})
        assert response.status_code == 413, (path, response.text)


def committer_of(scheduler: Scheduler) -> EventCommitter:
    """The committer as the operator wires it to its scheduler (handlers.start)."""
    return EventCommitter(scheduler.api, follow=scheduler.store.follow_triggers, latest=scheduler.store.trigger,
                          committed=lambda body: scheduler.store.on_trigger(None, body), clock=scheduler.clock,
                          know=scheduler.store.know)


def test_a_replica_just_started_counts_events_for_triggers_its_watch_has_not_listed_yet() -> None:
    """An acknowledged event is never lost to a cold memory: the namespace is read once, first."""
    async def scenario() -> None:
        cluster, clock, _ = setup()
        scheduler = Scheduler(cluster, OperatorConfig(), clock=clock)  # its watch has delivered nothing
        committer = committer_of(scheduler)
        results = await asyncio.gather(*(committer.count(NAMESPACE, [docs(f"e{i}")]) for i in range(5)))
        assert [r[0].name for r in results] == ["on-docs"] * 5
        assert cluster.status(NAMESPACE, "on-docs")["eventCounter"] == 5
        await committer.count(NAMESPACE, [docs("e5")])
        assert cluster.called("list_triggers") == 1  # once per namespace and process, not per request
    asyncio.run(scenario())


def test_an_unwatched_namespace_is_never_read_and_its_events_match_nothing() -> None:
    async def scenario() -> None:
        cluster, clock, _ = setup()
        scheduler = Scheduler(cluster, OperatorConfig(), clock=clock, watched=lambda namespace: namespace != NAMESPACE)
        committer = committer_of(scheduler)
        assert await committer.count(NAMESPACE, [docs("e1")]) == []
        assert cluster.called("list_triggers") == 0 and scheduler.store.triggers == {}
    asyncio.run(scenario())


def test_a_failed_read_of_the_namespace_is_not_acknowledged_and_is_tried_again() -> None:
    async def scenario() -> None:
        cluster, clock, _ = setup()
        scheduler = Scheduler(cluster, OperatorConfig(), clock=clock)
        committer = committer_of(scheduler)
        listing = cluster.list_triggers

        async def unreachable(namespace: str) -> list[Body]:
            raise OSError("connection refused")
        cluster.list_triggers = unreachable  # type: ignore[method-assign]
        with pytest.raises(NotStored, match="could not be read"):
            await committer.count(NAMESPACE, [docs("e1")])
        cluster.list_triggers = listing  # type: ignore[method-assign]
        [tally] = await committer.count(NAMESPACE, [docs("e1")])
        assert (tally.counted, tally.event_counter) == (1, 1)
    asyncio.run(scenario())


def test_a_counted_event_costs_one_status_write_that_restates_the_ready_message() -> None:
    """The count's guarded write carries the Ready message stating the new counter, so the
    scheduler's pass that follows finds nothing to write (it used to write the message alone: two
    writes per event, the second conflicting with the next count's)."""
    from tests.unit.test_controller import boot
    async def scenario() -> None:
        cluster, clock, _ = setup()
        replica = boot(cluster, clock)
        for _ in range(3):  # the Trigger becomes Active: the scheduler's writes
            replica.watch.deliver(replica.scheduler)
            await replica.scheduler.sync((NAMESPACE, "on-docs"))
        assert cluster.status(NAMESPACE, "on-docs")["message"] == "0 of 100 documents_added events counted"
        before = cluster.called("patch_trigger_status")
        committer = committer_of(replica.scheduler)
        for i in range(3):
            await committer.count(NAMESPACE, [docs(f"e{i}", 2)])
            replica.watch.deliver(replica.scheduler)
            await replica.scheduler.sync((NAMESPACE, "on-docs"))
        assert cluster.called("patch_trigger_status") - before == 3
        status = cluster.status(NAMESPACE, "on-docs")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert status["message"] == ready["message"] == "6 of 100 documents_added events counted"
    asyncio.run(scenario())

"""The JetStream intake on the real control plane with a real nats-server (issue 23 part 4): 10,000
messages counted exactly once across a SIGKILL of the operator in the middle of consumption (10
runs at a threshold of 1,000, the counter exactly 0, the consumer's ack floor at the stream's end),
and a message on another namespace's subject counting nothing here."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.harness import Kube, Operator, wait_for
from tests.integration.conftest import charted_operator
from tests.integration.servers import add_stream, nats_server
from tests.integration.triggers import trigger

STREAM = "EVENTS"
PREFIX = "trigger-events"
ACK_WAIT = 3  # seconds: a restarted reader waits this long for the killed one's unacknowledged messages


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    with nats_server(tmp_path) as url:
        asyncio.run(_add_stream(url))
        yield url


async def _add_stream(url: str) -> None:
    await add_stream(url, STREAM, [f"{PREFIX}.>"])


@pytest.fixture
def reader(kube: Kube, namespace: str, tmp_path: Path, nats_url: str,
           request: pytest.FixtureRequest) -> Iterator[Operator]:
    """The operator as the conftest's, with the chart's RBAC, reading the stream."""
    yield from charted_operator(kube, namespace, tmp_path, request, env={
        "TRIGGER_OPERATOR_JETSTREAM_URL": nats_url, "TRIGGER_OPERATOR_JETSTREAM_STREAM": STREAM,
        "TRIGGER_OPERATOR_JETSTREAM_ACK_WAIT_SECONDS": str(ACK_WAIT), "TRIGGER_OPERATOR_JETSTREAM_BATCH": "100"})


def event_trigger(name: str, threshold: int) -> dict[str, Any]:
    manifest = trigger(name, triggerType="event")
    manifest["spec"]["scheduleConfig"] = {"eventType": "documents_added", "eventThreshold": threshold,
                                          "collectionId": "col_abc"}
    return manifest


def message(i: int) -> bytes:
    # Every other message has no id: it is named <stream>:<sequence>, the same on a redelivery.
    event = {"specversion": "1.0", "type": "documents_added", "collectionid": "col_abc"}
    if i % 2:
        event.update(id=f"doc-{i}", source="//ingest/test")
    return json.dumps(event).encode()


async def publish(url: str, subject: str, numbers: range, per_second: float = 0) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for i in numbers:
            await js.publish(subject, message(i))  # waits for the stream's acknowledgement
            if per_second and i % 100 == 0:
                await asyncio.sleep(100 / per_second)
    finally:
        await client.close()


async def consumer_state(url: str) -> tuple[int, int, int, int]:
    """The stream's last sequence; the consumer's ack floor, pending and unacknowledged messages."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        stream = await js.stream_info(STREAM)
        consumer = await js.consumer_info(STREAM, "trigger-operator")
        return stream.state.last_seq, consumer.ack_floor.stream_seq, consumer.num_pending, consumer.num_ack_pending
    finally:
        await client.close()


def stored(kube: Kube, namespace: str, name: str) -> int:
    """Occurrences counted so far: those spent by runs and those still on the counter."""
    status = kube.status(namespace, name)
    return 1000 * int(status.get("eventFirings", 0)) + int(status.get("eventCounter", 0))


def test_ten_thousand_messages_count_exactly_once_across_a_sigkill(kube: Kube, namespace: str, reader: Operator,
                                                                    nats_url: str) -> None:
    kube.apply(event_trigger("on-docs", 1000), namespace)
    wait_for("the Trigger to be Ready", lambda: kube.status(namespace, "on-docs").get("phase") == "Active")
    # The whole backlog is in the stream before the reader reads (in batches of 100 here): it is then
    # always in the middle of a batch, never idle waiting for a publisher slower than itself, so the
    # kill lands with a batch read but not acknowledged.
    reader.kill()
    asyncio.run(publish(nats_url, f"{PREFIX}.{namespace}", range(10_000)))
    reader.start()
    wait_for("a fifth of the messages counted, a batch read and not acknowledged",
             lambda: stored(kube, namespace, "on-docs") >= 2000 and asyncio.run(consumer_state(nats_url))[3] > 0,
             timeout=60, interval=0.02)
    reader.kill()
    at_kill = stored(kube, namespace, "on-docs")
    _, _, _, unacknowledged = asyncio.run(consumer_state(nats_url))
    assert at_kill < 10_000 and unacknowledged > 0  # killed in the middle, messages in flight
    reader.start()
    wait_for("every message counted", lambda: stored(kube, namespace, "on-docs") >= 10_000, timeout=180)
    wait_for("ten runs", lambda: int(kube.status(namespace, "on-docs").get("executionCount", 0)) >= 10,
             timeout=240)
    time.sleep(ACK_WAIT + 3)  # a redelivery counted twice would show by now
    status = kube.status(namespace, "on-docs")
    assert (status["eventFirings"], status.get("eventCounter", 0)) == (10, 0)
    assert (status["executionCount"], sorted(set(reader.created_jobs()))) == (
        10, sorted(f"on-docs-e{n}" for n in range(1, 11)))  # finished Jobs beyond the history are deleted
    last, ack_floor, pending, unacknowledged = asyncio.run(consumer_state(nats_url))
    assert (last, ack_floor, pending, unacknowledged) == (10_000, 10_000, 0, 0)
    assert "unacknowledged; waiting" in reader.logs()  # the restart waited for the killed reader's messages
    assert reader.errors() == []


def test_a_message_on_another_namespaces_subject_does_not_count_here(kube: Kube, namespace: str, reader: Operator,
                                                                     nats_url: str) -> None:
    kube.apply(event_trigger("on-docs", 1000), namespace)
    wait_for("the Trigger to be Ready", lambda: kube.status(namespace, "on-docs").get("phase") == "Active")
    asyncio.run(publish(nats_url, f"{PREFIX}.other-team", range(5)))
    asyncio.run(publish(nats_url, f"{PREFIX}.{namespace}.deeper", range(5, 8)))  # not <prefix>.<namespace>
    asyncio.run(publish(nats_url, f"{PREFIX}.{namespace}", range(8, 10)))
    wait_for("this namespace's two messages counted", lambda: stored(kube, namespace, "on-docs") == 2, timeout=30)
    wait_for("every message answered", lambda: asyncio.run(consumer_state(nats_url))[1:] == (10, 0, 0), timeout=30)
    assert stored(kube, namespace, "on-docs") == 2

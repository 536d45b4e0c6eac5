"""Condition sources as a tenant would abuse them, against the real operator on the real control
plane (issue 17, findings 1 and 2): the default egress rules keep a source off loopback and the
metadata address; an answer shaped like credentials leaves no byte in status, Events or the log; a
gzip bomb fails the check at the byte bound while the operator stays small and other Triggers run
on time."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from tests.harness import Kube, Operator, wait_for
from tests.integration.servers import gzip_bomb, raw_endpoint
from tests.integration.test_conditions import conditional, measured
from tests.integration.triggers import scheduled_time, trigger

MARKER = "AKIAQUIETSOURCE7777"
CREDENTIALS = json.dumps({"status": "error", "errorType": MARKER, "error": f"{MARKER} SECRET=wJalrXUtnFEMI"}).encode()
CHART_MEMORY_LIMIT = 512 * 1024 * 1024


def error_of(kube: Kube, namespace: str, name: str) -> str:
    return str(measured(kube, namespace, name).get("error") or "")


def everything_said(kube: Kube, namespace: str, operator: Operator) -> str:
    """The Triggers as `kubectl get -o json` shows them, the namespace's Events, and the operator's log."""
    triggers = kube.kubectl("get", "triggers.trigger-operator.io", "-n", namespace, "-o", "json").stdout
    events = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    return "\n".join((triggers, events, operator.logs()))


def peak_rss(operator: Operator) -> int:
    """The operator process's peak resident memory (VmHWM), in bytes."""
    assert operator.process is not None
    for line in Path(f"/proc/{operator.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_default_egress_rules_keep_sources_off_loopback(kube: Kube, namespace: str, operator: Operator) -> None:
    operator.stop()
    operator.env.pop("TRIGGER_OPERATOR_SOURCES_ALLOWED_NETWORKS")  # the chart's default: nothing opened
    operator.start()
    with raw_endpoint() as server:
        server.body = CREDENTIALS
        kube.apply(conditional("metadata", {"prometheus": {"url": f"http://127.0.0.1:{server.port}/latest/meta-data",
                                                           "query": "up"}}), namespace)
        kube.apply(conditional("by-name", {"http": {"url": f"http://localhost:{server.port}/doc"}}), namespace)
        said = wait_for("the prometheus source refused", lambda: error_of(kube, namespace, "metadata"), timeout=30)
        assert said == (f"GET http://127.0.0.1:{server.port}/latest/meta-data/api/v1/query: address 127.0.0.1 of "
                        "127.0.0.1 is loopback: refused by the operator's egress rules (sources.allowedNetworks "
                        "opens a range)")
        said = wait_for("the http source refused", lambda: error_of(kube, namespace, "by-name"), timeout=30)
        assert "of localhost is loopback: refused by the operator's egress rules" in said
        assert "loopback" in kube.status(namespace, "metadata").get("message", "")
        assert server.requests == [], "the operator connected to a refused address"
    assert MARKER not in everything_said(kube, namespace, operator)
    assert operator.errors() == []


def test_credential_shaped_answers_leave_no_byte_in_status_events_or_log(
        kube: Kube, namespace: str, operator: Operator) -> None:
    with raw_endpoint() as prom, raw_endpoint() as failing, raw_endpoint() as garbled:
        prom.body = CREDENTIALS
        failing.status, failing.body = 500, CREDENTIALS
        failing.headers["X-Debug"] = f"{MARKER} SECRET=wJalrXUtnFEMI"
        failing.reason = f"{MARKER} SECRET=wJalrXUtnFEMI"  # a status line the server chose, too
        garbled.body = f"{MARKER} SECRET=wJalrXUtnFEMI".encode()
        kube.apply(conditional("prom", {"prometheus": {"url": prom.url, "query": "up"}}), namespace)
        kube.apply(conditional("failing", {"http": {"url": f"{failing.url}/doc"}}), namespace)
        kube.apply(conditional("garbled", {"http": {"url": f"{garbled.url}/doc"}}), namespace)
        for name, says in (("prom", "Prometheus query 'up' did not answer success"),
                           ("failing", f"GET {failing.url}/doc: HTTP 500"),
                           ("garbled", f"GET {garbled.url}/doc: the answer is not JSON")):
            assert wait_for(f"{name}'s failed check", lambda n=name: error_of(kube, namespace, n),  # type: ignore[misc]
                            timeout=30) == says
        wait_for("a second check of each (its messages and Events written)",
                 lambda: all(kube.status(namespace, n).get("sourceErrors", 0) >= 2
                             for n in ("prom", "failing", "garbled")), timeout=60)
        assert prom.requests and failing.requests and garbled.requests
    said = everything_said(kube, namespace, operator)
    assert "did not answer success" in said  # what was said is there, and nothing of the answer
    for piece in (MARKER, "SECRET=", "wJalrXUtnFEMI", "errorType"):
        assert piece not in said, piece


def test_a_gzip_bomb_fails_at_the_bound_and_the_operator_stays_up_and_on_time(
        kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(trigger("minutely", cron="* * * * *"), namespace)
    with raw_endpoint() as server:
        server.body, server.headers["Content-Encoding"] = gzip_bomb(), "gzip"
        assert len(server.body) < 64 * 1024
        kube.apply(conditional("bomb", {"http": {"url": f"{server.url}/bomb"}}), namespace)
        said = wait_for("the bomb's check to fail", lambda: error_of(kube, namespace, "bomb"), timeout=30)
        assert said == f"GET {server.url}/bomb: the answer is over 1048576 bytes (sources.maxAnswerBytes)"
        wait_for("more checks of the bomb", lambda: kube.status(namespace, "bomb").get("sourceErrors", 0) >= 3,
                 timeout=60)
        assert len(server.requests) >= 3
        # The next whole minute, after the bomb went off: the cron Trigger's run of it is on time.
        now = dt.datetime.now(dt.UTC)
        minute = (now + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
        time.sleep(max(0.0, (minute - dt.datetime.now(dt.UTC)).total_seconds()))
        job = wait_for(f"minutely's run of {minute:%H:%M}", lambda: [
            j for j in kube.jobs(namespace, "minutely") if scheduled_time(j) == minute], timeout=30)[0]
        late = (job.metadata.creation_timestamp - minute).total_seconds()
        peak = peak_rss(operator)
        print(f"\ngzip bomb ({len(server.body)} bytes, 25 M elements): {len(server.requests)} checks; operator "
              f"peak RSS (VmHWM) {peak / 2**20:.0f} MiB; minutely's {minute:%H:%M} run created {late:.1f} s late")
    assert operator.process is not None and operator.process.poll() is None, "the operator died"
    assert peak < CHART_MEMORY_LIMIT
    assert late <= 5
    assert operator.errors() == []


def test_an_object_source_of_a_cluster_scoped_kind_is_refused(kube: Kube, namespace: str, operator: Operator) -> None:
    # A Node's capacity is a number the operator may be able to get; a Trigger author may not.
    source = {"object": {"apiVersion": "v1", "kind": "Node", "name": "any-node", "fieldPath": ".status.capacity.cpu"}}
    kube.apply(conditional("nodes", source), namespace)
    said = wait_for("the object source refused", lambda: error_of(kube, namespace, "nodes"), timeout=30)
    assert said == "kind Node is cluster-scoped: an object source reads objects of the Trigger's namespace only"
    assert operator.errors() == []

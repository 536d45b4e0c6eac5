"""Shared facts for the unit tests: one anchor instant and small builders.

No test reads the clock: relative times are offsets from ``ANCHOR`` (``at(...)``). Tests about the
calendar itself (clock changes, leap days) name their instants with ``utc("...")``, because there the
date is the point.
"""

from __future__ import annotations

import copy
import datetime as dt
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from trigger_operator.jobs.observe import JobPhase, JobView, Presence
from trigger_operator.model.status import EMPTY, TriggerStatus
from trigger_operator.model.trigger import TriggerView

UTC = dt.UTC
ANCHOR = dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, clear of any clock change
NAMESPACE = "team-a"
TRIGGER_NAME = "nightly"
TRIGGER_UID = "0b6f6a52-5c1e-4f1a-9a3e-7c2d1e0f4b11"


def at(*, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0,
       microseconds: float = 0) -> dt.datetime:
    """``ANCHOR`` shifted by the given amount (negative for earlier)."""
    return ANCHOR + dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds,
                                 microseconds=microseconds)


def utc(text: str) -> dt.datetime:
    """A calendar instant written as ISO 8601 without an offset, read as UTC: ``utc("2026-11-01T06:00")``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


_JOB_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "data"}, "annotations": {"owner": "data-platform"}},
    "spec": {
        "backoffLimit": 2,
        "template": {
            "spec": {
                "containers": [{
                    "name": "action",
                    "image": "busybox:1.37",
                    "command": ["sh", "-c", "echo run"],
                    "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                }],
            },
        },
    },
}


def job_template() -> dict[str, Any]:
    """A minimal valid Job template (``{metadata, spec}``), a fresh copy each call."""
    return copy.deepcopy(_JOB_TEMPLATE)


def cron_spec(expression: str = "0 * * * *", *, timezone: str | None = None, **fields: Any) -> dict[str, Any]:
    """A raw cron Trigger spec in API spelling; ``fields`` are further top-level spec keys (camelCase)."""
    schedule: dict[str, Any] = {"cronExpression": expression}
    if timezone is not None:
        schedule["timezone"] = timezone
    return {"actionType": "cluster", "actionConfig": {"cluster_id": "clust_1"}, "triggerType": "cron",
            "scheduleConfig": schedule, "jobTemplate": job_template(), **fields}


def interval_spec(seconds: int, *, start_immediately: bool = False, **fields: Any) -> dict[str, Any]:
    """A raw interval Trigger spec in API spelling; ``fields`` are further top-level spec keys."""
    return {"actionType": "cluster", "triggerType": "interval",
            "scheduleConfig": {"intervalSeconds": seconds, "startImmediately": start_immediately},
            "jobTemplate": job_template(), **fields}


def trigger_view(*, spec: Mapping[str, Any] | None = None, status: TriggerStatus = EMPTY,
                 annotations: Mapping[str, str] | None = None, generation: int = 1,
                 created_at: dt.datetime = ANCHOR) -> TriggerView:
    """A Trigger as reconcile sees it; by default a new hourly cron Trigger created at ``ANCHOR``."""
    return TriggerView(namespace=NAMESPACE, name=TRIGGER_NAME, uid=TRIGGER_UID, generation=generation,
                       created_at=created_at, annotations=dict(annotations or {}),
                       spec=cron_spec() if spec is None else spec, status=status)


def job_view(name: str, phase: JobPhase = JobPhase.RUNNING, *, scheduled_time: dt.datetime | None = None,
             started_at: dt.datetime | None = None, finished_at: dt.datetime | None = None,
             created_at: dt.datetime | None = None, message: str | None = None,
             deleted: bool = False, presence: Presence | None = None, owner_uid: str | None = TRIGGER_UID,
             finalized: bool = True) -> JobView:
    """A Job as the watch saw it: by default the test Trigger's own, carrying our finalizer;
    ``deleted`` is the watch reporting its deletion (``presence`` says more)."""
    if presence is None:
        presence = Presence.DELETED if deleted else Presence.EXISTS
    return JobView(name=name, phase=phase, scheduled_time=scheduled_time, started_at=started_at,
                   finished_at=finished_at, created_at=created_at, message=message, presence=presence,
                   owner_uid=owner_uid, finalized=finalized)


class Seconds:
    """A monotonic clock the test moves (``.now``), shared by whatever it is handed to."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key

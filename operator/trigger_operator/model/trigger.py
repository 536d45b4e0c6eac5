"""A Trigger object as the decision, the intake and the shell read it: its metadata, its spec as
stored and its status parsed. Pure: a function of the object (and ``now`` for a missing
creationTimestamp)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trigger_operator.model.status import TriggerStatus, parse_time, read_status


@dataclass(frozen=True)
class TriggerView:
    """The parts of a Trigger object that the decision needs."""

    namespace: str
    name: str
    uid: str
    generation: int
    created_at: dt.datetime
    annotations: Mapping[str, str]
    spec: Mapping[str, Any]
    status: TriggerStatus
    raw_status: Mapping[str, Any] | None = None  # as stored; None: as `status` writes it
    status_error: str | None = None  # why the stored status cannot be read, naming the key
    deleting_since: dt.datetime | None = None  # its deletionTimestamp: deleted, held by a finalizer


def trigger_view(body: Mapping[str, Any], now: dt.datetime) -> TriggerView:
    """A Trigger object as the decision reads it. An unreadable status is reported, not reset."""
    meta = body["metadata"]
    raw = body.get("status") or {}
    status, error = read_status(dict(raw)) if isinstance(raw, Mapping) else (TriggerStatus(), "status: not an object")
    return TriggerView(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
                       generation=int(meta.get("generation") or 1),
                       created_at=parse_time(meta.get("creationTimestamp")) or now,
                       annotations=meta.get("annotations") or {}, spec=body.get("spec") or {}, status=status,
                       raw_status=raw if isinstance(raw, Mapping) else {}, status_error=error,
                       deleting_since=parse_time(meta.get("deletionTimestamp")))

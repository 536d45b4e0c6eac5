"""A Job as the watch and the list bring it, decoded into only what `observe_job` reads. Pure.

A Job's body is mostly its pod template and ``managedFields`` (about 5 KB a Job, of which the
view reads under 1 KB). msgspec decodes straight into the few fields declared here and skips the
rest without building it: on a real Job watch line that is 3.4 times faster than ``json.loads``
and 1.6 times faster than orjson followed by the same slimming (docs/bench.md, "Where the time
goes"). What comes out is a plain dict shaped as the Job's body, so `observe_job` and the store
read it as they read any body.
"""

from __future__ import annotations

from typing import Any

import msgspec

from trigger_operator.api import ANNOTATION_SCHEDULED_TIME, LABEL_TRIGGER

# The labels and annotations a view reads (LABEL_TRIGGER: the store's index); others are dropped.
KEPT_LABELS = (LABEL_TRIGGER,)
KEPT_ANNOTATIONS = (ANNOTATION_SCHEDULED_TIME,)
TERMINAL_CONDITIONS = ("Complete", "Failed")  # the only conditions `observe_job` reads


class _Owner(msgspec.Struct):
    uid: str | None = None
    controller: bool | None = None


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    uid: str | None = None
    resourceVersion: str | None = None  # (camelCase: the API's spelling)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[_Owner] | None = None
    finalizers: list[str] | None = None
    deletionTimestamp: str | None = None
    creationTimestamp: str | None = None


class _Condition(msgspec.Struct):
    type: str = ""
    status: str = ""
    lastTransitionTime: str | None = None
    reason: str | None = None
    message: str | None = None


class _Status(msgspec.Struct):
    startTime: str | None = None
    completionTime: str | None = None
    conditions: list[_Condition] | None = None


class _Job(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    status: _Status | None = None


class _ListMeta(msgspec.Struct):
    resourceVersion: str = ""
    continue_: str | None = msgspec.field(default=None, name="continue")


class _JobList(msgspec.Struct):
    items: list[_Job] | None = None
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)


class _Event(msgspec.Struct):
    type: str = ""
    object: msgspec.Raw = msgspec.Raw(b"{}")


class _Failure(msgspec.Struct):
    """The ``object`` of an ERROR event: a metav1.Status."""

    code: int = 0
    reason: str = ""
    message: str = ""


class WireError(ValueError):
    """A line or a list that is not what the API server sends."""


_events = msgspec.json.Decoder(_Event)
_jobs = msgspec.json.Decoder(_Job)
_lists = msgspec.json.Decoder(_JobList)
_failures = msgspec.json.Decoder(_Failure)


def _body(job: _Job) -> dict[str, Any]:
    m = job.metadata
    meta: dict[str, Any] = {"name": m.name, "namespace": m.namespace}
    for key in ("uid", "resourceVersion", "deletionTimestamp", "creationTimestamp"):
        value = getattr(m, key)
        if value is not None:
            meta[key] = value
    labels = m.labels or {}
    meta["labels"] = {k: labels[k] for k in KEPT_LABELS if k in labels}
    annotations = m.annotations or {}
    meta["annotations"] = {k: annotations[k] for k in KEPT_ANNOTATIONS if k in annotations}
    meta["ownerReferences"] = [{"uid": o.uid, "controller": True} for o in m.ownerReferences or () if o.controller]
    meta["finalizers"] = list(m.finalizers or ())
    status: dict[str, Any] = {}
    if job.status is not None:
        s = job.status
        if s.startTime is not None:
            status["startTime"] = s.startTime
        if s.completionTime is not None:
            status["completionTime"] = s.completionTime
        status["conditions"] = [
            {"type": c.type, "status": c.status, "lastTransitionTime": c.lastTransitionTime, "reason": c.reason,
             "message": c.message}
            for c in s.conditions or () if c.status == "True" and c.type in TERMINAL_CONDITIONS]
    return {"metadata": meta, "status": status}


def decode_event(line: bytes) -> tuple[str, dict[str, Any]]:
    """One watch line: its type and, for ADDED, MODIFIED, DELETED and BOOKMARK, the slim Job; for
    ERROR, ``{"code", "reason", "message"}`` of the API server's Status."""
    try:
        event = _events.decode(line)
        if event.type == "ERROR":
            failure = _failures.decode(event.object)
            return event.type, {"code": failure.code, "reason": failure.reason, "message": failure.message}
        return event.type, _body(_jobs.decode(event.object))
    except msgspec.DecodeError as error:
        raise WireError(f"not a watch event: {error}") from None


def decode_list(page: bytes) -> tuple[list[dict[str, Any]], str, str | None]:
    """One page of a Job list: the slim Jobs, the list's resourceVersion, its continue token."""
    try:
        listed = _lists.decode(page)
    except msgspec.DecodeError as error:
        raise WireError(f"not a Job list: {error}") from None
    return [_body(job) for job in listed.items or ()], listed.metadata.resourceVersion, listed.metadata.continue_


def decode_job(data: bytes) -> dict[str, Any]:
    """One Job as an API call answers it (a create, a get, a patch): the slim Job."""
    try:
        return _body(_jobs.decode(data))
    except msgspec.DecodeError as error:
        raise WireError(f"not a Job: {error}") from None

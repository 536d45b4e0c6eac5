"""What a Job's object says about its run, and which finished Jobs to prune. Pure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trigger_operator.api import ANNOTATION_SCHEDULED_TIME, FINALIZER
from trigger_operator.model.status import MESSAGE_MAX_CHARS, cut, parse_time


class JobPhase(enum.StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Presence(enum.StrEnum):
    """Whether the Job still exists, and how sure we are of its last state."""

    EXISTS = "Exists"
    DELETING = "Deleting"  # has a deletionTimestamp; kept by a finalizer (ours, or foreground deletion)
    DELETED = "Deleted"  # the watch reported its deletion: the view is its final state
    VANISHED = "Vanished"  # a fresh read found it missing: the view is only the last state we saw


@dataclass(frozen=True)
class JobView:
    name: str
    phase: JobPhase
    scheduled_time: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    created_at: dt.datetime | None
    message: str | None  # for failed Jobs: the Job condition's reason and message
    presence: Presence = Presence.EXISTS
    owner_uid: str | None = None  # the controlling owner's uid: only a Job this Trigger owns is its own
    finalized: bool = False  # carries our FINALIZER
    uid: str | None = None
    resource_version: int | None = None  # to keep the newest of two views of one Job
    message_enriched: bool = False  # the failed pods' messages were added to `message`

    def with_message(self, message: str) -> JobView:
        return dataclasses.replace(self, message=message, message_enriched=True)

    @property
    def finished(self) -> bool:
        return self.phase is not JobPhase.RUNNING

    @property
    def exists(self) -> bool:
        return self.presence in (Presence.EXISTS, Presence.DELETING)

    @property
    def deletion_begun(self) -> bool:
        """Being deleted (it may still exist: `exists`), deleted, or vanished: no longer part of the
        history either way."""
        return self.presence is not Presence.EXISTS

    def gone(self, presence: Presence) -> JobView:
        """This view, once the Job is known to be gone (``DELETED`` or ``VANISHED``)."""
        return dataclasses.replace(self, presence=presence)


def observe_job(job: Mapping[str, Any], *, deleted: bool = False) -> JobView:
    """A Job's body as the core reads it; ``deleted`` when the watch reported its deletion."""
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    phase, message, finished_at = JobPhase.RUNNING, None, None
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        # Complete and Failed are terminal; SuccessCriteriaMet and FailureTarget come before them.
        if condition.get("type") == "Complete":
            phase, finished_at = JobPhase.SUCCEEDED, parse_time(condition.get("lastTransitionTime"))
        elif condition.get("type") == "Failed":
            phase, finished_at = JobPhase.FAILED, parse_time(condition.get("lastTransitionTime"))
            message = ": ".join(p for p in (condition.get("reason"), condition.get("message")) if p)
    return JobView(
        name=meta.get("name", ""),
        phase=phase,
        scheduled_time=parse_time((meta.get("annotations") or {}).get(ANNOTATION_SCHEDULED_TIME)),
        started_at=parse_time(status.get("startTime")),
        finished_at=parse_time(status.get("completionTime")) or finished_at,
        created_at=parse_time(meta.get("creationTimestamp")),
        message=message,
        presence=Presence.DELETED if deleted else Presence.DELETING if meta.get("deletionTimestamp")
        else Presence.EXISTS,
        owner_uid=next((o.get("uid") for o in meta.get("ownerReferences") or [] if o.get("controller")), None),
        finalized=FINALIZER in (meta.get("finalizers") or []),
        uid=meta.get("uid"),
        resource_version=revision(meta),
    )


def revision(meta: Mapping[str, Any]) -> int | None:
    """An object's resourceVersion as a number, to tell the newer of two copies apart. It is an
    etcd revision in every API server we know; None when it is not a number."""
    value = str(meta.get("resourceVersion", ""))
    return int(value) if value.isdigit() else None


def failure_message(job_message: str | None, pods: Iterable[Mapping[str, Any]]) -> str:
    """The Job condition's message plus what the failed containers said (termination message,
    else reason and exit code), newest pod first, cut to MESSAGE_MAX_CHARS (model/status.py's one rule)."""
    parts = [job_message] if job_message else []
    ordered = sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True)
    for pod in ordered:
        said_by_pod = []
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated and terminated.get("exitCode", 0) != 0:
                said = (terminated.get("message") or "").strip() or terminated.get("reason") or "failed"
                said_by_pod.append(f"container {container.get('name')} exited with code "
                                   f"{terminated.get('exitCode')}: {said}")
        if said_by_pod:
            parts.extend(said_by_pod)
            break  # the newest failed pod tells the story; older retries usually repeat it
    text = "; ".join(parts) or "the Job failed"
    return cut(text, MESSAGE_MAX_CHARS)


def jobs_to_prune(finished: Sequence[JobView], *, successful_limit: int, failed_limit: int) -> list[str]:
    """Names of finished Jobs beyond the history limits, oldest first (ties broken by name, so the
    choice is stable)."""
    def age_key(job: JobView) -> tuple[dt.datetime, str]:
        when = job.finished_at or job.started_at or job.created_at or dt.datetime.min.replace(tzinfo=dt.UTC)
        return when, job.name

    prune: list[str] = []
    for phase, limit in ((JobPhase.SUCCEEDED, successful_limit), (JobPhase.FAILED, failed_limit)):
        done = sorted((j for j in finished if j.phase is phase and not j.deletion_begun), key=age_key)
        prune.extend(j.name for j in done[: max(0, len(done) - limit)])
    return prune

"""What one reconcile pass is given, what it drafts, and the `Plan` it returns. Pure.

A pass (core/reconcile.py) is composed of plain functions, each taking the two halves of its state:

- `Observed`, what the pass was given: the Trigger as read, its Jobs, the time. Never changed.
- `Draft`, the one thing a pass changes: the working copy of the status and the lists that become
  the `Plan` (Jobs to create and delete, Events, when to look again, the source to read).

The parsed spec is in neither: a function that needs it takes it as an argument, typed
``TriggerSpec | None`` only where a run may end while the spec is invalid (core/runs.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trigger_operator.conditions.evaluate import NO_CHECKS, OwnChecks, UnwrittenCheck
from trigger_operator.jobs.observe import JobView
from trigger_operator.model.notice import Notice
from trigger_operator.model.spec import ConditionSource
from trigger_operator.model.status import ActiveRun, Execution, TriggerStatus
from trigger_operator.model.trigger import TriggerView


@dataclass(frozen=True)
class NewJob:
    run: ActiveRun
    manifest: dict[str, Any]
    notice: Notice  # posted once the API server has taken the Job, never before
    # The run of the moment an earlier guarded write announced (core/runs.py, `announced`), due
    # within ``create_within``: its create may go out before this pass's status write.
    announced: bool = False


@dataclass(frozen=True)
class Plan:
    status: TriggerStatus
    patch: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # empty: status is as stored
    create: tuple[NewJob, ...] = ()
    delete: tuple[str, ...] = ()
    release: tuple[str, ...] = ()  # Jobs whose result is counted (or not ours): remove our finalizer
    # Of those, the ones whose run this copy's recentExecutions shows counted: a count is never
    # taken back, so a stale copy proves these as well as a current one does.
    release_proven: frozenset[str] = frozenset()
    notices: tuple[Notice, ...] = ()
    wake_at: dt.datetime | None = None
    check: ConditionSource | None = None  # a source due to be read: the shell reads it and passes the reading
    # The source to read is the admin's default from the catalog (filled from actionConfig), not the
    # Trigger's own: it needs no author approval (admission/approval.py, docs/security.md).
    check_is_default: bool = False
    finished: tuple[Execution, ...] = ()  # runs this pass counts (for metrics, once the write is in)
    # A check this pass took in without writing it (it changed nothing): the shell remembers it, so
    # the next check is due an interval after it (conditions/evaluate.py, `last_check`).
    unwritten_check: UnwrittenCheck | None = None
    # Every create is an announced moment's run: the shell sends them first, then the status write
    # (docs/exactly-once.md, "one API call between a moment and its Job").
    create_first: bool = False

    @property
    def write_may_wait(self) -> bool:
        """Whether this create-first plan's status write may be left to the next pass once its creates
        are all taken (docs/exactly-once.md, "the deferred listing write"): that pass decides it again
        from the same stored copy plus the new Jobs (it adopts their runs, `core.runs.unlisted_announced_run`)
        and loses nothing of this one. So the plan may do nothing else but releases, which that pass
        decides again from the same Jobs (holding our finalizer longer is always safe): no deletes
        (Replace's is decided only with the run it makes room for), no runs counted, no Events (both
        are written or posted by the plan that decided them, not necessarily decided again) and no
        check of a source (`check`, `unwritten_check`: a reading is used once)."""
        return (self.create_first and not self.delete and not self.finished and not self.notices
                and self.check is None and self.unwritten_check is None)

    @property
    def acts(self) -> bool:
        """Whether carrying out the plan touches Jobs in a way that needs a Trigger copy confirmed
        current (a release the copy proves counted does not: it costs no read of the Trigger)."""
        return bool(self.create or self.delete or set(self.release) - self.release_proven)


@dataclass(frozen=True)
class PartView:
    """A Trigger of the namespace as a compound Trigger's pass sees it (core/firing/compound.py):
    its last firing, as its status says (the run it started and when: None, None if none), the
    parts it names if it is a compound Trigger itself (to find cycles), and, for a direct part, how
    many compound Triggers naming it come before the one whose pass this is (creation order: the
    bound of compounds per part)."""

    name: str
    fired_run: str | None = None
    fired_at: dt.datetime | None = None
    parts: tuple[str, ...] = ()
    compounds_before: int = 0


@dataclass(frozen=True)
class Observed:
    """What one pass is given. ``jobs``: the Jobs labelled with the Trigger's name, any owner.
    ``name_hold``: how old a Job of ours must be before our finalizer comes off (core/runs.py).
    ``create_within``: how late an announced moment's create may go out before the write (core/runs.py).
    ``own_checks``: what this process knows of its own checks of the source (conditions/evaluate.py)."""

    trigger: TriggerView
    jobs: Mapping[str, JobView]
    now: dt.datetime
    name_hold: dt.timedelta = dt.timedelta(0)
    # How late an announced moment's create may still go first (the shell's create_within); None:
    # never (every create waits for its pass's status write, as core tests that omit it expect).
    create_within: dt.timedelta | None = None
    own_checks: OwnChecks = NO_CHECKS
    # A compound Trigger's parts, and every compound Trigger reachable through them, by name, at most
    # one more than core/firing/compound.py's MAX_REACHABLE_PARTS (the one more says "too many"); a
    # name missing here names no Trigger of the namespace. Empty for any other Trigger.
    parts: Mapping[str, PartView] = field(default_factory=dict)
    shards: int = 1  # the sharded mode's shard count (more than 1): its Jobs carry their shard's label

    def ours(self, job: JobView) -> bool:
        """The one owner rule: a Job is this Trigger's only if the Trigger (this uid) controls it.
        Jobs of a deleted namesake, orphans and hand-made Jobs with our label are never counted,
        adopted or pruned."""
        return job.owner_uid == self.trigger.uid


@dataclass
class Draft:
    """The plan being drafted: the status as this pass has changed it so far, and what to do."""

    status: TriggerStatus
    create: list[NewJob] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    wake_at: dt.datetime | None = None
    check: ConditionSource | None = None  # a conditional Trigger's source, due to be read
    check_is_default: bool = False  # that source is the catalog's default, not the Trigger's own
    finished: list[Execution] = field(default_factory=list)  # runs counted by this pass
    quiet_check: UnwrittenCheck | None = None  # this pass's check changes nothing that matters: unwritten

    def notice(self, type_: str, reason: str, message: str) -> None:
        self.notices.append(Notice(type_, reason, message))

    def wake(self, at: dt.datetime | None) -> None:
        """Look again at ``at`` at the latest (the earliest of all the times asked for wins)."""
        if at is not None and (self.wake_at is None or at < self.wake_at):
            self.wake_at = at

"""Carrying a plan of `core.reconcile` out against the API, in the order it explains: the status
write first (guarded by resourceVersion), or a fresh read confirming the copy when there is nothing
to write (`settle`); then Events, releases, deletes and creates (`carry_out`). Facts learnt on the
way go to the store; what needs another pass is asked of ``requeues``. It decides nothing.

The exactly-once rule it keeps (docs/exactly-once.md): Jobs are created, deleted or released only
on the strength of a Trigger copy confirmed current, either by the status write of the same pass or,
when there is nothing to write, by a fresh read that finds the same resourceVersion (as the CronJob
controller re-reads before acting on a surprise). A normal run always has its write, so the read
costs nothing there. "Confirmed current" is a moment, not a lock: a replica paused right after its
write could wake up after another replica made, ran, counted and deleted the same Job. So a create
goes out only within ``create_within_seconds`` of its pass's start, and the core keeps our
finalizer on a Job until it is ``name_hold_seconds`` old: the name is still taken whenever such a
late create could arrive, and it gets AlreadyExists."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from trigger_operator.config import SchedulerSettings
from trigger_operator.controller.result import Requeues, TerminalError
from trigger_operator.controller.store import Key, Store
from trigger_operator.core.plan import NewJob, Plan
from trigger_operator.core.reconcile import refused_creates
from trigger_operator.core.runs import CREATE_GRACE
from trigger_operator.kube.interface import (
    AlreadyExists,
    Body,
    ClusterApi,
    Conflict,
    NotFound,
    Rejected,
    RetryLater,
    TooLate,
)
from trigger_operator.logs import about
from trigger_operator.metrics import Metrics
from trigger_operator.model.notice import Notice
from trigger_operator.model.status import RunKind
from trigger_operator.model.trigger import trigger_view

log = logging.getLogger("trigger_operator.controller")
# HTTP statuses with which a status write is refused for what it says (invalid, too large): the same
# record is refused again until the core words it differently (`TerminalError`).
RECORD_REFUSED_FOR_GOOD = frozenset({400, 413, 422})
# Past the create grace of every run the pass fired (none fired later than now), so the core records
# them Lost instead of creating them again.
TERMINAL_MARGIN = dt.timedelta(seconds=1)


class Executor:
    """``gone(key)``: the Trigger turned out deleted (the reconciler forgets it); ``background``
    runs an Event's post as a task of its own."""

    def __init__(self, api: ClusterApi, settings: SchedulerSettings, store: Store, requeues: Requeues, *,
                 clock: Callable[[], dt.datetime], monotonic: Callable[[], float],
                 background: Callable[[Coroutine[Any, Any, None]], None], gone: Callable[[Key], None],
                 metrics: Metrics | None = None) -> None:
        self.api = api
        self.settings = settings
        self.store = store
        self.requeues = requeues
        self.clock = clock
        self.monotonic = monotonic
        self.background = background
        self.gone = gone
        self.metrics = metrics

    async def settle(self, key: Key, body: Body, plan: Plan) -> Body | None:
        """The Trigger copy the plan may act on: as written by the plan's status patch, or confirmed
        current by a fresh read when the plan writes nothing but touches Jobs. None when the copy
        was stale (the fresh one is kept and the key comes back at once) or the Trigger is gone.
        `Rejected`: the API server refused the status write for good (the reconciler's to handle)."""
        if plan.patch:
            return await self.write(key, body, plan.patch)
        if not plan.acts:
            return body
        try:
            fresh = await self.api.get_trigger(*key)
        except NotFound:
            self.gone(key)
            return None
        if fresh["metadata"].get("resourceVersion") == body["metadata"].get("resourceVersion"):
            return body
        self.store.on_trigger(None, fresh)
        self.requeues.again(key)
        return None

    async def write(self, key: Key, body: Body, patch: Mapping[str, Any]) -> Body | None:
        try:
            written = await self.api.patch_trigger_status(*key, body["metadata"]["resourceVersion"], patch)
        except Conflict:
            await self._refresh(key)
            self.requeues.again(key)
            return None
        except NotFound:
            self.gone(key)
            return None
        if not self.store.wrote(key, written):
            return None  # deleted while we wrote: make no Job for it
        return written

    async def create_first(self, key: Key, body: Body, plan: Plan, now: dt.datetime,
                           began: float) -> tuple[dict[str, str], bool]:
        """The creates of a plan whose runs an earlier guarded write announced (`Plan.create_first`),
        sent before its status write, on ``body`` as the store holds it (our last write's answer or
        newer). Returns the API server's refusals, recorded once the write is in (`carry_out`), and
        whether every create was taken (answered with its Job: none refused, too late, already
        existing or to retry later)."""
        refused: dict[str, str] = {}
        taken = True
        for new in plan.create:
            created, refusal = await self._create(key, body, new, now, began)
            taken = taken and created
            if refusal is not None:
                refused[new.run.name] = refusal
        return refused, taken

    async def carry_out(self, key: Key, body: Body, plan: Plan, now: dt.datetime, began: float, *,
                        refused: Mapping[str, str] | None = None) -> None:
        """The plan's Jobs and Events, on ``body``, the copy `settle` confirmed. ``began``: the
        monotonic time the pass began (before any read), which bounds when a create may go out.
        A plan that created first (`create_first`) has its creates done: ``refused`` are theirs."""
        for notice in plan.notices:
            self.post_later(body, notice, now)
        for name in plan.release:
            await self._release(key, name)
        # Deletes before creates: under concurrencyPolicy Replace the old Job must be gone first.
        for name in plan.delete:
            self.store.mark_deleted(key, name, await self.api.delete_job(key[0], name))
            log.info("deleted Job %s/%s", key[0], name, extra=about(key[0], key[1], name))
        failed: dict[str, str] = dict(refused or {})
        for new in () if plan.create_first else plan.create:
            _, refusal = await self._create(key, body, new, now, began)
            if refusal is not None:
                failed[new.run.name] = refusal
        if failed:
            await self._record_refused_creates(key, body, failed, now)

    async def _release(self, key: Key, name: str) -> None:
        try:
            released = await self.api.release_job(key[0], name)
        except (Rejected, RetryLater, Conflict) as error:
            # Never fatal: the Job stays held a little longer, the next pass tries again, and
            # nothing else of this pass (new runs above all) waits for it.
            log.warning("could not release Job %s/%s (remove our finalizer): %s", key[0], name, error,
                        extra=about(key[0], key[1], name))
            return
        self.store.saw_job(key, name, released)

    async def _create(self, key: Key, body: Body, new: NewJob, now: dt.datetime,
                      began: float) -> tuple[bool, str | None]:
        """Creates one Job of the plan; returns whether the API server took it (answered with the
        Job), and its message if it refused it for good."""
        namespace, name = key[0], new.run.name
        within = self.settings.create_within_seconds
        if new.announced:  # within create_within of its moment, not of the pass (rule 4's margin)
            within -= max(0.0, (now - new.run.scheduled_time).total_seconds())

        def in_time() -> bool:  # asked in the API's thread, right before the create goes out
            return self.monotonic() - began <= within

        try:
            created = await self.api.create_job(namespace, new.manifest, in_time)
        except TooLate:
            # Paused or starved since the pass began: what it decided may be overtaken.
            log.warning("Job %s/%s not created: its pass began %.1f s ago, more than %g s; deciding again",
                        namespace, name, self.monotonic() - began, within, extra=about(namespace, key[1], name))
            self.requeues.again(key)
            return False, None
        except AlreadyExists:
            # Ours (a retry, another replica) or a stranger's: the next pass decides by its owner.
            self.store.saw_job(key, name, await self.api.get_job(namespace, name))
            self.requeues.again(key)
            return False, None
        except Rejected as error:
            return False, str(error)
        except RetryLater as error:
            log.warning("Job %s/%s not created yet: %s", namespace, name, error, extra=about(namespace, key[1], name))
            self.post_later(body, Notice("Warning", "JobCreateDelayed", f"Job {name} is not created yet, "
                                         f"retrying: {error}"), now)
            self.requeues.again(key, self.clock() + dt.timedelta(seconds=self.settings.retry_seconds))
            return False, None
        self.store.on_job("ADDED", created)
        self.post_later(body, new.notice, now)
        if self.metrics is not None:
            late = (self.clock() - new.run.scheduled_time).total_seconds() \
                if new.run.kind is RunKind.SCHEDULED else None
            self.metrics.run_started(*run_labels(body), new.run.kind.value, late)
        log.info("created Job %s/%s", namespace, name, extra=about(namespace, key[1], name))
        return True, None

    async def _record_refused_creates(self, key: Key, body: Body, refused: Mapping[str, str],
                                      now: dt.datetime) -> None:
        """Counts the runs whose Job the API server refused as failed. If it refuses that status
        write too, the next pass would create, be refused and record the same again: terminal."""
        plan = refused_creates(trigger_view(body, now), refused, now)
        try:
            written = await self.write(key, body, plan.patch)
        except Rejected as refusal:
            if refusal.status not in RECORD_REFUSED_FOR_GOOD:
                raise  # e.g. a 403: RBAC fixed by an admin changes no object, so it is retried
            raise TerminalError(f"the API server refused the status write recording refused Job creates "
                                f"({refusal_answer(refusal)})",
                                retry_at=now + CREATE_GRACE + TERMINAL_MARGIN) from refusal
        if written is None:
            return
        for notice in plan.notices:
            self.post_later(written, notice, now)
        if self.metrics is not None:
            self.metrics.runs_finished(*run_labels(written), plan.finished)
        self.requeues.again(key)  # the failure may reach maxConsecutiveFailures

    def post_later(self, body: Mapping[str, Any], notice: Notice, now: dt.datetime) -> None:
        """Events are best effort and must not hold up the next Trigger: they are posted in the
        background, in order per reconcile (each task is one Event)."""
        if notice.routine and not self.settings.routine_events:
            return
        self.background(self.api.post_event(body, notice, now))

    async def _refresh(self, key: Key) -> None:
        try:
            self.store.on_trigger(None, await self.api.get_trigger(*key))
        except NotFound:
            self.store.forget_trigger(key)


def refusal_answer(refusal: Rejected) -> str:
    """How a log line or status names a refusal: its HTTP status only, never the API server's
    message, which may quote what we sent (a reading's values)."""
    return f"HTTP {refusal.status}" if refusal.status else "refused for good"


def run_labels(body: Mapping[str, Any]) -> tuple[str, str]:
    """A Trigger's action and trigger type, the labels its runs are counted under."""
    spec = body.get("spec") or {}
    return str(spec.get("actionType") or "unknown"), str(spec.get("triggerType") or "unknown")

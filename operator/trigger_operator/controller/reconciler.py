"""The reconciler, as controller-runtime's: `sync(key)` reads one Trigger and its Jobs from the
store, asks the pure core what to do (`core.reconcile`), has the executor carry the plan out, and
returns its `Result` (when to come back) or raises (a `TerminalError` for what retrying cannot
fix). It keeps no timer: the worker loop (controller/worker.py) applies what it returns."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any

from trigger_operator.conditions.evaluate import OwnChecks
from trigger_operator.conditions.measure import Reading
from trigger_operator.config import OperatorConfig
from trigger_operator.controller.catalog import Catalog
from trigger_operator.controller.checks import Checks
from trigger_operator.controller.executor import Executor, refusal_answer, run_labels
from trigger_operator.controller.ownership import Ownership
from trigger_operator.controller.result import BACKOFF_CAP_SECONDS, Requeues, Result, backoff_seconds
from trigger_operator.controller.store import Key, Store
from trigger_operator.core.firing.compound import part_names
from trigger_operator.core.plan import PartView, Plan
from trigger_operator.core.reconcile import reconcile
from trigger_operator.core.runs import announced_job
from trigger_operator.jobs.observe import JobPhase, JobView, Presence, failure_message
from trigger_operator.kube.interface import Body, ClusterApi, NotFound, Rejected
from trigger_operator.logs import about
from trigger_operator.metrics import Metrics
from trigger_operator.model.trigger import TriggerView, trigger_view

log = logging.getLogger("trigger_operator.controller")
# A running Job of an active run not heard of for this long is read again from the API server.
STALE_JOB_SECONDS = 300.0
# A Trigger whose status write the API server refuses for good is tried again after retry_seconds,
# doubling per refusal up to this: its status cannot move, and re-sending it at once helps nobody.


class Reconciler:
    def __init__(self, api: ClusterApi, config: OperatorConfig, store: Store, checks: Checks, catalog: Catalog,
                 ownership: Ownership, requeues: Requeues, *, clock: Callable[[], dt.datetime],
                 monotonic: Callable[[], float], background: Callable[[Coroutine[Any, Any, None]], None],
                 metrics: Metrics | None = None) -> None:
        self.api = api
        self.config = config
        self.store = store
        self.checks = checks
        self.catalog = catalog
        self.ownership = ownership
        self.requeues = requeues
        self.clock = clock
        self.monotonic = monotonic
        self.metrics = metrics
        self.executor = Executor(api, config.scheduler, store, requeues, clock=clock, monotonic=monotonic,
                                 background=background, gone=self._gone, metrics=metrics)
        self._name_hold = dt.timedelta(seconds=config.scheduler.name_hold_seconds)  # once, not per pass
        # None: no create goes before its write (the kill switch, TRIGGER_OPERATOR_SCHEDULER_CREATE_FIRST=false).
        self._create_within = dt.timedelta(seconds=config.scheduler.create_within_seconds) \
            if config.scheduler.create_first else None
        self._shards = config.leader.shards if config.leader.enabled else 1
        self._refusals: dict[Key, int] = {}  # status writes refused for good in a row, per Trigger
        # Per Trigger: the resourceVersion our last status write produced, and the ownership term it
        # was made in; kept only while we own the Trigger without a lapse seen (`_vouched`).
        self._own_writes: dict[Key, tuple[str, int]] = {}
        # Per Trigger: the uid of the copy a pass created first on and left its write to the next
        # pass for, and the Jobs it created (`_sync`: withdrawn if that Trigger is gone by then).
        self._deferred: dict[Key, tuple[str, tuple[str, ...]]] = {}

    async def sync(self, key: Key) -> Result:
        """One reconcile of one Trigger (by its owner only: another replica drops the key, and `lead`
        brings every key back). Returns when to come back; the worker loop applies it."""
        await self._sync(key)
        return Result(self.requeues.take(key))

    async def _sync(self, key: Key) -> None:
        if not self.ownership.owns(*key):
            self._not_owned(key)
            return
        term = self.ownership.term
        body = self.store.trigger(key)
        deferred = self._deferred.pop(key, None)
        if deferred is not None and (body is None or body["metadata"].get("uid") != deferred[0]):
            # The watch caught up between the creates and the deferred write: the Trigger they were
            # made for is gone (or re-created under its name). No write on its copy will fail to
            # say so, so its Jobs are withdrawn here, as `_withdraw_first_creates` does.
            await self._withdraw(key, deferred[0], deferred[1])
        if body is None:
            self._own_writes.pop(key, None)
            self.checks.forget(key)
            self._refusals.pop(key, None)
            await self._release_orphans(key)
            return
        began = self.monotonic()  # before any read: a create decided now may go out only so long after
        now = self.clock()
        view = trigger_view(body, now)
        jobs = await self._jobs_for(view, now, vouched=self._vouched(key, body, term))
        reading = self.checks.readings.get(key)
        own = self.checks.own(key)
        try:
            plan = self._decide(view, jobs, now, reading, own)
        except Exception:
            self.checks.used(key, reading)  # a reading that breaks the pass is dropped, never retried for ever
            raise
        refused: dict[str, str] = {}
        if plan.create_first:  # the one call on the moment's critical path, on a copy vouched for
            if not self.ownership.owns(*key):  # lapsed: nothing of this pass goes out (`take_back`)
                self._not_owned(key)
                return
            if self._vouched(key, body, term):
                refused, taken = await self.executor.create_first(key, body, plan, now, began)
                if taken and reading is None and plan.write_may_wait:
                    # The write listing the runs waits for the next pass, queued after every key
                    # already due: a burst's creates go out before its writes. That pass finds the
                    # Jobs (the creates' answers are in the store) and adopts their runs, as when a
                    # listing write did not land (docs/exactly-once.md, "the deferred listing write").
                    self._deferred[key] = (str(body["metadata"].get("uid") or ""),
                                           tuple(new.run.name for new in plan.create))
                    self.requeues.again(key)
                    return
            else:
                plan = replace(plan, create_first=False)  # the write goes first, as for any run
        try:
            current = await self.executor.settle(key, body, plan)
        except Rejected as refusal:
            self.checks.used(key, reading)  # never sent again as it was
            plan, current = await self._after_refusal(key, body, view, jobs, now, reading, own, refusal)
        if current is None:
            await self._withdraw_first_creates(key, body, view, plan)
            return
        if plan.patch:  # a write landed: a refusal's backoff starts afresh (a pass writing nothing proves nothing)
            self._refusals.pop(key, None)
        self.checks.used(key, reading)  # it is in status now, or remembered as a check that changed nothing
        if plan.unwritten_check is not None:
            self.checks.took_unwritten(key, plan.unwritten_check)
        if self.metrics is not None and plan.finished:
            self.metrics.runs_finished(*run_labels(body), plan.finished)
        if plan.check is not None:
            self.checks.start(key, plan.check, now, current, default=plan.check_is_default)
        if not self.ownership.owns(*key):  # lost the lease while writing: the next owner acts on what we wrote
            self._not_owned(key)
            return
        if plan.patch:  # vouches only for the copy the store holds: not for an answer a newer copy overtook
            written = current["metadata"].get("resourceVersion") or ""
            stored = self.store.trigger(key)
            if stored is not None and stored["metadata"].get("resourceVersion") == written:
                self._own_writes[key] = (written, term)
            else:
                self._own_writes.pop(key, None)
        if plan.wake_at is not None:  # asked before carrying out: a failure there still honours it
            self.requeues.again(key, plan.wake_at)
        await self.executor.carry_out(key, current, plan, now, began, refused=refused)
        if plan.status.active:  # look at running Jobs now and then, should their watch events be lost
            self.requeues.again(key, self.clock() + dt.timedelta(seconds=STALE_JOB_SECONDS))

    async def _withdraw_first_creates(self, key: Key, body: Body, view: TriggerView, plan: Plan) -> None:
        """The write after a create sent first did not land, and the Trigger it was made for is gone
        (deleted, or deleted and created again under its name, the watch lagging): its Jobs are
        deleted (Foreground: the pods stop) and released at once, so the name is freed for the new
        Trigger, which waits for it (`core.runs.fold_finished_runs`) rather than failing its run.
        The creates are this pass's (`create_first`) or the announced run's, sent by the pass before
        whose write was deferred to this one. Only Jobs that Trigger controls (its uid) are touched;
        for the same Trigger, refreshed, the next pass adopts them instead
        (`core.firing.schedule.adopt_announced`)."""
        uid = body["metadata"].get("uid")
        stored = self.store.trigger(key)
        if stored is not None and stored["metadata"].get("uid") == uid:
            return
        names = [new.run.name for new in plan.create] if plan.create_first else []
        ahead = announced_job(view)
        listed = {r.name for r in view.status.active} | {e.name for e in view.status.recent_executions}
        if ahead is not None and ahead[0] not in names and ahead[0] not in listed:  # created first, never listed
            names.append(ahead[0])
        await self._withdraw(key, uid, names)

    async def _withdraw(self, key: Key, uid: str | None, names: Sequence[str]) -> None:
        """Deletes (Foreground) and releases the Jobs named that Trigger uid ``uid`` controls."""
        for name in names:
            job = self.store.job(key, name)
            if job is None or not job.exists or job.owner_uid != uid:
                continue
            log.info("deleting Job %s/%s: it was created first for Trigger uid %s, gone since", key[0],
                     name, uid, extra=about(key[0], key[1], name))
            self.store.mark_deleted(key, name, await self.api.delete_job(key[0], name))
            self.store.saw_job(key, name, await self.api.release_job(key[0], name))

    def _not_owned(self, key: Key) -> None:
        self._own_writes.pop(key, None)
        self._deferred.pop(key, None)  # the next owner's pass adopts, or the garbage collector deletes
        self.ownership.drop(key)

    def _vouched(self, key: Key, body: Body, term: int) -> bool:
        """Whether an announced run may be created before the pass's write on ``body`` (rule 3 as
        amended, docs/exactly-once.md): ``body`` is the answer of our own status write, and we have
        owned the Trigger since, with no lapse seen and no new term. A copy the watch delivered, one
        read after a take-over, or one from before a `lead` or `take_back` is not: the write goes first."""
        rv = body["metadata"].get("resourceVersion") or ""
        return bool(rv) and self._own_writes.get(key) == (rv, term) and self.ownership.term == term

    def _decide(self, view: TriggerView, jobs: Mapping[str, JobView], now: dt.datetime, reading: Reading | None,
                own: OwnChecks) -> Plan:
        return reconcile(view, jobs, self.catalog.templates, now, reading, name_hold=self._name_hold,
                         create_within=self._create_within, own_checks=own, sources=self.catalog.default_sources,
                         parts=self._parts(view), shards=self._shards)

    def _parts(self, view: TriggerView) -> dict[str, PartView]:
        """A compound Trigger's parts as the store holds them (none for any other Trigger)."""
        names = part_names(view.spec)
        return self.store.part_views(view.namespace, view.name, names) if names else {}

    async def _after_refusal(self, key: Key, body: Body, view: TriggerView, jobs: Mapping[str, JobView],
                             now: dt.datetime, reading: Reading | None, own: OwnChecks,
                             refusal: Rejected) -> tuple[Plan, Body | None]:
        """After the API server refused a pass's status write for good (422 Invalid, 413 or etcd's
        "request is too large"): the same write would be refused at every pass, for ever. A
        reading in it is dropped and the pass decided again as a failed check saying so (its
        values never sent again; the API server's message is not repeated, as it may quote them).
        If even that is refused, or there was no reading, the Trigger backs off: one log line per
        step, no traceback (the refusal is an answer, not a bug of ours). Not a `TerminalError`:
        what a pass writes moves with time and readings, so a later pass may well land."""
        answer = refusal_answer(refusal)
        if reading is not None:
            dropped = replace(reading, raw=None, error=f"the status write was refused by the API server ({answer}): "
                                                       "the reading was dropped")
            plan = self._decide(view, jobs, now, dropped, own)
            try:
                return plan, await self.executor.settle(key, body, plan)
            except Rejected as again:
                answer = refusal_answer(again)
        else:
            plan = Plan(status=view.status)
        steps = self._refusals[key] = self._refusals.get(key, 0) + 1
        delay = backoff_seconds(self.config.scheduler.retry_seconds, steps, BACKOFF_CAP_SECONDS)
        log.warning("the API server refused the status write of Trigger %s/%s (%s), %d time(s) in a row; "
                    "trying again in %.0f s", *key, answer, steps, delay, extra=about(*key))
        self.requeues.again(key, self.clock() + dt.timedelta(seconds=delay))
        return plan, None

    async def _jobs_for(self, view: TriggerView, now: dt.datetime, *, vouched: bool) -> dict[str, JobView]:
        """The Jobs labelled with the Trigger's name as the watch saw them, completed by fresh reads
        where the watch may lag (a run in status.active with no Job seen, or running but silent for
        long; the announced moment's Job, below) and by pod messages for failed runs. Facts only:
        the core decides what they mean. ``vouched``: the copy is our own write's answer, owned since."""
        key = (view.namespace, view.name)
        for run in view.status.active:
            current = self.store.job(key, run.name)
            silent_for = self.store.silent_for(view.namespace, run.name)
            if current is None or (current.exists and not current.finished and silent_for > STALE_JOB_SECONDS):
                self.store.saw_job(key, run.name, await self.api.get_job(view.namespace, run.name))
            current = self.store.job(key, run.name)
            if current is not None and current.phase is JobPhase.FAILED and not current.message_enriched:
                pods = await self.api.job_pods(view.namespace, run.name)
                self.store.enrich_job(key, run.name, failure_message(current.message, pods))
        ahead = announced_job(view)
        if ahead is not None and self.store.job(key, ahead[0]) is None and (
                ahead[1] + self._name_hold <= now
                or (not vouched and self._create_within is not None and ahead[1] <= now)):
            # The announced moment came and went unlisted: whether a create sent first made its Job
            # decides between listing the run and withdrawing the announcement (core/runs.py). On a
            # copy not our own write's answer (a restart, a take-over, a foreign write), the pass
            # asks as soon as the moment has come: another process may have created it first, its
            # watch event not here yet, and a pass past the starting deadline (or with a later
            # moment due) would count it missed. Our own copy needs no read: we create it ourselves.
            self.store.saw_job(key, ahead[0], await self.api.get_job(view.namespace, ahead[0]))
        active = {r.name for r in view.status.active}
        if ahead is not None:
            active.add(ahead[0])  # an unlisted announced run's Job, even gone, is adopted (then counted)
        for name, job in self.store.jobs_of(key).items():
            if not job.exists and name not in active:  # counted and gone: nothing more to decide
                self.store.forget_job(key, name)
        return self.store.jobs_of(key)

    async def _release_orphans(self, key: Key) -> None:
        """Jobs of a Trigger that is gone are deleted by the garbage collector; our finalizer must not
        hold them. Released only once a fresh read confirms the Trigger is gone (at start-up a Job's
        watch event may come before its Trigger's)."""
        jobs = self.store.jobs_of(key)
        held = [j.name for j in jobs.values() if j.finalized and j.presence is Presence.DELETING]
        if held:
            try:
                fresh = await self.api.get_trigger(*key)
            except NotFound:
                for name in held:
                    self.store.saw_job(key, name, await self.api.release_job(key[0], name))
            else:
                self.store.on_trigger(None, fresh)
                return
        for name, job in self.store.jobs_of(key).items():
            if not (job.finalized and job.exists):
                self.store.forget_job(key, name)

    def _gone(self, key: Key) -> None:
        """The Trigger no longer exists: forget it; the next pass releases its Jobs."""
        self.store.forget_trigger(key)
        self.checks.forget(key)
        self._refusals.pop(key, None)
        self.requeues.again(key)

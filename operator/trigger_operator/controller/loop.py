"""The one scheduler for all Triggers: the imperative shell around `core.reconcile`.

Watch events (delivered by kopf) keep an in-memory view of every Trigger and of the Jobs labelled
with a Trigger, and put the Trigger's key on a delaying queue. Workers take due keys, ask the pure
core what to do, and carry the plan out in the order `core.reconcile` explains; then put the key
back for the plan's wake-up time. No timer or task per Trigger.

The rule that keeps every run exactly once across replicas, restarts and lagging watches: Jobs are
created, deleted or released only on the strength of a Trigger copy confirmed current, either by
the status write of the same pass (guarded by resourceVersion) or, when there is nothing to write,
by a fresh read that finds the same resourceVersion (as the CronJob controller re-reads before
acting on a surprise). A normal run always has its write, so the read costs nothing there.

"Confirmed current" is a moment, not a lock: a replica paused right after its write (a stopped
pod, a frozen node) could wake up after another replica made, ran, counted and deleted the same
Job. So a create goes out only within ``create_within_seconds`` of its pass's start, and the core
keeps our finalizer on a Job until it is ``name_hold_seconds`` old, deleted or not: the name is
still taken whenever such a late create could arrive, and it gets AlreadyExists.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any

from trigger_operator.conditions.evaluate import OwnChecks
from trigger_operator.conditions.measure import Reading
from trigger_operator.config import OperatorConfig
from trigger_operator.controller.checks import CHECK_TIMEOUT_SECONDS, Checks
from trigger_operator.controller.queue import DelayQueue
from trigger_operator.controller.store import Key, Store
from trigger_operator.core.reconcile import Plan, reconcile, refused_creates
from trigger_operator.jobs.catalog import merge_catalog, merge_sources
from trigger_operator.jobs.observe import JobPhase, JobView, Presence, failure_message
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
from trigger_operator.model.spec import ConditionType
from trigger_operator.model.status import RunKind
from trigger_operator.model.trigger import TriggerView, trigger_view
from trigger_operator.sources.read import SourceReader

log = logging.getLogger("trigger_operator.controller")
# A running Job of an active run not heard of for this long is read again from the API server.
STALE_JOB_SECONDS = 300.0
# A Trigger whose status write the API server refuses for good is tried again after retry_seconds,
# doubling per refusal up to this: its status cannot move, and re-sending it at once helps nobody.
REFUSED_BACKOFF_CAP_SECONDS = 300.0
# A pass that fails (an API error, a bug) is tried again after retry_seconds, doubling per failure in a
# row up to this.
BACKOFF_CAP_SECONDS = 300.0


@dataclass(frozen=True)
class Result:
    """What one `Scheduler.sync` asks of the worker loop, as controller-runtime's reconcile.Result:
    come back at ``requeue_at`` (None: only when the store sees the Trigger or its Jobs change)."""

    requeue_at: dt.datetime | None = None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scheduler:
    def __init__(self, api: ClusterApi, config: OperatorConfig, clock: Callable[[], dt.datetime] = utc_now,
                 monotonic: Callable[[], float] = time.monotonic, reader: SourceReader | None = None,
                 metrics: Metrics | None = None, approval_key: bytes | None = None,
                 owns: Callable[[str, str], bool] = lambda namespace, name: True,
                 leading: Callable[[], bool] = lambda: True,
                 watched: Callable[[str], bool] = lambda namespace: True) -> None:
        self.api = api
        self.metrics = metrics
        self._refusals: dict[Key, int] = {}  # status writes refused for good in a row, per Trigger
        self._failures: dict[Key, int] = {}  # passes that raised in a row, per Trigger (the worker's backoff)
        self._requeue: dict[Key, dt.datetime] = {}  # the earliest pass the running sync asked for, per Trigger
        self.config = config
        self._name_hold = dt.timedelta(seconds=config.scheduler.name_hold_seconds)  # once, not per pass
        self.clock = clock
        self.monotonic = monotonic
        self.queue: DelayQueue[Key] = DelayQueue(clock)
        # What the watches told us; a change brings the Trigger's key to the queue.
        self.store = Store(api, self.queue.add, watched=lambda namespace: self.watched(namespace),
                           monotonic=monotonic)
        self.catalog: dict[str, dict[str, Any]] = {}
        # The catalog's default condition sources (``<action type>.sources`` keys, jobs/catalog.py).
        self.default_sources: dict[str, dict[ConditionType, dict[str, Any]]] = {}
        self._catalog_version: str | None = None
        self._catalog_read = False
        self.started = False
        self._background_tasks: set[asyncio.Task[None]] = set()  # Events and checks, kept referenced until done
        reader = reader or SourceReader(api, timeout_seconds=CHECK_TIMEOUT_SECONDS, settings=config.sources)
        self.checks = Checks(reader,
                             clock=clock, changed=self.queue.add, background=self._background, metrics=metrics,
                             approval_key=approval_key, approval_required=config.sources.approval == "required")
        # Whether this replica may schedule a Trigger (namespace, name) now: it leads
        # (controller/leader.py) or holds the Trigger's shard (controller/shards.py); always, alone.
        self.owns = owns
        self.leading = leading  # it schedules anything at all (a metric)
        # Whether the watches cover a namespace (the operator's -n patterns; all without them).
        self.watched = watched
        self._dropped: set[Key] = set()  # keys a pass dropped for not owning them, until `take_back`

    def lead(self) -> None:
        """This replica became the leader, or took shards: every Trigger gets a pass (a follower
        kept its memory current from the watches but decided nothing; another shard's are dropped)."""
        self._dropped.clear()
        for key in self.store.trigger_keys():
            self.queue.add(key)

    def take_back(self) -> None:
        """After each successful renewal: keys dropped while a lease we hold had lapsed for a
        moment (a round later than the renew deadline; no new shard, so no `lead`) come back."""
        for key in [k for k in self._dropped if self.owns(*k)]:
            self._dropped.discard(key)
            self.queue.add(key)

    def _drop(self, key: Key) -> None:
        """A pass skipped for not owning the key; remembered for `take_back` only while there is
        something to act on (a follower would otherwise keep every deleted Trigger's key)."""
        if self.store.holds(key):
            self._dropped.add(key)

    def on_catalog(self, data: Mapping[str, str] | None) -> None:
        self.catalog, problems = merge_catalog(self.catalog, data)
        self.default_sources, source_problems = merge_sources(self.default_sources, data)
        problems += source_problems
        where = f"{self.config.actions.namespace}/{self.config.actions.config_map}"
        for problem in problems:
            log.warning("actions ConfigMap %s: %s", where, problem)
        log.info("action templates: %s", ", ".join(sorted(self.catalog)) or "none")
        if self.default_sources:
            log.info("default condition sources: %s", ", ".join(
                f"{action} ({', '.join(sorted(by_type))})" for action, by_type in sorted(self.default_sources.items())))
        for key in self.store.trigger_keys():
            self.queue.add(key)

    async def load_catalog(self) -> None:
        """Reads the actions ConfigMap; feeds `on_catalog` when it changed. It is read, not watched,
        because it lives in the operator's namespace, which a ``-n`` operator does not watch."""
        config_map = await self.api.get_config_map(self.config.actions.namespace, self.config.actions.config_map)
        version = None if config_map is None else str(config_map["metadata"].get("resourceVersion"))
        if version != self._catalog_version or not self._catalog_read:
            self._catalog_version, self._catalog_read = version, True
            self.on_catalog((config_map or {}).get("data"))

    # --- the loop --------------------------------------------------------------------------------

    def next_due(self) -> float | None:
        due = self.queue.next_due()
        return due.timestamp() if due is not None else None

    def ready(self) -> tuple[bool, str]:
        if not self._catalog_read:
            return False, "the actions ConfigMap was not read yet"
        if not self.started:
            return False, "the scheduler has not started"
        return True, ""

    async def run(self) -> None:
        self.started = True
        tasks = [asyncio.create_task(self._worker()) for _ in range(self.config.scheduler.workers)]
        tasks.append(asyncio.create_task(self._every(self.config.actions.poll_seconds, self.load_catalog)))
        tasks.append(asyncio.create_task(self._every(self.config.scheduler.resync_seconds, self.store.resync_jobs)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _every(self, seconds: float, step: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("%s failed, trying again in %.0f s: %s", step.__name__, seconds, error)

    async def _worker(self) -> None:
        """The one loop that applies what `sync` returns: its requeue, or after an error a retry
        with per-key exponential backoff (`retry_at`)."""
        while True:
            key = await self.queue.get()
            try:
                result = await self.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                result = self.failed(key, error)
            else:
                self._failures.pop(key, None)
            finally:
                self.queue.done(key)
            self.apply(key, result)

    def apply(self, key: Key, result: Result) -> None:
        if result.requeue_at is not None:
            self.queue.add(key, result.requeue_at)

    def failed(self, key: Key, error: Exception) -> Result:
        """The result of a sync that raised: tried again after retry_seconds, doubling per failure
        in a row up to BACKOFF_CAP_SECONDS (a Trigger that always fails costs a pass per 5 min, not
        per 5 s), or sooner if the pass had asked for that. The traceback is logged once per streak:
        the rest are one line each."""
        steps = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(self.config.scheduler.retry_seconds * 2 ** min(steps - 1, 20), BACKOFF_CAP_SECONDS)
        retry = self.clock() + dt.timedelta(seconds=delay)
        asked = self._requeue.pop(key, None)
        log.warning("reconcile of %s/%s failed (%d time(s) in a row), retrying at %s: %s", *key, steps,
                    retry.time(), error, exc_info=steps == 1 and not isinstance(error, (Conflict, Rejected)),
                    extra=about(*key))
        return Result(min(retry, asked) if asked is not None else retry)

    def _again(self, key: Key, at: dt.datetime | None = None) -> None:
        """Asks for another pass of ``key`` at ``at`` (now by default): `sync` returns the earliest asked."""
        at = at or self.clock()
        known = self._requeue.get(key)
        self._requeue[key] = at if known is None or at < known else known

    async def sync(self, key: Key) -> Result:
        """One reconcile of one Trigger (by its owner only: another replica drops the key, and `lead`
        brings every key back). Returns when to come back; the worker loop applies it."""
        await self._sync(key)
        return Result(self._requeue.pop(key, None))

    async def _sync(self, key: Key) -> None:
        if not self.owns(*key):
            self._drop(key)
            return
        body = self.store.trigger(key)
        if body is None:
            self.checks.forget(key)
            self._refusals.pop(key, None)
            await self._release_orphans(key)
            return
        began = self.monotonic()  # before any read: a create decided now may go out only so long after
        now = self.clock()
        view = trigger_view(body, now)
        jobs = await self._jobs_for(view)
        reading = self.checks.readings.get(key)
        own = self.checks.own(key)
        try:
            plan = reconcile(view, jobs, self.catalog, now, reading, name_hold=self._name_hold, own_checks=own,
                             sources=self.default_sources)
        except Exception:
            self.checks.used(key, reading)  # a reading that breaks the pass is dropped, never retried for ever
            raise
        try:
            current = await self._settle(key, body, plan)
        except Rejected as refusal:
            self.checks.used(key, reading)  # never sent again as it was
            plan, current = await self._after_refusal(key, body, view, jobs, now, reading, own, refusal)
        if current is None:
            return
        if plan.patch:  # a write landed: a refusal's backoff starts afresh (a pass writing nothing proves nothing)
            self._refusals.pop(key, None)
        self.checks.used(key, reading)  # it is in status now
        if self.metrics is not None and plan.finished:
            self.metrics.runs_finished(*_types(body), plan.finished)
        if plan.check is not None:
            self.checks.start(key, plan.check, now, current, default=plan.check_is_default)
        if not self.owns(*key):  # lost the lease while writing: the next owner acts on what we wrote
            self._drop(key)
            return
        await self._carry_out(key, current, plan, now, began)
        if plan.wake_at is not None:
            self._again(key, plan.wake_at)
        if plan.status.active:  # look at running Jobs now and then, should their watch events be lost
            self._again(key, self.clock() + dt.timedelta(seconds=STALE_JOB_SECONDS))

    async def _after_refusal(self, key: Key, body: Body, view: TriggerView, jobs: Mapping[str, JobView],
                             now: dt.datetime, reading: Reading | None, own: OwnChecks,
                             refusal: Rejected) -> tuple[Plan, Body | None]:
        """After the API server refused a pass's status write for good (422 Invalid, 413 or etcd's
        "request is too large"): the same write would be refused at every pass, for ever. A
        reading in it is dropped and the pass decided again as a failed check saying so (its
        values never sent again; the API server's message is not repeated, as it may quote them).
        If even that is refused, or there was no reading, the Trigger backs off: one log line per
        step, no traceback (the refusal is an answer, not a bug of ours)."""
        answer = f"HTTP {refusal.status}" if refusal.status else "refused for good"
        if reading is not None:
            dropped = replace(reading, raw=None, error=f"the status write was refused by the API server ({answer}): "
                                                       "the reading was dropped")
            plan = reconcile(view, jobs, self.catalog, now, dropped, name_hold=self._name_hold, own_checks=own,
                             sources=self.default_sources)
            try:
                return plan, await self._settle(key, body, plan)
            except Rejected as again:
                refusal = again
                answer = f"HTTP {refusal.status}" if refusal.status else "refused for good"
        else:
            plan = Plan(status=view.status)
        steps = self._refusals[key] = self._refusals.get(key, 0) + 1
        delay = min(self.config.scheduler.retry_seconds * 2 ** min(steps - 1, 20), REFUSED_BACKOFF_CAP_SECONDS)
        log.warning("the API server refused the status write of Trigger %s/%s (%s), %d time(s) in a row; "
                    "trying again in %.0f s", *key, answer, steps, delay, extra=about(*key))
        self._again(key, self.clock() + dt.timedelta(seconds=delay))
        return plan, None

    async def _settle(self, key: Key, body: Body, plan: Plan) -> Body | None:
        """The Trigger copy the plan may act on: as written by the plan's status patch, or confirmed
        current by a fresh read when the plan writes nothing but touches Jobs. None when the copy
        was stale (the fresh one is kept and the key comes back at once) or the Trigger is gone."""
        if plan.patch:
            return await self._write(key, body, plan.patch)
        if not plan.acts:
            return body
        try:
            fresh = await self.api.get_trigger(*key)
        except NotFound:
            self._gone(key)
            return None
        if fresh["metadata"].get("resourceVersion") == body["metadata"].get("resourceVersion"):
            return body
        self.store.on_trigger(None, fresh)
        self._again(key)
        return None

    async def _write(self, key: Key, body: Body, patch: Mapping[str, Any]) -> Body | None:
        try:
            written = await self.api.patch_trigger_status(*key, body["metadata"]["resourceVersion"], patch)
        except Conflict:
            await self._refresh(key)
            self._again(key)
            return None
        except NotFound:
            self._gone(key)
            return None
        if not self.store.wrote(key, written):
            return None  # deleted while we wrote: make no Job for it
        return written

    async def _carry_out(self, key: Key, body: Body, plan: Plan, now: dt.datetime, began: float) -> None:
        namespace = key[0]
        within = self.config.scheduler.create_within_seconds

        def in_time() -> bool:  # asked in the API's thread, right before the create goes out
            return self.monotonic() - began <= within

        for notice in plan.notices:
            self._post_later(body, notice, now)
        for name in plan.release:
            try:
                released = await self.api.release_job(namespace, name)
            except (Rejected, RetryLater, Conflict) as error:
                # Never fatal: the Job stays held a little longer, the next pass tries again, and
                # nothing else of this pass (new runs above all) waits for it.
                log.warning("could not release Job %s/%s (remove our finalizer): %s", namespace, name, error,
                            extra=about(namespace, key[1], name))
                continue
            self.store.saw_job(key, name, released)
        # Deletes before creates: under concurrencyPolicy Replace the old Job must be gone first.
        for name in plan.delete:
            self.store.mark_deleted(key, name, await self.api.delete_job(namespace, name))
            log.info("deleted Job %s/%s", namespace, name, extra=about(namespace, key[1], name))
        refused: dict[str, str] = {}
        for new in plan.create:
            try:
                created = await self.api.create_job(namespace, new.manifest, in_time)
            except TooLate:
                # Paused or starved since the pass began: what it decided may be overtaken.
                log.warning("Job %s/%s not created: its pass began %.1f s ago, more than %g s; deciding again",
                            namespace, new.run.name, self.monotonic() - began, within,
                            extra=about(namespace, key[1], new.run.name))
                self._again(key)
                continue
            except AlreadyExists:
                # Ours (a retry, another replica) or a stranger's: the next pass decides by its owner.
                self.store.saw_job(key, new.run.name, await self.api.get_job(namespace, new.run.name))
                self._again(key)
                continue
            except Rejected as error:
                refused[new.run.name] = str(error)
                continue
            except RetryLater as error:
                log.warning("Job %s/%s not created yet: %s", namespace, new.run.name, error,
                            extra=about(namespace, key[1], new.run.name))
                self._post_later(body, Notice("Warning", "JobCreateDelayed", f"Job {new.run.name} is not "
                                              f"created yet, retrying: {error}"), now)
                self._again(key, self.clock() + dt.timedelta(seconds=self.config.scheduler.retry_seconds))
                continue
            self.store.on_job("ADDED", created)
            self._post_later(body, new.notice, now)
            if self.metrics is not None:
                late = (self.clock() - new.run.scheduled_time).total_seconds() \
                    if new.run.kind is RunKind.SCHEDULED else None
                self.metrics.run_started(*_types(body), new.run.kind.value, late)
            log.info("created Job %s/%s", namespace, new.run.name, extra=about(namespace, key[1], new.run.name))
        if refused:
            await self._record_refused_creates(key, body, refused, now)

    async def _record_refused_creates(self, key: Key, body: Body, refused: Mapping[str, str],
                                      now: dt.datetime) -> None:
        plan = refused_creates(trigger_view(body, now), refused, now)
        written = await self._write(key, body, plan.patch)
        if written is None:
            return
        for notice in plan.notices:
            self._post_later(written, notice, now)
        if self.metrics is not None:
            self.metrics.runs_finished(*_types(written), plan.finished)
        self._again(key)  # the failure may reach maxConsecutiveFailures

    def _post_later(self, body: Mapping[str, Any], notice: Notice, now: dt.datetime) -> None:
        """Events are best effort and must not hold up the next Trigger: they are posted in the
        background, in order per reconcile (each task is one Event)."""
        if notice.routine and not self.config.scheduler.routine_events:
            return
        self._background(self.api.post_event(body, notice, now))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs ``work`` as a task of its own, kept referenced until done (asyncio keeps only weak ones)."""
        task = asyncio.create_task(work)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    async def background_done(self) -> None:
        """Waits for the background work started so far (Events posted, sources read)."""
        await asyncio.gather(*list(self._background_tasks))

    def cancel_background(self) -> None:
        for task in list(self._background_tasks):
            task.cancel()

    async def _jobs_for(self, view: TriggerView) -> dict[str, JobView]:
        """The Jobs labelled with the Trigger's name as the watch saw them, completed by fresh reads
        where the watch may lag (a run in status.active with no Job seen, or running but silent for
        long) and by pod messages for failed runs. Facts only: the core decides what they mean."""
        key = (view.namespace, view.name)
        jobs = self.store.jobs.setdefault(key, {})
        for run in view.status.active:
            current = jobs.get(run.name)
            silent_for = self.store.silent_for(view.namespace, run.name)
            if current is None or (current.exists and not current.finished and silent_for > STALE_JOB_SECONDS):
                self.store.saw_job(key, run.name, await self.api.get_job(view.namespace, run.name))
            current = jobs.get(run.name)
            if current is not None and current.phase is JobPhase.FAILED and not current.message_enriched:
                pods = await self.api.job_pods(view.namespace, run.name)
                jobs[run.name] = current.with_message(failure_message(current.message, pods))
        active = {r.name for r in view.status.active}
        for name in [n for n, j in jobs.items() if not j.exists and n not in active]:
            del jobs[name]
            self.store.job_seen_at.pop((view.namespace, name), None)
        return dict(jobs)

    async def _release_orphans(self, key: Key) -> None:
        """Jobs of a Trigger that is gone are deleted by the garbage collector; our finalizer must not
        hold them. Released only once a fresh read confirms the Trigger is gone (at start-up a Job's
        watch event may come before its Trigger's)."""
        jobs = self.store.jobs.get(key, {})
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
        for name in [n for n, j in jobs.items() if not (j.finalized and j.exists)]:
            self.store.forget_job(key, name)
        if not jobs:
            self.store.jobs.pop(key, None)

    def _gone(self, key: Key) -> None:
        """The Trigger no longer exists: forget it; the next pass releases its Jobs."""
        self.store.triggers.forget(key)
        self.checks.forget(key)
        self._refusals.pop(key, None)
        self._again(key)

    async def _refresh(self, key: Key) -> None:
        try:
            self.store.on_trigger(None, await self.api.get_trigger(*key))
        except NotFound:
            self.store.triggers.forget(key)


def _types(body: Mapping[str, Any]) -> tuple[str, str]:
    """A Trigger's action and trigger type, the labels its runs are counted under."""
    spec = body.get("spec") or {}
    return str(spec.get("actionType") or "unknown"), str(spec.get("triggerType") or "unknown")

"""The one scheduler for all Triggers: the imperative shell around `core.reconcile`, composed as
a controller-runtime controller is. Watch events (the Triggers' from kopf, the Jobs' from our own
watch, kube/watch.py) keep the store (controller/store.py) current, and a change puts the
Trigger's key on a delaying queue (controller/queue.py). Workers (controller/worker.py) take due
keys and run the reconciler (controller/reconciler.py), which asks the pure core what to do, has the executor
(controller/executor.py) carry the plan out, and returns when to come back. No timer or task per
Trigger. Beside them: the action catalog (controller/catalog.py), condition checks
(controller/checks.py), who owns which Trigger (controller/ownership.py) and background work
(controller/background.py). `Scheduler` only builds these and starts them; the rest of the
operator (handlers.py, the metrics, the tests) reaches them through it."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from trigger_operator.config import OperatorConfig
from trigger_operator.controller.background import Background
from trigger_operator.controller.catalog import Catalog
from trigger_operator.controller.checks import CHECK_TIMEOUT_SECONDS, Checks
from trigger_operator.controller.ownership import Ownership
from trigger_operator.controller.queue import DelayQueue
from trigger_operator.controller.reconciler import Reconciler
from trigger_operator.controller.result import Requeues, Result
from trigger_operator.controller.store import Key, Store
from trigger_operator.controller.worker import Worker
from trigger_operator.kube.interface import ClusterApi
from trigger_operator.metrics import Metrics
from trigger_operator.model.spec import ConditionType
from trigger_operator.sources.read import SourceReader

log = logging.getLogger("trigger_operator.controller")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scheduler:
    """``owns(namespace, name)``: whether this replica may schedule a Trigger now (it leads, or
    holds the Trigger's shard; always, alone); ``leading``: it schedules anything at all (a
    metric); ``watched(namespace)``: whether the watches cover it (the operator's -n patterns);
    ``keeps((namespace, name))``: whether the store keeps the Trigger's Jobs (controller/store.py).
    All four are given at construction (handlers.start makes the elector first) and never replaced."""

    def __init__(self, api: ClusterApi, config: OperatorConfig, clock: Callable[[], dt.datetime] = utc_now,
                 monotonic: Callable[[], float] = time.monotonic, reader: SourceReader | None = None,
                 metrics: Metrics | None = None, approval_key: bytes | None = None,
                 owns: Callable[[str, str], bool] = lambda namespace, name: True,
                 leading: Callable[[], bool] = lambda: True,
                 watched: Callable[[str], bool] = lambda namespace: True,
                 keeps: Callable[[tuple[str, str]], bool] = lambda key: True) -> None:
        self.api = api
        self.config = config
        self.clock = clock
        self.monotonic = monotonic
        self.metrics = metrics
        self.owns = owns
        self.leading = leading
        self.watched = watched
        self.started = False
        self.queue: DelayQueue[Key] = DelayQueue(clock)
        self.store = Store(api, self.queue.add, watched=watched, keeps=keeps, monotonic=monotonic)
        self.background = Background()
        self.catalogs = Catalog(api, config.actions, changed=self._all_again)
        reader = reader or SourceReader(api, timeout_seconds=CHECK_TIMEOUT_SECONDS, settings=config.sources)
        self.checks = Checks(reader, clock=clock, changed=self.queue.add, background=self.background.start,
                             metrics=metrics, approval_key=approval_key,
                             approval_required=config.sources.approval == "required")
        self.ownership = Ownership(owns, self.store, self.queue.add)
        self.requeues = Requeues(clock)
        self.reconciler = Reconciler(api, config, self.store, self.checks, self.catalogs, self.ownership,
                                     self.requeues, clock=clock, monotonic=monotonic,
                                     background=self.background.start, metrics=metrics)
        self.worker = Worker(self.queue, self.reconciler.sync, self.requeues, clock=clock,
                             retry_seconds=config.scheduler.retry_seconds)

    # --- what the rest of the operator calls --------------------------------------------------------

    def lead(self) -> None:
        self.ownership.lead()

    def take_back(self) -> None:
        self.ownership.take_back()

    @property
    def catalog(self) -> dict[str, dict[str, Any]]:
        """The action templates (the webhook checks an action type against them)."""
        return self.catalogs.templates

    @catalog.setter
    def catalog(self, templates: dict[str, dict[str, Any]]) -> None:
        self.catalogs.templates = templates

    @property
    def default_sources(self) -> dict[str, dict[ConditionType, dict[str, Any]]]:
        return self.catalogs.default_sources

    def on_catalog(self, data: Mapping[str, str] | None) -> None:
        self.catalogs.on_catalog(data)

    async def load_catalog(self) -> None:
        await self.catalogs.load()

    async def sync(self, key: Key) -> Result:
        return await self.reconciler.sync(key)

    def apply(self, key: Key, result: Result) -> None:
        self.worker.apply(key, result)

    def failed(self, key: Key, error: Exception) -> Result:
        return self.worker.failed(key, error)

    async def background_done(self) -> None:
        """Waits for the background work started so far (Events posted, sources read)."""
        await self.background.done()

    def cancel_background(self) -> None:
        self.background.cancel()

    def next_due(self) -> float | None:
        due = self.queue.next_due()
        return due.timestamp() if due is not None else None

    def ready(self) -> tuple[bool, str]:
        if not self.catalogs.read:
            return False, "the actions ConfigMap was not read yet"
        if not self.started:
            return False, "the scheduler has not started"
        return True, ""

    async def run(self) -> None:
        """The workers, the catalog's poll and the Jobs' re-list, until cancelled."""
        self.started = True
        tasks = [asyncio.create_task(self.worker.work()) for _ in range(self.config.scheduler.workers)]
        tasks.append(asyncio.create_task(_every(self.config.actions.poll_seconds, self.catalogs.load)))
        tasks.append(asyncio.create_task(_every(self.config.scheduler.resync_seconds, self.store.resync_jobs)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    def _all_again(self) -> None:
        for key in self.store.trigger_keys():
            self.queue.add(key)


async def _every(seconds: float, step: Callable[[], Awaitable[Any]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("%s failed, trying again in %.0f s: %s", getattr(step, "__name__", step), seconds, error)

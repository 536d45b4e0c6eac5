"""The Lease loop: read, decide (`core.leadership`), write; tell the scheduler when it starts and
stops leading. One GET and, for the leader, one PUT every ``retry_seconds``."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from trigger_operator.config import LeaderSettings
from trigger_operator.core.leadership import LeaseRecord, Step, decide, leading
from trigger_operator.kube.interface import AlreadyExists, Body, Conflict, LeaseApi

log = logging.getLogger(__name__)


def lease_record(body: Body | None) -> LeaseRecord | None:
    if body is None:
        return None
    spec = body.get("spec") or {}
    return LeaseRecord(holder=str(spec.get("holderIdentity") or ""), renew_time=str(spec.get("renewTime") or ""),
                       duration_seconds=float(spec.get("leaseDurationSeconds") or 0),
                       transitions=int(spec.get("leaseTransitions") or 0),
                       version=str((body.get("metadata") or {}).get("resourceVersion") or ""))


async def rounds(step: Callable[[], Awaitable[None]], release: Callable[[], Awaitable[None]],
                 every: float) -> None:
    """A Lease loop's life: a round every ``every`` seconds until cancelled, then the hand-back."""
    try:
        while True:
            await step()
            await asyncio.sleep(every)
    finally:
        await release()


def micro_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    def __init__(self, api: LeaseApi, settings: LeaderSettings, namespace: str, identity: str, *,
                 on_start: Callable[[], None], on_stop: Callable[[], None],
                 on_renewed: Callable[[], None] = lambda: None,
                 monotonic: Callable[[], float] = time.monotonic,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.api, self.settings, self.namespace, self.identity = api, settings, namespace, identity
        self._on_start, self._on_stop, self._on_renewed = on_start, on_stop, on_renewed
        self._monotonic, self._clock = monotonic, clock
        self._renewed_at: float | None = None  # monotonic start of our last successful write
        self._seen: tuple[LeaseRecord | None, float] | None = None  # a record, and since when we see it
        self._was_leading = False

    def leading(self) -> bool:
        return leading(self._renewed_at, self._monotonic(), self.settings.renew_deadline_seconds)

    def owns(self, namespace: str, name: str) -> bool:
        """Whether we may schedule this Trigger now: the leader schedules them all."""
        return self.leading()

    async def run(self) -> None:
        await rounds(self.step, self.release, self.settings.retry_seconds)

    async def step(self) -> None:
        """One round: read the lease, take or renew it if we may; then tell who leads."""
        try:
            body = await self.api.get_lease(self.namespace, self.settings.name)
            record = lease_record(body)
            now = self._monotonic()
            if self._seen is None or self._seen[0] != record:
                self._seen = (record, now)
            step = decide(record, self.identity, unchanged_for=now - self._seen[1])
            if step is not Step.WAIT:
                await self._write(body, record, step, started=now)
        except (Conflict, AlreadyExists):
            pass  # another replica wrote first: read again next round
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the API is away: keep leading only until the renew deadline
            log.warning("could not read or renew the lease %s/%s: %s", self.namespace, self.settings.name, error)
        self._tell()

    async def _write(self, body: Body | None, record: LeaseRecord | None, step: Step, *, started: float) -> None:
        wall = micro_time(self._clock())
        spec: dict[str, Any] = {"holderIdentity": self.identity, "renewTime": wall,
                                "leaseDurationSeconds": int(self.settings.duration_seconds)}
        if step is Step.ACQUIRE:
            spec.update(acquireTime=wall, leaseTransitions=(record.transitions + 1) if record else 0)
        if body is None:
            await self.api.create_lease(self.namespace, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                                         "metadata": {"name": self.settings.name}, "spec": spec})
        else:
            await self.api.replace_lease(self.namespace, self.settings.name,
                                         {**body, "spec": {**(body.get("spec") or {}), **spec}})
        self._renewed_at = started

    def _tell(self) -> None:
        now_leading = self.leading()
        if now_leading and not self._was_leading:
            log.info("became the leader (lease %s/%s, identity %s): scheduling", self.namespace,
                     self.settings.name, self.identity)
            self._on_start()
        elif self._was_leading and not now_leading:
            log.warning("stopped leading (lease %s/%s not renewed in time): not scheduling", self.namespace,
                        self.settings.name)
            self._on_stop()
        self._was_leading = now_leading
        if now_leading:
            self._on_renewed()

    async def release(self) -> None:
        """On a clean stop: hand the lease back, so that another replica takes over at once."""
        if not self.leading():
            return
        self._renewed_at = None
        try:
            body = await self.api.get_lease(self.namespace, self.settings.name)
            if body is not None and (body.get("spec") or {}).get("holderIdentity") == self.identity:
                await self.api.replace_lease(self.namespace, self.settings.name, {
                    **body, "spec": {**body["spec"], "holderIdentity": "", "renewTime": micro_time(self._clock())}})
                log.info("released the lease %s/%s", self.namespace, self.settings.name)
        except Exception as error:  # the others take over after the lease's duration instead
            log.warning("could not release the lease: %s", error)

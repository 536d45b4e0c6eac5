"""The Lease loop: read, decide (`core.leadership`), write; tell the scheduler when it starts and
stops leading. One GET and, for the leader, one PUT every ``retry_seconds``."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
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


class Sightings:
    """How long each Lease (by name) has been seen unchanged, by our monotonic clock: the measure
    `core.leadership.decide` judges another holder by."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[LeaseRecord | None, float]] = {}  # name -> record, first seen

    def unchanged_for(self, name: str, record: LeaseRecord | None, now: float) -> float:
        if name not in self._first or self._first[name][0] != record:
            self._first[name] = (record, now)
        return now - self._first[name][1]

    def forget_all_but(self, names: Iterable[str]) -> None:
        kept = set(names)
        for name in [n for n in self._first if n not in kept]:
            del self._first[name]


async def put_lease(api: LeaseApi, namespace: str, name: str, body: Body | None, *, holder: str,
                    duration_seconds: float, wall: dt.datetime, new_term: bool,
                    labels: Mapping[str, str] | None = None) -> None:
    """Creates the Lease (``body`` None) or replaces it (guarded by ``body``'s resourceVersion) with
    ``holder`` holding it, renewed at ``wall``; a new term also sets acquireTime and counts a transition."""
    record = lease_record(body)
    stamp = micro_time(wall)
    spec: dict[str, Any] = {"holderIdentity": holder, "renewTime": stamp, "leaseDurationSeconds": int(duration_seconds)}
    if new_term or body is None:
        spec.update(acquireTime=stamp, leaseTransitions=(record.transitions + 1) if record else 0)
    if body is None:
        await api.create_lease(namespace, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                           "metadata": {"name": name, **({"labels": dict(labels)} if labels else {})},
                                           "spec": spec})
    else:
        await api.replace_lease(namespace, name, {**body, "spec": {**(body.get("spec") or {}), **spec}})


async def hand_back(api: LeaseApi, namespace: str, body: Body, wall: dt.datetime) -> None:
    """Empties a Lease's holder (guarded by its resourceVersion): another replica may take it at once."""
    await api.replace_lease(namespace, body["metadata"]["name"], {
        **body, "spec": {**(body.get("spec") or {}), "holderIdentity": "", "renewTime": micro_time(wall)}})


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
        self._sightings = Sightings()
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
        new_term = False
        try:
            body = await self.api.get_lease(self.namespace, self.settings.name)
            record = lease_record(body)
            now = self._monotonic()
            step = decide(record, self.identity,
                          unchanged_for=self._sightings.unchanged_for(self.settings.name, record, now))
            if step is not Step.WAIT:
                await put_lease(self.api, self.namespace, self.settings.name, body, holder=self.identity,
                                duration_seconds=self.settings.duration_seconds, wall=self._clock(),
                                new_term=step is Step.ACQUIRE)
                self._renewed_at = now
                new_term = step is Step.ACQUIRE
        except (Conflict, AlreadyExists):
            pass  # another replica wrote first: read again next round
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the API is away: keep leading only until the renew deadline
            log.warning("could not read or renew the lease %s/%s: %s", self.namespace, self.settings.name, error)
        self._tell(new_term)

    def _tell(self, new_term: bool = False) -> None:
        """``new_term``: this round took the lease anew. Someone else may have held it since our
        last renewal (we were paused past it, our clock still saying we led): `on_start` too."""
        now_leading = self.leading()
        if now_leading and (not self._was_leading or new_term):
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
                await hand_back(self.api, self.namespace, body, self._clock())
                log.info("released the lease %s/%s", self.namespace, self.settings.name)
        except Exception as error:  # the others take over after the lease's duration instead
            log.warning("could not release the lease: %s", error)

"""Condition checks: each source read in the background (one task per check, not per Trigger), in
a fair share of the check slots (controller/slots.py), approved before every read; the reading
waits in ``readings`` until a pass writes it to status, and a finished read brings its Trigger back
(``changed``). The decision what a reading means is the core's (conditions/evaluate.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Coroutine
from typing import Any

from trigger_operator.admission.approval import refusal
from trigger_operator.conditions.evaluate import OwnChecks, UnwrittenCheck
from trigger_operator.conditions.measure import MeasureError, Reading
from trigger_operator.controller.slots import FairSlots
from trigger_operator.controller.store import Key
from trigger_operator.kube.interface import Body, Rejected, RetryLater
from trigger_operator.metrics import Metrics
from trigger_operator.model.spec import ConditionSource
from trigger_operator.sources.read import SourceError, SourceReader

CHECKS_AT_ONCE = 64  # condition sources read at the same time
# One namespace's share of them: a tenant whose sources never answer holds at most this many.
CHECKS_PER_NAMESPACE = 8
CHECK_SLOT_WAIT_SECONDS = 60.0  # a check that finds no free slot this long is a failed check
CHECK_TIMEOUT_SECONDS = 10.0  # a source slower than this is a failed check


class Checks:
    """``approval_key``: sources read with our rights are read only when the webhook's approval
    verifies under it (docs/security.md); None approves nothing unless approvals are off
    (``approval_required`` False). ``background`` runs a check as a task of its own."""

    def __init__(self, reader: SourceReader, *, clock: Callable[[], dt.datetime], changed: Callable[[Key], None],
                 background: Callable[[Coroutine[Any, Any, None]], None], approval_key: bytes | None,
                 approval_required: bool, metrics: Metrics | None = None) -> None:
        self.reader = reader
        self.clock = clock
        self.changed = changed
        self.background = background
        self.approval_key = approval_key
        self.approval_required = approval_required
        self.metrics = metrics
        self.readings: dict[Key, Reading] = {}  # the latest check of each conditional Trigger, until written
        self._checking: set[Key] = set()
        # The pass time of the last check this process started, per Trigger (conditions/evaluate.py:
        # only the first is announced in status, and a marker none of ours explains is a dead check).
        self._started: dict[Key, dt.datetime] = {}
        # Its last check of each Trigger that wrote nothing (it changed nothing): the next is due an
        # interval after it, though status still shows an older check (conditions/evaluate.py).
        self._unwritten: dict[Key, UnwrittenCheck] = {}
        self._slots = FairSlots(CHECKS_AT_ONCE, CHECKS_PER_NAMESPACE)

    def own(self, key: Key) -> OwnChecks:
        """What this process knows of its own checks of the Trigger, for the core."""
        return OwnChecks(in_flight=key in self._checking, last_started_at=self._started.get(key),
                         unwritten=self._unwritten.get(key))

    def forget(self, key: Key) -> None:
        """The Trigger is gone."""
        self._started.pop(key, None)
        self._unwritten.pop(key, None)

    def took_unwritten(self, key: Key, check: UnwrittenCheck) -> None:
        """A pass took a check in without writing it (the plan's ``unwritten_check``)."""
        self._unwritten[key] = check

    def used(self, key: Key, reading: Reading | None) -> None:
        """Forgets ``reading`` unless a newer one came meanwhile."""
        if reading is not None and self.readings.get(key) is reading:
            del self.readings[key]

    def start(self, key: Key, source: ConditionSource, now: dt.datetime, body: Body, *,
                     default: bool = False) -> None:
        """Reads the source in the background (one task per check, not per Trigger); the reading
        brings the Trigger back to the queue, and the next pass decides on it. ``now``: the time of
        the pass that asked for it, whose status write (announcing a first check) has landed;
        ``body``: the copy that pass decided on, whose approval must cover ``source``; ``default``:
        the source is the admin's default from the catalog, which needs no author's approval."""
        if key in self._checking:
            return
        self._checking.add(key)
        self._started[key] = now
        self.background(self._check(key, source, body, default))

    async def _check(self, key: Key, source: ConditionSource, body: Body, default: bool = False) -> None:
        try:
            try:
                # Checked before every read, not only by the webhook: a webhook can be down or
                # bypassed, and what was never approved is never read with our rights. A default
                # source is the admin's (the catalog): the author only filled its placeholders, under
                # rules that keep it where the admin pointed it (jobs/placeholders.py).
                unapproved = None if default else refusal(body, source, self.approval_key,
                                                          self.approval_required)
                if unapproved is not None:
                    raise SourceRefused(unapproved)
                raw = await self._read(key[0], source, default)
                reading = Reading(at=self.clock(), raw=raw)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reading = Reading(at=self.clock(), error=_check_failure(error))
            self.readings[key] = reading
            self.changed(key)
            if self.metrics is not None:
                self.metrics.check(source.kind, reading.error is None)
        finally:
            self._checking.discard(key)

    async def _read(self, namespace: str, source: ConditionSource, default: bool = False) -> Any:
        """One source read in a fair share of the check slots (controller/slots.py): the wait for a
        slot and the read each have a deadline of their own, so a tenant whose sources never answer
        delays another's check by one read at most and never makes it fail."""
        try:
            await asyncio.wait_for(self._slots.acquire(namespace), CHECK_SLOT_WAIT_SECONDS)
        except TimeoutError:
            raise SourceError(f"no free check slot within {CHECK_SLOT_WAIT_SECONDS:.0f} s (the operator reads "
                              f"at most {CHECKS_AT_ONCE} sources at once); checked again after the backoff") from None
        try:
            read = self.reader.read_default if default else self.reader.read  # the admin's: sources/egress.py
            return await asyncio.wait_for(read(namespace, source), CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            raise SourceError(f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s") from None
        finally:
            self._slots.release(namespace)


class SourceRefused(Exception):
    """The source is not read for this Trigger (the message says why, naming the field)."""


# Failures whose text is ours (or the API server's short message), never a source's answer.
_TOLD = (SourceError, SourceRefused, MeasureError, Rejected, RetryLater)


def _check_failure(error: Exception) -> str:
    """What a failed check records: the message of a failure we worded; of anything else only its
    kind (an HTTP client's or parser's text may quote what the source answered)."""
    if isinstance(error, _TOLD) and str(error):
        return str(error)
    status = getattr(error, "status", None)
    return f"{type(error).__name__}" + (f" (HTTP {status})" if isinstance(status, int) else "")

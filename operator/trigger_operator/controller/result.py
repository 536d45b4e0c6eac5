"""What one reconcile of a Trigger tells the worker loop, as controller-runtime's reconcile package:
a `Result` (when to come back), or an error; a `TerminalError` is one that retrying cannot fix.
`Requeues` gathers what the steps of a running pass ask for; `backoff_seconds` is the one rule of
exponential backoff (the worker's after an error, the reconciler's after a refused status write)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from trigger_operator.controller.store import Key

# A pass that fails (an API error, a bug) is tried again after retry_seconds, doubling per failure in
# a row up to this; a refused status write backs off the same way. It must stay well under
# core.runs.CREATE_GRACE: a run whose create failed through an API outage is made only if a retry
# comes within that grace (tests/unit/test_worker.py keeps four retries inside it).
BACKOFF_CAP_SECONDS = 60.0


@dataclass(frozen=True)
class Result:
    """What one `Reconciler.sync` asks of the worker loop, as controller-runtime's reconcile.Result:
    come back at ``requeue_at`` (None: only when the store sees the Trigger or its Jobs change)."""

    requeue_at: dt.datetime | None = None


class TerminalError(Exception):
    """A pass failed in a way the same pass fails again until a change or a stated time, as
    controller-runtime's reconcile.TerminalError: the worker logs it once (no traceback, it is an
    answer, not a bug of ours) and does not back off and retry it; the Trigger comes back when it,
    its Jobs or the catalog change (the store's and the catalog's requeue), or at ``retry_at``, the
    time after which the core decides differently by itself (None: only a change).

    Today one failure is terminal: the status write that records Job creates the API server refused
    for good is refused for good itself (HTTP 400, 413, 422: the record is invalid or too large). The
    refused create comes from the Trigger's template, so every retry would create, be refused and be
    refused again; but once core.runs.CREATE_GRACE has passed, the core records the run Lost with a
    short message, which lands: that is its ``retry_at``. Deliberately not terminal: a refused status
    write of an ordinary pass (it backs off, `Reconciler`: what it writes moves with time and
    readings, so a later pass may land); a 403 (RBAC an admin fixes changes no object, so only a
    retry would notice); Conflict, NotFound, TooLate and RetryLater (they pass with time)."""

    def __init__(self, message: str, retry_at: dt.datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class Requeues:
    """The earliest pass each running sync asked for, per Trigger: several steps of one pass may
    ask (its plan's wake-up, a stale copy, a create that came too late); `sync` returns the
    earliest, and the worker honours it even when the pass then failed."""

    def __init__(self, clock: Callable[[], dt.datetime]) -> None:
        self.clock = clock
        self._asked: dict[Key, dt.datetime] = {}

    def again(self, key: Key, at: dt.datetime | None = None) -> None:
        """Asks for another pass of ``key`` at ``at`` (now by default)."""
        at = at or self.clock()
        known = self._asked.get(key)
        self._asked[key] = at if known is None or at < known else known

    def take(self, key: Key) -> dt.datetime | None:
        """The earliest pass asked for ``key`` since the last `take`, and forgets it."""
        return self._asked.pop(key, None)


def backoff_seconds(base: float, steps: int, cap: float) -> float:
    """``base`` doubled per failure in a row (``steps`` >= 1), up to ``cap``."""
    return min(base * 2.0 ** min(steps - 1, 20), cap)

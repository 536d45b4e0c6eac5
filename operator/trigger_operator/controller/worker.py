"""The one worker loop, as controller-runtime's: takes a due key off the queue (one worker per key
at a time), runs the reconciler's `sync` and applies what it returns. Its requeue; after an error,
a retry with per-key exponential backoff from ``retry_seconds`` up to BACKOFF_CAP_SECONDS; after a
`TerminalError`, no retry but its own ``retry_at`` (the key comes back when the store or the catalog
sees a change, or then)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from trigger_operator.controller.queue import DelayQueue
from trigger_operator.controller.result import BACKOFF_CAP_SECONDS, Requeues, Result, TerminalError, backoff_seconds
from trigger_operator.controller.store import Key
from trigger_operator.kube.interface import Conflict, Rejected
from trigger_operator.logs import about

log = logging.getLogger("trigger_operator.controller")
__all__ = ["BACKOFF_CAP_SECONDS", "Worker"]


class Worker:
    """``requeues``: what the failed pass had asked for before it failed (honoured if sooner)."""

    def __init__(self, queue: DelayQueue[Key], sync: Callable[[Key], Awaitable[Result]], requeues: Requeues, *,
                 clock: Callable[[], dt.datetime], retry_seconds: float) -> None:
        self.queue = queue
        self.sync = sync
        self.requeues = requeues
        self.clock = clock
        self.retry_seconds = retry_seconds
        self._failures: dict[Key, int] = {}  # passes that raised in a row, per Trigger
        self._terminal: dict[Key, str] = {}  # the terminal error last logged, per Trigger, until a pass succeeds

    async def work(self) -> None:
        while True:
            await self.step()

    async def step(self) -> None:
        """Waits for a due key, reconciles it and applies the result."""
        key = await self.queue.get()
        try:
            result = await self.sync(key)
        except asyncio.CancelledError:
            raise
        except TerminalError as error:
            result = self.terminal(key, error)
        except Exception as error:
            result = self.failed(key, error)
        else:
            self._failures.pop(key, None)
            self._terminal.pop(key, None)
        finally:
            self.queue.done(key)
        self.apply(key, result)

    def apply(self, key: Key, result: Result) -> None:
        if result.requeue_at is not None:
            self.queue.add(key, result.requeue_at)

    def failed(self, key: Key, error: Exception) -> Result:
        """The result of a sync that raised: tried again after retry_seconds, doubling per failure
        in a row up to BACKOFF_CAP_SECONDS (a Trigger that always fails costs a pass per minute, not
        per 5 s), or sooner if the pass had asked for that (its plan's wake-up; at once after a stale
        copy). The traceback is logged once per streak: the rest are one line each."""
        steps = self._failures[key] = self._failures.get(key, 0) + 1
        retry = self.clock() + dt.timedelta(seconds=backoff_seconds(self.retry_seconds, steps, BACKOFF_CAP_SECONDS))
        asked = self.requeues.take(key)
        log.warning("reconcile of %s/%s failed (%d time(s) in a row), retrying at %s: %s", *key, steps,
                    retry.time(), error, exc_info=steps == 1 and not isinstance(error, (Conflict, Rejected)),
                    extra=about(*key))
        return Result(min(retry, asked) if asked is not None else retry)

    def terminal(self, key: Key, error: TerminalError) -> Result:
        """The result of a sync that raised a `TerminalError`: no requeue but the error's own
        ``retry_at``, not even one the pass had asked for before it failed (it would only fail
        again), and no backoff streak. Logged once
        (a warning, no traceback) until a pass succeeds or the error says something else; a
        Trigger whose Jobs keep changing would otherwise log it at every change."""
        self._failures.pop(key, None)
        self.requeues.take(key)
        message = str(error)
        if self._terminal.get(key) != message:
            self._terminal[key] = message
            log.warning("reconcile of %s/%s failed and is not retried until the Trigger, its Jobs or the "
                        "catalog change%s: %s", *key,
                        f", or {error.retry_at.isoformat(timespec='seconds')}" if error.retry_at else "",
                        message, extra=about(*key))
        return Result(error.retry_at)

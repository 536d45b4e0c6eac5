"""The worker loop (controller/worker.py) applies what a sync returns: its requeue; after an
ordinary error a retry with per-key exponential backoff up to its bound; after a `TerminalError`
none (logged once), until the Trigger changes and its key comes back."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from trigger_operator.controller.queue import DelayQueue
from trigger_operator.controller.result import Requeues, Result, TerminalError
from trigger_operator.controller.store import Key
from trigger_operator.controller.worker import BACKOFF_CAP_SECONDS, Worker
from trigger_operator.core.runs import CREATE_GRACE

KEY: Key = ("team-a", "nightly")
START = dt.datetime(2025, 1, 1, 10, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


class Sync:
    """A reconciler whose pass raises ``error`` (None: succeeds), having asked to come back in ``asks`` s."""

    def __init__(self, requeues: Requeues, clock: Clock) -> None:
        self.requeues, self.clock = requeues, clock
        self.error: Exception | None = None
        self.asks: float | None = None
        self.passes = 0

    async def __call__(self, key: Key) -> Result:
        self.passes += 1
        if self.asks is not None:
            self.requeues.again(key, self.clock.now + dt.timedelta(seconds=self.asks))
        if self.error is not None:
            raise self.error
        return Result(self.requeues.take(key))


def worker() -> tuple[Worker, DelayQueue[Key], Sync, Clock]:
    clock = Clock()
    queue: DelayQueue[Key] = DelayQueue(clock)
    requeues = Requeues(clock)
    sync = Sync(requeues, clock)
    return Worker(queue, sync, requeues, clock=clock, retry_seconds=5.0), queue, sync, clock


async def step(w: Worker) -> None:
    await asyncio.wait_for(w.step(), timeout=1)


def delays_until_due(w: Worker, queue: DelayQueue[Key], clock: Clock, steps: int) -> list[float]:
    """Runs ``steps`` passes, each when its key is due; the delay the worker chose after each."""
    async def scenario() -> list[float]:
        delays = []
        for _ in range(steps):
            await step(w)
            due = queue.next_due()
            assert due is not None, "not retried"
            delays.append((due - clock.now).total_seconds())
            clock.now = due
        return delays
    return asyncio.run(scenario())


def test_an_ordinary_error_is_retried_with_exponential_backoff_up_to_its_bound() -> None:
    w, queue, sync, clock = worker()
    sync.error = RuntimeError("the API server is restarting")
    queue.add(KEY)
    assert delays_until_due(w, queue, clock, 9) == [5, 10, 20, 40, 60, 60, 60, 60, 60]
    assert BACKOFF_CAP_SECONDS == 60 and sync.passes == 9
    sync.error = None  # a pass that succeeds ends the streak: the next failure waits 5 s again
    asyncio.run(step(w))
    assert queue.next_due() is None
    sync.error = RuntimeError("again")
    queue.add(KEY)
    assert delays_until_due(w, queue, clock, 2) == [5, 10]


def test_a_terminal_error_is_not_retried_and_is_logged_once_until_the_trigger_changes(
        caplog: pytest.LogCaptureFixture) -> None:
    w, queue, sync, clock = worker()
    sync.error = TerminalError("the API server refused the status write recording refused Job creates (HTTP 413)")
    sync.asks = 0  # what the pass asked before it failed would only fail again: dropped too

    async def scenario() -> None:
        for _ in range(3):
            queue.add(KEY)  # the store saw the Trigger or one of its Jobs change
            await step(w)
            assert queue.next_due() is None and len(queue) == 0  # nothing comes back by itself
            clock.now += dt.timedelta(hours=1)
        assert sync.passes == 3
        lines = [r for r in caplog.records if "not retried" in r.getMessage()]
        assert len(lines) == 1 and lines[0].exc_info is None and "HTTP 413" in lines[0].getMessage()
        sync.error = TerminalError("another reason")  # a new reason is worth a line of its own
        queue.add(KEY)
        await step(w)
        assert len([r for r in caplog.records if "not retried" in r.getMessage()]) == 2

    asyncio.run(scenario())


def test_a_terminal_error_ends_an_ordinary_streak() -> None:
    w, queue, sync, clock = worker()
    sync.error = RuntimeError("boom")
    queue.add(KEY)
    assert delays_until_due(w, queue, clock, 3) == [5, 10, 20]
    sync.error = TerminalError("refused for good")
    asyncio.run(step(w))
    assert queue.next_due() is None
    sync.error = RuntimeError("boom")
    queue.add(KEY)
    assert delays_until_due(w, queue, clock, 1) == [5]


def test_the_backoff_bound_leaves_room_for_retries_within_the_create_grace() -> None:
    """A run whose create fails through an API outage is made only if a retry comes within
    CREATE_GRACE; at the bound, four retries still fit (the reviewer's case: a cap equal to the
    grace lost the run after a 3-minute outage)."""
    assert CREATE_GRACE.total_seconds() >= 4 * BACKOFF_CAP_SECONDS


def test_a_terminal_error_comes_back_at_its_own_retry_time_and_no_sooner() -> None:
    w, queue, sync, clock = worker()
    later = clock.now + dt.timedelta(minutes=5)
    sync.error = TerminalError("refused for good until the grace passes", retry_at=later)
    queue.add(KEY)
    asyncio.run(step(w))
    assert queue.next_due() == later


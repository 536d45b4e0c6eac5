"""A delaying work queue of Trigger keys, as client-go's: each key is due at one time (the
earliest asked for), is handed to one worker at a time, and comes back if it was added again
while a worker had it. The scheduler's only timer: it sleeps until the earliest due key.

Each change wakes one waiting worker, not all of them: a worker that takes a key wakes the next
one while more are queued (so a burst of due keys fans out one wake-up per key), and a worker
woken for a key that is not due yet sleeps again until it is. Waking all 64 workers on every add,
as an Event would, cost the event loop more in a thundering minute than its creates did."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DelayQueue(Generic[K]):
    def __init__(self, clock: Callable[[], dt.datetime]) -> None:
        self._clock = clock
        self._due: dict[K, dt.datetime] = {}  # key -> when it is due (the earliest asked for)
        self._heap: list[tuple[dt.datetime, int, K]] = []
        self._counter = 0
        self._busy: set[K] = set()
        self._again: dict[K, dt.datetime] = {}  # added while busy: due again when done
        self._waiters: deque[asyncio.Future[None]] = deque()  # workers in `get`, first come first woken

    def __len__(self) -> int:
        return len(self._due) + len(self._again)

    def add(self, key: K, at: dt.datetime | None = None) -> None:
        at = at or self._clock()
        if key in self._busy:
            if key not in self._again or at < self._again[key]:
                self._again[key] = at
            return
        if key in self._due and self._due[key] <= at:
            return
        self._due[key] = at
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, key))
        self._wake_one()

    def forget(self, key: K) -> None:
        self._due.pop(key, None)
        self._again.pop(key, None)

    def next_due(self) -> dt.datetime | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    async def get(self) -> K:
        """Waits for the next due key and marks it busy; call `done` when finished with it."""
        loop = asyncio.get_running_loop()
        while True:
            self._drop_stale()
            delay: float | None = None
            if self._heap:
                at, _, key = self._heap[0]
                delay = (at - self._clock()).total_seconds()
                if delay <= 0:
                    heapq.heappop(self._heap)
                    del self._due[key]
                    self._busy.add(key)
                    if self._heap:  # the next worker takes the next key, or sleeps until it is due
                        self._wake_one()
                    return key
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(delay, _set, waiter) if delay is not None else None
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the wake-up goes to another worker
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                with contextlib.suppress(ValueError):  # its timer woke it, or it was cancelled
                    self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def done(self, key: K) -> None:
        self._busy.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            self.add(key, again)

    def _drop_stale(self) -> None:
        while self._heap:
            at, _, key = self._heap[0]
            if self._due.get(key) == at and key not in self._busy:
                return
            heapq.heappop(self._heap)


def _set(waiter: asyncio.Future[None]) -> None:
    """A sleeping worker's timer: its earliest key is due (it may have been woken already)."""
    if not waiter.done():
        waiter.set_result(None)

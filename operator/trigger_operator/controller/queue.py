"""A delaying work queue of Trigger keys, as client-go's: each key is due at one time (the
earliest asked for), is handed to one worker at a time, and comes back if it was added again
while a worker had it. The scheduler's only timer: it sleeps until the earliest due key."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
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
        self._changed = asyncio.Event()

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
        self._changed.set()

    def forget(self, key: K) -> None:
        self._due.pop(key, None)
        self._again.pop(key, None)

    def next_due(self) -> dt.datetime | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    async def get(self) -> K:
        """Waits for the next due key and marks it busy; call `done` when finished with it."""
        while True:
            self._drop_stale()
            if self._heap:
                at, _, key = self._heap[0]
                delay = (at - self._clock()).total_seconds()
                if delay <= 0:
                    heapq.heappop(self._heap)
                    del self._due[key]
                    self._busy.add(key)
                    return key
            else:
                delay = None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=delay)

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

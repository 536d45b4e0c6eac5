"""Slots for condition checks, shared fairly between namespaces (tenants).

At most ``limit`` checks run at once, at most ``per_key`` of them for one namespace. When every
slot is taken, a freed one goes to the waiting namespace with the fewest checks running (ties: the
one that has waited longest), not to whoever asked first: a tenant with thousands of sources that
never answer gets in line behind everyone else, so another tenant's check waits for the next free
slot (a read is bounded by its deadline) instead of for the whole backlog.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque


class FairSlots:
    def __init__(self, limit: int, per_key: int) -> None:
        self.limit, self.per_key = limit, per_key
        self.running: dict[str, int] = {}
        self._total = 0
        self._waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._arrivals = itertools.count()

    async def acquire(self, key: str) -> None:
        """Waits for a slot for ``key``; cancelled (a deadline), it leaves the line or gives the slot back."""
        if not self._waiting and self._free_for(key):
            self._take(key)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, deque()).append((next(self._arrivals), granted))
        self._grant()  # this key may be eligible while the ones ahead of it are not
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(key)  # granted just as the waiter gave up: pass it on
            else:
                self._leave(key, granted)
            raise

    def release(self, key: str) -> None:
        self.running[key] -= 1
        if not self.running[key]:
            del self.running[key]
        self._total -= 1
        self._grant()

    def _free_for(self, key: str) -> bool:
        return self._total < self.limit and self.running.get(key, 0) < self.per_key

    def _take(self, key: str) -> None:
        self.running[key] = self.running.get(key, 0) + 1
        self._total += 1

    def _grant(self) -> None:
        while self._total < self.limit:
            eligible = [k for k, line in self._waiting.items() if line and self.running.get(k, 0) < self.per_key]
            if not eligible:
                return
            key = min(eligible, key=lambda k: (self.running.get(k, 0), self._waiting[k][0][0]))
            _, granted = self._waiting[key].popleft()
            if not self._waiting[key]:
                del self._waiting[key]
            if granted.done():  # cancelled while in line
                continue
            self._take(key)
            granted.set_result(None)

    def _leave(self, key: str, granted: asyncio.Future[None]) -> None:
        line = self._waiting.get(key)
        if line is None:
            return
        for entry in list(line):
            if entry[1] is granted:
                line.remove(entry)
        if not line:
            del self._waiting[key]

    @property
    def waiting(self) -> int:
        return sum(len(line) for line in self._waiting.values())

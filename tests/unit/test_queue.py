"""The scheduler's delaying queue: one due time per key (the earliest asked for), one worker per
key at a time, and a key added while busy comes back when the worker is done."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TypeVar

import pytest

from tests.unit.conftest import at
from trigger_operator.controller.queue import DelayQueue

K = TypeVar("K", str, int)


class Clock:
    def __init__(self) -> None:
        self.now = at()

    def __call__(self) -> dt.datetime:
        return self.now


async def take(queue: DelayQueue[K]) -> K:
    return await asyncio.wait_for(queue.get(), timeout=1)


def test_a_key_due_now_is_handed_out_at_once() -> None:
    async def scenario() -> None:
        queue: DelayQueue[str] = DelayQueue(Clock())
        queue.add("a")
        assert await take(queue) == "a"
    asyncio.run(scenario())


def test_keys_come_out_in_due_order_and_the_earliest_time_asked_for_wins() -> None:
    async def scenario() -> None:
        clock = Clock()
        queue: DelayQueue[str] = DelayQueue(clock)
        queue.add("late", at(minutes=5))
        queue.add("soon", at(minutes=2))
        queue.add("late", at(minutes=1))  # earlier: wins
        queue.add("soon", at(minutes=9))  # later: ignored
        assert queue.next_due() == at(minutes=1)
        clock.now = at(minutes=10)
        assert [await take(queue), await take(queue)] == ["late", "soon"]
        assert len(queue) == 0
    asyncio.run(scenario())


def test_a_key_not_yet_due_is_not_handed_out() -> None:
    async def scenario() -> None:
        queue: DelayQueue[str] = DelayQueue(Clock())
        queue.add("later", at(seconds=30))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), timeout=0.05)
    asyncio.run(scenario())


def test_a_key_added_while_busy_comes_back_only_when_done() -> None:
    async def scenario() -> None:
        queue: DelayQueue[str] = DelayQueue(Clock())
        queue.add("a")
        assert await take(queue) == "a"
        queue.add("a")  # a watch event arrives while a worker has "a"
        assert queue.next_due() is None  # not handed to a second worker
        queue.done("a")
        assert await take(queue) == "a"
    asyncio.run(scenario())


def test_a_forgotten_key_is_not_handed_out() -> None:
    async def scenario() -> None:
        queue: DelayQueue[str] = DelayQueue(Clock())
        queue.add("gone")
        queue.add("kept")
        queue.forget("gone")
        assert await take(queue) == "kept"
        assert queue.next_due() is None
    asyncio.run(scenario())


def test_a_waiting_worker_wakes_for_a_key_added_later() -> None:
    async def scenario() -> None:
        queue: DelayQueue[str] = DelayQueue(Clock())
        waiting = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        queue.add("new")
        assert await asyncio.wait_for(waiting, timeout=1) == "new"
    asyncio.run(scenario())


def test_an_add_wakes_one_waiting_worker_and_each_take_wakes_the_next_while_keys_are_due() -> None:
    async def scenario() -> None:
        queue: DelayQueue[str] = DelayQueue(Clock())
        waiting = [asyncio.create_task(queue.get()) for _ in range(8)]
        await asyncio.sleep(0.01)
        queue.add("a")
        await asyncio.sleep(0.01)
        assert sum(t.done() for t in waiting) == 1  # one woken, the others still asleep
        for key in ("b", "c", "d"):
            queue.add(key)
        await asyncio.sleep(0.01)
        assert sorted(t.result() for t in waiting if t.done()) == ["a", "b", "c", "d"]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        assert not queue._waiters  # a cancelled worker leaves the line
    asyncio.run(scenario())


def test_keys_due_at_once_are_all_handed_out_though_their_adds_woke_one_worker_each() -> None:
    async def scenario() -> None:
        clock = Clock()
        queue: DelayQueue[int] = DelayQueue(clock)
        for i in range(100):  # a thundering minute: every key due at the same moment, added early
            queue.add(i, at(seconds=1))
        waiting = [asyncio.create_task(queue.get()) for _ in range(4)]
        await asyncio.sleep(0.01)
        assert not any(t.done() for t in waiting)
        clock.now = at(seconds=1)
        queue.add(1000, at(seconds=1))  # any change wakes one; each take wakes the next
        got = [await asyncio.wait_for(t, timeout=1) for t in waiting]
        for key in got:
            queue.done(key)
        rest = [await take(queue) for _ in range(97)]
        assert sorted(got + rest) == [*range(100), 1000]
    asyncio.run(scenario())


def test_a_worker_cancelled_after_its_wake_up_passes_it_on() -> None:
    async def scenario() -> None:
        queue: DelayQueue[str] = DelayQueue(Clock())
        first = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0.01)
        queue.add("a")  # wakes the first in line...
        first.cancel()  # ...which is cancelled before it runs: the second must get "a"
        assert await asyncio.wait_for(second, timeout=1) == "a"
        with pytest.raises(asyncio.CancelledError):
            await first
    asyncio.run(scenario())


def test_a_sleeping_worker_wakes_by_its_own_timer_when_its_key_falls_due() -> None:
    async def scenario() -> None:
        queue: DelayQueue[str] = DelayQueue(dt_now)
        queue.add("soon", dt_now() + dt.timedelta(seconds=0.05))
        assert await asyncio.wait_for(queue.get(), timeout=1) == "soon"
        assert not queue._waiters
    asyncio.run(scenario())


def dt_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

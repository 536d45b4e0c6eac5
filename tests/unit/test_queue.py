"""The scheduler's delaying queue: one due time per key (the earliest asked for), one worker per
key at a time, and a key added while busy comes back when the worker is done."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.unit.conftest import at
from trigger_operator.controller.queue import DelayQueue


class Clock:
    def __init__(self) -> None:
        self.now = at()

    def __call__(self) -> dt.datetime:
        return self.now


async def take(queue: DelayQueue[str]) -> str:
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

"""The check slots shared fairly between namespaces (controller/slots.py)."""

from __future__ import annotations

import asyncio

import pytest

from trigger_operator.controller.slots import FairSlots


def run(scenario: object) -> None:
    asyncio.run(scenario())  # type: ignore[operator]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_freed_slot_goes_to_the_namespace_with_the_fewest_checks_running_not_to_the_first_in_line() -> None:
    async def scenario() -> None:
        slots = FairSlots(limit=4, per_key=3)
        for _ in range(3):
            await slots.acquire("hostile")
        await slots.acquire("quiet")
        got: list[str] = []

        async def wait(key: str) -> None:
            await slots.acquire(key)
            got.append(key)

        waiters = [asyncio.create_task(wait("hostile")) for _ in range(5)]  # first in line
        await settle()
        waiters.append(asyncio.create_task(wait("victim")))
        await settle()
        assert got == [] and slots.waiting == 6
        slots.release("hostile")
        await settle()
        assert got == ["victim"]  # 0 running beats the hostile namespace's 2, though it came last
        slots.release("quiet")
        await settle()
        assert got == ["victim", "hostile"] and slots.running == {"hostile": 3, "victim": 1}
        for task in waiters:
            task.cancel()
        await settle()
        assert slots.waiting == 0
    run(scenario)


def test_one_namespace_never_holds_more_than_its_share_even_with_slots_free() -> None:
    async def scenario() -> None:
        slots = FairSlots(limit=64, per_key=8)
        for _ in range(8):
            await slots.acquire("a")
        ninth = asyncio.create_task(slots.acquire("a"))
        await settle()
        assert not ninth.done() and slots.running == {"a": 8}
        await slots.acquire("b")  # another namespace is not held up by a's line
        slots.release("a")
        await settle()
        assert ninth.done() and slots.running == {"a": 8, "b": 1}
    run(scenario)


def test_a_waiter_that_gives_up_leaves_the_line_and_a_slot_granted_as_it_gave_up_is_passed_on() -> None:
    async def scenario() -> None:
        slots = FairSlots(limit=1, per_key=1)
        await slots.acquire("a")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slots.acquire("b"), 0.01)
        assert slots.waiting == 0
        late = asyncio.create_task(slots.acquire("c"))
        await settle()
        slots.release("a")  # granted to c ...
        late.cancel()  # ... which is cancelled before it runs again
        await settle()
        assert slots.running == {} and slots.waiting == 0
        await asyncio.wait_for(slots.acquire("d"), 1)  # the slot was not lost
    run(scenario)

"""Work that must not hold up a pass (Events posted, condition sources read): each piece a task of
its own, kept referenced until done (asyncio keeps only weak references to tasks)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs ``work`` as a task of its own."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def done(self) -> None:
        """Waits for the work started so far."""
        await asyncio.gather(*list(self._tasks))

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

"""What runs at once: each Trigger's deliveries as a task of their own (a flight), so that no tenant's
sink holds another's notifications nor the notifier's tick; and the request slots, at most
`SENDS_AT_ONCE` requests in flight, at most `SENDS_PER_NAMESPACE` of them for one namespace."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger("trigger_operator.notify")
SENDS_AT_ONCE = 16  # requests in flight, every Trigger's together
SENDS_PER_NAMESPACE = 4  # of those, one namespace's: a tenant's slow sinks never take every slot


class Flights:
    """At most one task of deliveries per Trigger uid; one that fails is logged and started again
    by a later tick."""

    def __init__(self) -> None:
        self._flights: dict[str, asyncio.Task[None]] = {}  # by Trigger uid: its deliveries under way

    def __bool__(self) -> bool:
        return bool(self._flights)

    def fly(self, uid: str, deliveries: Callable[[], Awaitable[None]]) -> None:
        """Starts a Trigger's deliveries as a task of their own, unless some are under way."""
        if uid in self._flights:
            return

        async def flight() -> None:
            try:
                await deliveries()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notifications of Trigger uid %s failed; trying again", uid)
            finally:
                if self._flights.get(uid) is task:
                    del self._flights[uid]

        task = asyncio.get_running_loop().create_task(flight(), name=f"notify {uid}")
        self._flights[uid] = task

    def land(self, uid: str) -> None:
        """Cancels a Trigger's deliveries under way: a verdict taken without them overrides them."""
        flight = self._flights.pop(uid, None)
        if flight is not None:
            flight.cancel()

    async def wait(self) -> None:
        """Every flight under way to its end (and any they started meanwhile)."""
        while self._flights:
            await asyncio.gather(*self._flights.values(), return_exceptions=True)

    def cancel(self) -> None:
        for flight in list(self._flights.values()):
            flight.cancel()


class Slots:
    """At most `SENDS_AT_ONCE` requests in flight, at most `SENDS_PER_NAMESPACE` of them one
    namespace's (that slot is taken first, so a namespace waiting for its own holds no global one).
    The semaphores are made for the running loop (tests run a notifier under several loops)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all = asyncio.Semaphore(SENDS_AT_ONCE)
        self._per: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # namespace: (slots, [users])

    @contextlib.asynccontextmanager
    async def of(self, namespace: str) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._all, self._per = loop, asyncio.Semaphore(SENDS_AT_ONCE), {}
        own, users = self._per.setdefault(namespace, (asyncio.Semaphore(SENDS_PER_NAMESPACE), [0]))
        users[0] += 1
        try:
            async with own, self._all:
                yield
        finally:
            users[0] -= 1
            if not users[0] and self._per.get(namespace, (None,))[0] is own:
                del self._per[namespace]  # no namespace stays in memory once idle

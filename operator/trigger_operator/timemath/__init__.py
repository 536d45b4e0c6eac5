"""Pure schedule math: when a Trigger's moments fall. No clock, no I/O: ``now`` is always an argument."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Schedule(Protocol):
    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first moment strictly after ``after``, or None if there is none."""


def moments(schedule: Schedule, after: dt.datetime, count: int) -> list[dt.datetime]:
    """Up to ``count`` moments strictly after ``after``; fewer when the schedule ends."""
    found: list[dt.datetime] = []
    moment: dt.datetime | None = after
    while moment is not None and len(found) < count:
        moment = schedule.next_after(moment)
        if moment is not None:
            found.append(moment)
    return found

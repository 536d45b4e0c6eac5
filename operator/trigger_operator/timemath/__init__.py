"""Pure schedule math: when a Trigger's moments fall. No clock, no I/O: ``now`` is always an argument."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from trigger_operator.timemath.cron import SEARCH_SPAN


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


def shortfall(found: Sequence[dt.datetime], count: int, schedule: str) -> tuple[bool, str] | None:
    """The one rule of both previews, ``trigger-operator next`` and ``kubectl trigger next``: fewer
    moments than asked is said, with how many were found, but the moments found are still the
    answer; only none at all (of a positive count) is a failure. Returns (failed, message), or None
    when all were found. ``schedule`` names the schedule in the message."""
    if len(found) >= count:
        return None
    if not found:
        return True, f"the schedule {schedule} never fires (no moment within {SEARCH_SPAN})"
    return False, (f"the schedule {schedule} has {len(found)} of the {count} moments asked for: "
                   f"no moment within {SEARCH_SPAN} after the last")

"""Which moments are due now, which were missed, and where the schedule cursor moves. Pure.

Like CronJob's ``mostRecentScheduleTime``, but with an explicit catch-up policy and exact counts up
to a cap instead of an estimate.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from trigger_operator.timemath import Schedule

# At most this many moments are started in one pass, and missed moments are counted exactly up to
# it. CronJob chose 100 too: a bigger backlog usually means a clock problem, not a backfill wish.
MAX_RUNS_PER_PASS = 100
# Windows searched, smallest first, for the most recent moment before a time. Each window is only
# searched when the smaller ones held no moment, so few moments are ever enumerated.
_WINDOWS = tuple(dt.timedelta(seconds=s) for s in (60, 3600, 86400, 32 * 86400, 400 * 86400, 2200 * 86400))
_EPSILON = dt.timedelta(microseconds=1)


class CatchUpPolicy(enum.StrEnum):
    LATEST = "Latest"  # run only the most recent missed moment (CronJob's behaviour)
    ALL = "All"  # run every missed moment, oldest first


@dataclass(frozen=True)
class Due:
    run: tuple[dt.datetime, ...]  # moments to start now, oldest first
    missed: int  # moments passed over: too late for the deadline, or older than the latest
    cursor: dt.datetime | None  # the last moment now handled (run or missed); None: nothing due
    more: bool  # moments beyond MAX_RUNS_PER_PASS are due too: come back at once


def latest_at_or_before(schedule: Schedule, t: dt.datetime, floor: dt.datetime) -> dt.datetime | None:
    """The latest moment m with floor < m <= t."""
    for start in [max(floor, t - window) for window in _WINDOWS] + [floor]:
        first = schedule.next_after(start)
        if first is not None and first <= t:
            last = first
            while (following := schedule.next_after(last)) is not None and following <= t:
                last = following
            return last
        if start == floor:
            return None
    return None


def _take(schedule: Schedule, after: dt.datetime, until: dt.datetime, limit: int) -> list[dt.datetime]:
    """Up to ``limit`` moments m with after < m <= until, oldest first."""
    moments: list[dt.datetime] = []
    m = schedule.next_after(after)
    while m is not None and m <= until and len(moments) < limit:
        moments.append(m)
        m = schedule.next_after(m)
    return moments


def due(schedule: Schedule, *, earliest: dt.datetime, now: dt.datetime,
        deadline: dt.timedelta | None, policy: CatchUpPolicy) -> Due:
    """Moments in (earliest, now] to run now under the policy and the starting deadline.

    A moment is too late when it is more than ``deadline`` before ``now`` (CronJob's rule); such
    moments are never run and count as missed.
    """
    latest = latest_at_or_before(schedule, now, earliest)
    if latest is None:
        return Due(run=(), missed=0, cursor=None, more=False)
    start = earliest
    missed = 0
    if deadline is not None and now - deadline > earliest:
        expired_until = now - deadline - _EPSILON
        missed = len(_take(schedule, earliest, expired_until, MAX_RUNS_PER_PASS))
        start = max(earliest, expired_until)
    if policy is CatchUpPolicy.LATEST:
        if latest <= start:  # even the latest moment is too late
            return Due(run=(), missed=missed, cursor=latest, more=False)
        older = len(_take(schedule, start, latest - _EPSILON, MAX_RUNS_PER_PASS))
        return Due(run=(latest,), missed=min(missed + older, MAX_RUNS_PER_PASS), cursor=latest, more=False)
    moments = _take(schedule, start, now, MAX_RUNS_PER_PASS + 1)
    more = len(moments) > MAX_RUNS_PER_PASS
    run = tuple(moments[:MAX_RUNS_PER_PASS])
    cursor = run[-1] if run else latest
    return Due(run=run, missed=missed, cursor=cursor, more=more)

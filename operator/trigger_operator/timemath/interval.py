"""Fixed-interval schedules: moments on a lattice ``origin + k * period``. Pure.

The origin is the last scheduled moment (or, before the first run, the moment the Trigger became
active), so a restart or a slow reconcile never shifts later moments: they stay on the lattice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class IntervalSchedule:
    origin: dt.datetime
    period: dt.timedelta
    include_origin: bool = False  # startImmediately: the origin itself is a moment

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        if after < self.origin:
            return self.origin if self.include_origin else self.origin + self.period
        steps = (after - self.origin) // self.period + 1
        return self.origin + steps * self.period

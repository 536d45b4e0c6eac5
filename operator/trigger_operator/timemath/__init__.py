"""Pure schedule math: when a Trigger's moments fall. No clock, no I/O: ``now`` is always an argument."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Schedule(Protocol):
    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first moment strictly after ``after``, or None if there is none."""

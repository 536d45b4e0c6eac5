"""Absence (``scheduleConfig.absence: {withinSeconds: W, fewerThan: K}``): an event Trigger that runs
once for each silent window, Prefect's proactive posture. Pure. docs/events.md, "Absence".

The exact rule:

- Windows are tumbling, W seconds long, from the Trigger's ``activeSince``: [a, a+W), [a+W, a+2W)...
  (not Prefect's "W after the last event": a fixed grid tells the user when each verdict comes, and
  a busy stream cannot push it away for ever). A resume or an edit that makes the Trigger Active
  again starts a new grid at its new activeSince.
- An event counts in the window of the moment its count is stored (the 202's write). Events stored
  before the Trigger first became Active (no activeSince yet) count in no window.
- At each window's end the reconciler wakes and judges it: fewer than K events -> one run, told the
  count (TRIGGER_EVENT_COUNT); K or more -> none. ``status.lastAbsence`` records the last window
  judged: {windowStart, windowEnd, count, fired} (with groupBy: count is the keys' sum and
  ``absentKeys`` the runs fired).
- At most once per window: the window's end is written as judged in the same guarded write that
  lists the run. After an outage of several windows only the last closed one is judged (as
  catchUpPolicy Latest): the windows passed unjudged are no silence the operator saw.
- Under Forbid a Trigger whose run is still going waits to judge (its end brings it back); with
  groupBy a key whose run is still going is passed over for that window.
- With groupBy each key seen at least once is judged on its own: a key never seen cannot be absent,
  since the operator cannot know it exists.
- Only an Active Trigger (``status.phase``) counts towards absence: a Paused, Disabled, Failed or
  Finished one counts nothing and keeps no window (its counts are dropped: nothing piles up, and a
  resume starts a new grid whose first window begins empty). Its keys stay followed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from trigger_operator.model.spec import Absence, TriggerSpec
from trigger_operator.model.status import Phase, TriggerStatus, format_time, parse_time


def settings(spec: TriggerSpec) -> Absence | None:
    return spec.schedule_config.absence


def window_start(active_since: int, within: int, t: int) -> int:
    """The start of the window that holds ``t`` (unix s) on the grid from ``active_since``."""
    return active_since + (t - active_since) // within * within


def anchor(status: TriggerStatus) -> int | None:
    """The grid's origin; None while the Trigger is not Active: no window is open then."""
    if status.active_since is None or status.phase is not Phase.ACTIVE:
        return None
    return int(status.active_since.timestamp())


def on_grid(start: int, active_since: int, within: int) -> bool:
    """Whether a window's start lies on the grid (an older grid's windows are not judged)."""
    return start >= active_since and (start - active_since) % within == 0


def judged_until(status: TriggerStatus) -> int | None:
    """The end of the last window judged on the current grid (its start while none was)."""
    a = anchor(status)
    if a is None:
        return None
    end = parse_time((status.last_absence or {}).get("windowEnd"))
    return max(a, int(end.timestamp())) if end is not None else a


def closed_window(status: TriggerStatus, within: int, now: dt.datetime) -> tuple[int, int] | None:
    """The last window that ended by ``now`` and is not judged yet, as (start, end) unix s."""
    a, judged = anchor(status), judged_until(status)
    if a is None or judged is None:
        return None
    end = window_start(a, within, int(now.timestamp()))
    return (end - within, end) if end > judged else None


def next_window_end(status: TriggerStatus, within: int, now: dt.datetime) -> dt.datetime | None:
    a = anchor(status)
    if a is None:
        return None
    return dt.datetime.fromtimestamp(window_start(a, within, int(now.timestamp())) + within, dt.UTC)


def count_in(window: tuple[tuple[int, int], ...], start: int) -> int:
    return sum(n for s, n in window if s == start)


def judged(start: int, end: int, count: int, fired: bool, **more: Any) -> dict[str, Any]:
    """``status.lastAbsence`` for a window judged."""
    return {"windowStart": format_time(dt.datetime.fromtimestamp(start, dt.UTC)),
            "windowEnd": format_time(dt.datetime.fromtimestamp(end, dt.UTC)), "count": count, "fired": fired,
            **more}

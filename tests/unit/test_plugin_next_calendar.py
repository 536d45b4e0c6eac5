"""``kubectl trigger next`` shows a Trigger's composed moments (issue 22): every cron line, the
exclusions, the window and its own jitter, exactly as the operator computes them."""

from __future__ import annotations

import datetime as dt

from tests.unit.conftest import NAMESPACE, TRIGGER_NAME, TRIGGER_UID, at
from trigger_operator.model.status import format_time
from trigger_operator.plugin import views
from trigger_operator.timemath.calendar import jitter_offset


def test_next_shows_every_line_less_the_exclusions_within_the_window_with_the_jitter() -> None:
    trigger = {"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger",
               "metadata": {"name": TRIGGER_NAME, "namespace": NAMESPACE, "uid": TRIGGER_UID,
                            "creationTimestamp": format_time(at(days=-3))},
               "spec": {"actionType": "cluster", "triggerType": "cron", "scheduleConfig": {
                   "cronExpression": "0 9 * * 1-5", "cronExpressions": ["0 12 * * 6"], "timezone": "Europe/Berlin",
                   "excludeCron": ["* * * * 3"], "excludeDates": ["2026-03-06"],
                   "endAt": "2026-03-10T08:00:00Z", "jitterSeconds": 900}},
               "status": {"phase": "Active"}}
    offset = jitter_offset(NAMESPACE, TRIGGER_NAME, 900)
    assert offset > dt.timedelta(0)
    upcoming = views.upcoming(trigger, at(), 10)  # Monday 2 March, 11:00 in Berlin
    assert [m.astimezone(upcoming.zone).strftime("%a %d %H:%M") for m in upcoming.moments] == [
        "Tue 03 09:" + f"{offset.seconds // 60:02d}", "Thu 05 09:" + f"{offset.seconds // 60:02d}",
        "Sat 07 12:" + f"{offset.seconds // 60:02d}", "Mon 09 09:" + f"{offset.seconds // 60:02d}"]
    # Not Wednesday, not Friday 6 March, and not Tuesday 10 March: its 09:00 is endAt itself (exclusive).
    assert all(m.second == offset.seconds % 60 for m in upcoming.moments)

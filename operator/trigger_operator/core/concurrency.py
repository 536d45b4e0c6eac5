"""concurrencyPolicy, the one rule for every kind of run (scheduled, run-now, event, condition):
what a new run does while others are running. core/runs.py (make_room) and core/firing/ apply it. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from trigger_operator.model.spec import ConcurrencyPolicy


@dataclass(frozen=True)
class Room:
    """What a new run needs first. ``blocker``: the running run that forbids it (Forbid);
    ``replace``: the running runs are replaced (deleted, counted Replaced) before it starts."""

    blocker: str | None = None
    replace: bool = False


def room(policy: ConcurrencyPolicy, running: Sequence[str]) -> Room:
    """Allow starts beside the running runs; Forbid waits for (or skips past) the first of them;
    Replace replaces them all."""
    if not running or policy is ConcurrencyPolicy.ALLOW:
        return Room()
    if policy is ConcurrencyPolicy.FORBID:
        return Room(blocker=running[0])
    return Room(replace=True)


def moments_to_start(policy: ConcurrencyPolicy,
                     moments: Sequence[dt.datetime]) -> tuple[Sequence[dt.datetime], int]:
    """Of the moments a catch-up runs, those to start and how many are skipped: under Replace each
    run would replace the one before it at once, so only the last starts."""
    if policy is ConcurrencyPolicy.REPLACE and len(moments) > 1:
        return moments[-1:], len(moments) - 1
    return moments, 0


def condition_run_waits(policy: ConcurrencyPolicy, condition_running: bool) -> bool:
    """Under Allow one condition run at a time even so: its value becomes the baseline, so a second
    must wait. (Under Forbid and Replace, `room` decides as for any run.)"""
    return policy is ConcurrencyPolicy.ALLOW and condition_running


def deletes_unfinished_strays(policy: ConcurrencyPolicy) -> bool:
    """Under Replace an unfinished Job of ours that is no active run was replaced and its delete lost
    (a crash, an API error): it is deleted again."""
    return policy is ConcurrencyPolicy.REPLACE

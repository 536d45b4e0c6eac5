"""concurrencyPolicy's one rule (core/concurrency.py), as a table; test_reconcile.py checks it
applied to each kind of run."""

from __future__ import annotations

import pytest

from tests.unit.conftest import at
from trigger_operator.core.concurrency import (
    Room,
    condition_run_waits,
    deletes_unfinished_strays,
    moments_to_start,
    room,
)
from trigger_operator.model.spec import ConcurrencyPolicy as P

RUNNING = ["nightly-1", "nightly-2"]


@pytest.mark.parametrize(("policy", "running", "expected"), [
    pytest.param(P.ALLOW, RUNNING, Room(), id="allow-starts-beside"),
    pytest.param(P.FORBID, RUNNING, Room(blocker="nightly-1"), id="forbid-waits-for-the-first"),
    pytest.param(P.REPLACE, RUNNING, Room(replace=True), id="replace-replaces"),
    pytest.param(P.FORBID, [], Room(), id="forbid-with-nothing-running"),
    pytest.param(P.REPLACE, [], Room(), id="replace-with-nothing-running"),
])
def test_room_for_a_new_run(policy: P, running: list[str], expected: Room) -> None:
    assert room(policy, running) == expected


@pytest.mark.parametrize(("policy", "started", "skipped"), [
    pytest.param(P.ALLOW, 3, 0, id="allow-starts-all"),
    pytest.param(P.FORBID, 3, 0, id="forbid-starts-all-then-skips-as-they-run"),
    pytest.param(P.REPLACE, 1, 2, id="replace-starts-the-last"),
])
def test_a_catch_up_of_three_moments(policy: P, started: int, skipped: int) -> None:
    moments = [at(minutes=m) for m in (1, 2, 3)]
    start, skip = moments_to_start(policy, moments)
    assert (list(start), skip) == (moments[-started:], skipped)


def test_only_allow_needs_its_own_wait_for_a_condition_run_and_only_replace_deletes_strays() -> None:
    assert [condition_run_waits(p, True) for p in P] == [True, False, False]
    assert not any(condition_run_waits(p, False) for p in P)
    assert [deletes_unfinished_strays(p) for p in P] == [False, False, True]

"""Who schedules: one replica at a time holds a Kubernetes Lease (README, "High availability"). Pure.

As client-go's leader election does, another holder's lease is judged by how long *we* have seen
it unchanged (our monotonic clock), never by its renewTime against our wall clock, so clock skew
between nodes cannot make two leaders. A lease held by nobody (released on shutdown) is free at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease's spec that decide, as read."""

    holder: str  # holderIdentity; "" when released
    renew_time: str  # renewTime as written (compared for change only)
    duration_seconds: float
    transitions: int = 0
    version: str = ""  # resourceVersion: every renewal changes it, even within one clock tick


class Step(enum.Enum):
    ACQUIRE = "acquire"  # write the lease with us as its holder (a new term)
    RENEW = "renew"  # we hold it: write a new renewTime
    WAIT = "wait"  # another holder's lease is still valid: follow


def decide(record: LeaseRecord | None, me: str, *, unchanged_for: float) -> Step:
    """What to do with the lease as read. ``unchanged_for``: seconds since we first saw this very
    record (holder and renewTime), by our monotonic clock."""
    if record is None or not record.holder:
        return Step.ACQUIRE
    if record.holder == me:
        return Step.RENEW
    return Step.ACQUIRE if unchanged_for >= record.duration_seconds else Step.WAIT


def leading(renewed_at: float | None, now: float, renew_deadline: float) -> bool:
    """Whether we may act: our last successful write of the lease began less than
    ``renew_deadline`` ago (monotonic; shorter than the lease's duration, so we stop acting before
    anyone else may start, even after this process was frozen: the monotonic clock ran on)."""
    return renewed_at is not None and now - renewed_at < renew_deadline

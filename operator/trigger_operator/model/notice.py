"""A Kubernetes Event to post on a Trigger, as the pure core decides it. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Notice:
    """Reasons are stable CamelCase words (README, "Events"); the message is for people."""

    type: str  # Normal | Warning
    reason: str
    message: str
    routine: bool = False
    """A scheduled run created, or succeeding after a success: what status and metrics already say.
    Posted only when the operator is told to (``TRIGGER_OPERATOR_SCHEDULER_ROUTINE_EVENTS``): at
    thousands of runs a minute they would be most of its API calls and of etcd's Events."""

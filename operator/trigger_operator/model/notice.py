"""A Kubernetes Event to post on a Trigger, as the pure core decides it. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Notice:
    """Reasons are stable CamelCase words (README, "Events"); the message is for people."""

    type: str  # Normal | Warning
    reason: str
    message: str

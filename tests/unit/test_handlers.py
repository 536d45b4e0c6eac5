"""The kopf registrations: only watch-event handlers (plus start-up and clean-up), which is what
makes the operator's no-copy essence storage safe and its writes status-only (README, GitOps)."""

from __future__ import annotations

import re
from pathlib import Path

import kopf

import trigger_operator.handlers as handlers

SOURCE = Path(handlers.__file__).read_text()


def test_only_event_startup_and_cleanup_handlers_are_registered() -> None:
    kinds = set(re.findall(r"@kopf\.on\.(\w+)\(", SOURCE))
    assert kinds == {"event", "startup", "cleanup"}


def test_the_essence_storage_copies_nothing() -> None:
    storage = handlers._WatchOnlyEssence(prefix="trigger-operator.io", key="last-handled-configuration", v1=False)
    body = kopf.Body({"metadata": {"name": "t"}, "spec": {"big": ["x"] * 1000}})
    assert storage.build(body=body) == {}

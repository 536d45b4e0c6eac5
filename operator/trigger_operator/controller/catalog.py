"""The actions ConfigMap as the controller holds it: its action templates and default condition
sources (jobs/catalog.py parses and merges them, keeping the last good ones). It is read every
``poll_seconds``, not watched, because it lives in the operator's namespace, which a ``-n``
operator does not watch; a change brings every Trigger back (``changed``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from trigger_operator.config import ActionSettings
from trigger_operator.jobs.catalog import merge_catalog, merge_sources
from trigger_operator.kube.interface import ClusterApi
from trigger_operator.model.spec import ConditionType

log = logging.getLogger("trigger_operator.controller")


class Catalog:
    def __init__(self, api: ClusterApi, settings: ActionSettings, changed: Callable[[], None]) -> None:
        self.api = api
        self.settings = settings
        self.changed = changed
        self.templates: dict[str, dict[str, Any]] = {}
        # The catalog's default condition sources (``<action type>.sources`` keys, jobs/catalog.py).
        self.default_sources: dict[str, dict[ConditionType, dict[str, Any]]] = {}
        self.read = False  # read once at least (readiness waits for it)
        self._version: str | None = None

    def on_catalog(self, data: Mapping[str, str] | None) -> None:
        self.templates, problems = merge_catalog(self.templates, data)
        self.default_sources, source_problems = merge_sources(self.default_sources, data)
        problems += source_problems
        where = f"{self.settings.namespace}/{self.settings.config_map}"
        for problem in problems:
            log.warning("actions ConfigMap %s: %s", where, problem)
        log.info("action templates: %s", ", ".join(sorted(self.templates)) or "none")
        if self.default_sources:
            log.info("default condition sources: %s", ", ".join(
                f"{action} ({', '.join(sorted(by_type))})" for action, by_type in sorted(self.default_sources.items())))
        self.changed()

    async def load(self) -> None:
        """Reads the ConfigMap; feeds `on_catalog` when it changed (or was never read)."""
        config_map = await self.api.get_config_map(self.settings.namespace, self.settings.config_map)
        version = None if config_map is None else str(config_map["metadata"].get("resourceVersion"))
        if version != self._version or not self.read:
            self._version, self.read = version, True
            self.on_catalog((config_map or {}).get("data"))

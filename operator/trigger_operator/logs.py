"""The operator's log lines: readable text by default, one JSON object per line when asked
(``trigger-operator run --log-format json`` or ``TRIGGER_OPERATOR_LOG_FORMAT=json``).

A line about a Trigger or a Job carries them as fields (``extra=about(...)``), so JSON
lines can be filtered by ``namespace``, ``trigger`` and ``job`` without parsing messages; kopf's
own per-object lines carry theirs too. Nothing here ever receives a token or a Secret value: the
operator logs names, never request headers or the data it reads.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

FIELDS = ("namespace", "trigger", "job")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# httpx and httpcore log a source's status line and headers, which its server chooses (issue 17).
QUIET = ("kopf.objects", "kopf.activities.startup", "kopf._core.reactor.running", "aiohttp", "httpx", "httpcore")


def about(namespace: str, trigger: str | None = None, job: str | None = None) -> dict[str, dict[str, str]]:
    """The ``extra=`` of a log call about a Trigger or a Job."""
    fields = {"namespace": namespace, "trigger": trigger, "job": job}
    return {"fields": {k: v for k, v in fields.items() if v}}


def fields_of(record: logging.LogRecord) -> dict[str, str]:
    """The Trigger, namespace and Job a record is about: ours (`about`), or kopf's object reference."""
    fields: dict[str, str] = dict(getattr(record, "fields", None) or {})
    ref = getattr(record, "k8s_ref", None)  # kopf's per-object loggers
    if isinstance(ref, dict) and not fields:
        if ref.get("namespace"):
            fields["namespace"] = str(ref["namespace"])
        key = "job" if ref.get("kind") == "Job" else "trigger"
        if ref.get("name"):
            fields[key] = str(ref["name"])
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
            **fields_of(record)}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(log_format: str, *, verbose: bool = False) -> None:
    """One handler on the root logger, for our lines, kopf's and the HTTP server's alike."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log format {log_format!r}: expected text or json")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)

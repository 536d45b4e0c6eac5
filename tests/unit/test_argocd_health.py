"""The Argo CD health check shipped with the chart, run by a real Lua 5.1 interpreter (Argo CD's
dialect, through lupa) against the statuses the operator writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest

SCRIPT = (Path(__file__).resolve().parents[2] / "helm" / "trigger-operator" / "files" / "argocd-health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    assert runtime.eval("_VERSION") == "Lua 5.1"
    check = runtime.eval(f"function(obj) {SCRIPT} end")
    result = check(_table(runtime, obj))
    return str(result["status"]), str(result["message"])


def _table(runtime: Any, value: Any) -> Any:
    """A Python value as Argo CD hands it to the script: Lua tables with 1-based lists."""
    if isinstance(value, dict):
        return runtime.table_from({k: _table(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_table(runtime, v) for v in value])
    return value


def trigger(status: dict[str, Any] | None, generation: int = 2) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "daily", "generation": generation}, "spec": {}}
    if status is not None:
        body["status"] = status
    return body


def ready(state: str, reason: str, message: str = "") -> list[dict[str, Any]]:
    return [{"type": "Ready", "status": state, "reason": reason, "message": message}]


@pytest.mark.parametrize(("status", "expected", "says"), [
    pytest.param(None, "Progressing", "Waiting for the operator", id="not-seen-yet"),
    pytest.param({"phase": "Active", "observedGeneration": 1, "conditions": ready("True", "Scheduled")},
                 "Progressing", "latest spec", id="generation-not-observed"),
    pytest.param({"phase": "Active", "observedGeneration": 2, "conditions": ready("True", "Scheduled", "Scheduled")},
                 "Healthy", "Scheduled", id="scheduled"),
    pytest.param({"phase": "Paused", "observedGeneration": 2}, "Suspended", "paused", id="paused"),
    pytest.param({"phase": "Disabled", "observedGeneration": 2}, "Suspended", "disabled", id="disabled"),
    pytest.param({"phase": "Invalid", "observedGeneration": 2,
                  "conditions": ready("False", "InvalidSpec", "spec.scheduleConfig.cronExpression: minute field")},
                 "Degraded", "spec.scheduleConfig.cronExpression", id="invalid"),
    pytest.param({"phase": "Failed", "observedGeneration": 2, "message": "stopped after 5 consecutive failures",
                  "conditions": ready("False", "FailureLimitReached", "stopped after 5 consecutive failures")},
                 "Degraded", "5 consecutive failures", id="failure-limit"),
    pytest.param({"phase": "Active", "observedGeneration": 2,
                  "conditions": ready("False", "ActionTemplateMissing", "no Job template")},
                 "Degraded", "ActionTemplateMissing: no Job template", id="template-missing"),
    pytest.param({"phase": "Active", "observedGeneration": 2, "lastExecutionStatus": "Failed",
                  "lastExecutionError": "exit code 3", "conditions": ready("True", "Scheduled")},
                 "Degraded", "The last run failed: exit code 3", id="last-run-failed"),
    pytest.param({"phase": "Active", "observedGeneration": 2, "lastExecutionStatus": "Succeeded",
                  "conditions": ready("True", "Scheduled", "3 of 10 documents_added events counted")},
                 "Healthy", "3 of 10", id="event-trigger-counting"),
    # Finished is done, not degraded: Ready is False (reason Finished), and the last run may have failed.
    pytest.param({"phase": "Finished", "observedGeneration": 2, "lastExecutionStatus": "Failed",
                  "conditions": ready("False", "Finished", "the run budget of 30 is spent (30 scheduled runs)")},
                 "Healthy", "Finished: the run budget of 30 is spent", id="finished-budget"),
    pytest.param({"phase": "Finished", "observedGeneration": 2,
                  "conditions": ready("False", "Finished", "the active window ended at 2027-01-01T00:00:00Z")},
                 "Healthy", "Finished: the active window ended at 2027-01-01T00:00:00Z", id="finished-window"),
])
def test_the_health_of_a_trigger(status: dict[str, Any] | None, expected: str, says: str) -> None:
    state, message = health(trigger(status))
    assert state == expected and says in message


def test_dead_lettered_notifications_keep_a_trigger_healthy_and_are_named_in_the_message() -> None:
    letters = [{"id": f"u.fired.t-{n}", "type": "trigger.fired", "sink": "https://hooks.example.com/t",
                "reason": "the sink answered HTTP 410", "at": "2026-03-02T10:00:00Z"} for n in range(3)]
    letters[-1] = {**letters[-1], "type": "trigger.execution.failed"}
    status = {"phase": "Active", "observedGeneration": 2, "conditions": ready("True", "Scheduled", "Scheduled"),
              "notifications": {"pending": [], "deadLetters": letters}}
    state, message = health(trigger(status))
    assert state == "Healthy"
    assert message == ("Scheduled; 3 notification(s) dead-lettered, the last: trigger.execution.failed to "
                       "https://hooks.example.com/t (the sink answered HTTP 410)")
    assert health(trigger({**status, "notifications": {"pending": [], "deadLetters": []}})) == ("Healthy", "Scheduled")

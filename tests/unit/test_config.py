"""Operator settings from TRIGGER_OPERATOR_* variables."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from trigger_operator.config import (
    ActionSettings,
    ConfigurationError,
    KubeSettings,
    OperatorConfig,
    SchedulerSettings,
)


def refusal(env: Mapping[str, str]) -> str | None:
    """The ConfigurationError message for these variables, or None when they are accepted."""
    try:
        OperatorConfig.from_env(env)
    except ConfigurationError as error:
        return str(error)
    return None


def test_defaults_are_pinned() -> None:
    assert OperatorConfig.from_env({}) == OperatorConfig(
        scheduler=SchedulerSettings(workers=64, retry_seconds=5.0),
        actions=ActionSettings(namespace="trigger-operator-system", config_map="trigger-operator-actions"),
        kube=KubeSettings(threads=64, component="trigger-operator"),
    )


@pytest.mark.parametrize(("variable", "value", "topic", "field", "expected"), [
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_WORKERS", "24", "scheduler", "workers", 24, id="an-int"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_WORKERS", " 3 ", "scheduler", "workers", 3,
                 id="an-int-with-spaces"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_RETRY_SECONDS", "0.5", "scheduler", "retry_seconds", 0.5,
                 id="a-float"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_RETRY_SECONDS", "2", "scheduler", "retry_seconds", 2.0,
                 id="a-whole-float"),
    pytest.param("TRIGGER_OPERATOR_ACTIONS_NAMESPACE", "platform", "actions", "namespace", "platform",
                 id="a-string"),
    pytest.param("TRIGGER_OPERATOR_ACTIONS_CONFIG_MAP", "my-actions", "actions", "config_map", "my-actions",
                 id="a-field-name-with-an-underscore"),
    pytest.param("TRIGGER_OPERATOR_KUBE_THREADS", "4", "kube", "threads", 4, id="another-topic"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_ROUTINE_EVENTS", "true", "scheduler", "routine_events", True,
                 id="a-boolean"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_ROUTINE_EVENTS", " False", "scheduler", "routine_events", False,
                 id="a-false-boolean-is-false"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_CREATE_FIRST", "false", "scheduler", "create_first", False,
                 id="the-create-first-kill-switch"),
])
def test_a_variable_overrides_its_field(variable: str, value: str, topic: str, field: str,
                                        expected: object) -> None:
    config = OperatorConfig.from_env({variable: value})
    assert getattr(getattr(config, topic), field) == expected
    assert type(getattr(getattr(config, topic), field)) is type(expected)


def test_only_the_variables_set_change() -> None:
    config = OperatorConfig.from_env({"TRIGGER_OPERATOR_KUBE_THREADS": "4", "UNRELATED": "x",
                                      "TRIGGER_OPERATOR_SCHEDULER_NONSENSE": "x"})
    assert config == OperatorConfig(kube=KubeSettings(threads=4))


def test_from_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGER_OPERATOR_SCHEDULER_WORKERS", "2")
    assert OperatorConfig.from_env().scheduler.workers == 2


@pytest.mark.parametrize(("variable", "value", "message"), [
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_WORKERS", "many",
                 "TRIGGER_OPERATOR_SCHEDULER_WORKERS='many': expected", id="not-a-number"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_WORKERS", "2.5",
                 "TRIGGER_OPERATOR_SCHEDULER_WORKERS='2.5': expected", id="a-fraction-for-an-int"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_WORKERS", "", "TRIGGER_OPERATOR_SCHEDULER_WORKERS=''",
                 id="empty"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_WORKERS", "0",
                 "TRIGGER_OPERATOR_SCHEDULER_WORKERS='0': must be positive", id="zero-workers"),
    pytest.param("TRIGGER_OPERATOR_KUBE_THREADS", "-4",
                 "TRIGGER_OPERATOR_KUBE_THREADS='-4': must be positive", id="negative-threads"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_RETRY_SECONDS", "soon",
                 "TRIGGER_OPERATOR_SCHEDULER_RETRY_SECONDS='soon': expected", id="not-a-float"),
    pytest.param("TRIGGER_OPERATOR_SCHEDULER_RETRY_SECONDS", "0",
                 "TRIGGER_OPERATOR_SCHEDULER_RETRY_SECONDS='0': must be positive", id="zero-retry-delay"),
])
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str, message: str) -> None:
    refused = refusal({variable: value})
    assert refused is not None
    assert refused.startswith(message)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_retry_delay_that_is_not_a_finite_number_is_refused(value: str) -> None:
    refused = refusal({"TRIGGER_OPERATOR_SCHEDULER_RETRY_SECONDS": value})
    assert refused is not None
    assert refused.startswith(f"TRIGGER_OPERATOR_SCHEDULER_RETRY_SECONDS={value!r}")


def test_a_boolean_that_is_no_boolean_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="TRIGGER_OPERATOR_SCHEDULER_ROUTINE_EVENTS='often'"):
        OperatorConfig.from_env({"TRIGGER_OPERATOR_SCHEDULER_ROUTINE_EVENTS": "often"})

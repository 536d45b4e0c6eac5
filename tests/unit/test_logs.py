"""The log formats: JSON lines carry the Trigger, namespace and Job as fields; text stays readable."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from trigger_operator.logs import JsonFormatter, about, configure, fields_of


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("trigger_operator.controller", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_a_line_about_a_job_names_it_as_fields() -> None:
    line = json.loads(JsonFormatter().format(record("created Job ns/t-1", **about("ns", "t", "t-1"))))
    assert line["message"] == "created Job ns/t-1" and line["level"] == "info"
    assert (line["namespace"], line["trigger"], line["job"]) == ("ns", "t", "t-1")
    assert line["time"].endswith("+00:00")


def test_about_leaves_out_what_it_is_not_about() -> None:
    assert about("ns") == {"fields": {"namespace": "ns"}}
    assert "trigger" not in json.loads(JsonFormatter().format(record("listed", **about("ns"))))


@pytest.mark.parametrize(("ref", "expected"), [
    ({"kind": "Trigger", "namespace": "ns", "name": "t"}, {"namespace": "ns", "trigger": "t"}),
    ({"kind": "Job", "namespace": "ns", "name": "t-1"}, {"namespace": "ns", "job": "t-1"}),
    ("not a mapping", {}),
])
def test_kopf_object_lines_carry_their_object(ref: object, expected: dict[str, str]) -> None:
    assert fields_of(record("handled", k8s_ref=ref)) == expected


def test_an_exception_is_kept_in_the_json_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        made = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(made))
    assert "RuntimeError: boom" in line["exception"]


def test_configure_installs_one_handler_and_refuses_an_unknown_format() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure("json")
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, JsonFormatter)
        assert logging.getLogger("kopf.objects").level == logging.WARNING
        with pytest.raises(ValueError, match="expected text or json"):
            configure("xml")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)

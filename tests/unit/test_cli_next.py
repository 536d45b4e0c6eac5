"""``trigger-operator next``: the next moments of a schedule, printed one ISO-8601 time per line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.conftest import at
from trigger_operator.cli import main
from trigger_operator.timemath.calendar import jitter_offset

AFTER = at().isoformat()  # 2026-03-02T10:00:00+00:00


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_cron_in_berlin_prints_each_moment_with_its_offset_across_spring_forward(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["next", "--cron", "0 2 * * *", "--timezone", "Europe/Berlin",
                 "--after", "2026-03-28T00:00:00Z", "--count", "5"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert lines(out) == [
        "2026-03-28T02:00:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00 does not exist that day: the first instant after the gap
        "2026-03-30T02:00:00+02:00",
        "2026-03-31T02:00:00+02:00",
        "2026-04-01T02:00:00+02:00",
    ]


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["--interval-seconds", "90", "--count", "3"],
                 ["2026-03-02T10:01:30+00:00", "2026-03-02T10:03:00+00:00", "2026-03-02T10:04:30+00:00"],
                 id="interval-anchored-at-after"),
    pytest.param(["--interval-seconds", "90", "--count", "2", "--timezone", "Asia/Kolkata"],
                 ["2026-03-02T15:31:30+05:30", "2026-03-02T15:33:00+05:30"], id="interval-shown-in-a-zone"),
    pytest.param(["--cron", "@hourly", "--count", "2"],
                 ["2026-03-02T11:00:00+00:00", "2026-03-02T12:00:00+00:00"], id="cron-in-utc-by-default"),
    pytest.param(["--cron", "@hourly"], [f"2026-03-02T{h}:00:00+00:00" for h in range(11, 16)],
                 id="five-moments-by-default"),
    pytest.param(["--cron", "@hourly", "--count", "0"], [], id="count-zero-prints-nothing"),
])
def test_next_prints_the_requested_moments(args: list[str], expected: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["next", "--after", AFTER, *args])
    out, err = capsys.readouterr()
    assert (code, lines(out), err) == (0, expected, "")


def test_after_with_an_offset_is_the_same_instant_in_utc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["next", "--cron", "@hourly", "--count", "1", "--after", "2026-03-02T11:00:00+01:00"]) == 0
    assert lines(capsys.readouterr().out) == ["2026-03-02T11:00:00+00:00"]


@pytest.mark.parametrize(("args", "code", "message"), [
    pytest.param(["--cron", "61 * * * *"], 2, "error: minute field: 61", id="invalid-cron"),
    pytest.param(["--cron", "@every 1m"], 2, "error: '@every' is not supported", id="every-macro"),
    pytest.param(["--cron", "0 2 * * *", "--timezone", "Mars/Base"], 2,
                 "error: unknown time zone 'Mars/Base'", id="unknown-time-zone"),
    pytest.param(["--interval-seconds", "60", "--timezone", "Mars/Base"], 2,
                 "error: unknown time zone 'Mars/Base'", id="interval-in-an-unknown-time-zone"),
    pytest.param(["--interval-seconds", "0"], 2, "error: --interval-seconds must be a positive number",
                 id="interval-of-zero"),
    pytest.param(["--cron", "0 0 30 2 *"], 1, "error: the schedule '0 0 30 2 *' never fires",
                 id="a-schedule-that-never-fires"),
])
def test_a_schedule_that_cannot_be_used_exits_non_zero_with_a_message(
        args: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["next", "--after", AFTER, *args]) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(message)


def test_an_unreadable_after_exits_non_zero_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["next", "--cron", "@hourly", "--after", "next tuesday"]) == 2
    assert capsys.readouterr().err == "error: --after 'next tuesday' is not an ISO-8601 time\n"


@pytest.mark.parametrize("args", [
    pytest.param([], id="neither-cron-nor-interval"),
    pytest.param(["--cron", "@hourly", "--interval-seconds", "60"], id="both-cron-and-interval"),
])
def test_exactly_one_kind_of_schedule_is_required(args: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["next", "--after", AFTER, *args])
    assert exit_.value.code == 2
    assert "--cron" in capsys.readouterr().err


@pytest.fixture
def machine_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is America/New_York for the test."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("machine_in_new_york")
def test_an_after_without_an_offset_is_read_as_utc(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["next", "--cron", "@hourly", "--count", "1", "--after", "2026-03-02T10:00:00"]) == 0
    assert lines(capsys.readouterr().out) == ["2026-03-02T11:00:00+00:00"]


@pytest.mark.parametrize(("args", "code", "out", "said"), [
    # 2096-02-29, then no 29th of February until 2104: further than cron.SEARCH_YEARS from the last
    pytest.param(["--cron", "0 0 29 2 *", "--after", "2092-03-01T00:00:00Z", "--count", "3"], 0,
                 ["2096-02-29T00:00:00+00:00"],
                 "note: the schedule '0 0 29 2 *' has 1 of the 3 moments asked for: no moment within five years "
                 "after the last\n", id="fewer-than-asked-is-said-not-failed"),
    pytest.param(["--cron", "0 0 30 2 *", "--after", AFTER], 1, [],
                 "error: the schedule '0 0 30 2 *' never fires (no moment within five years)\n", id="none-fails"),
])
def test_both_previews_follow_one_rule(args: list[str], code: int, out: list[str], said: str,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``trigger-operator next`` and ``kubectl trigger next --cron`` answer alike: the moments
    found, a note saying how many when fewer than asked, a failure only when there are none."""
    from trigger_operator.plugin import main as plugin

    monkeypatch.delenv(plugin.URL_ENV, raising=False)
    operator_code = main(["next", *args])
    operator_said = capsys.readouterr()
    plugin_code = plugin.main(["next", *args])
    plugin_said = capsys.readouterr()
    expected = (code, "".join(f"{line}\n" for line in out), said)
    assert (operator_code, *operator_said) == (plugin_code, *plugin_said) == expected


CALENDAR_TRIGGER = """
apiVersion: trigger-operator.io/v1alpha1
kind: Trigger
metadata: {name: office-hours, namespace: team-a}
spec:
  actionType: cluster
  triggerType: cron
  scheduleConfig:
    cronExpression: "0 9 * * 1-5"
    cronExpressions: ["0 12 * * 6"]
    timezone: Europe/Berlin
    excludeCron: ["* * * * 3"]
    excludeDates: ["2026-04-03"]
    endAt: "2026-04-08T00:00:00+02:00"
    jitterSeconds: 600
"""


def test_a_trigger_file_prints_its_whole_calendar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 22: both lines, without Wednesdays, Good Friday or anything from 8 April, each moment
    shifted by this Trigger's own jitter (the operator's: from namespace/name)."""
    manifest = tmp_path / "trigger.yaml"
    manifest.write_text(CALENDAR_TRIGGER)
    offset = int(jitter_offset("team-a", "office-hours", 600).total_seconds())
    assert 0 < offset < 600
    code = main(["next", "-f", str(manifest), "--after", "2026-03-31T12:00:00+02:00", "--count", "5"])
    out, err = capsys.readouterr()
    minutes, seconds = divmod(offset, 60)
    assert lines(out) == [f"2026-04-{day}T{hour}:{minutes:02d}:{seconds:02d}+02:00"
                          for day, hour in (("02", "09"), ("04", "12"), ("06", "09"), ("07", "09"))]
    assert code == 0 and err == "note: the schedule of office-hours has 4 of the 5 moments asked for: " \
                              "no moment within five years after the last\n"


def test_a_trigger_file_with_a_bad_exclusion_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "trigger.yaml"
    manifest.write_text(CALENDAR_TRIGGER.replace('["* * * * 3"]', '["* * * * 3", "* * * * 8"]'))
    assert main(["next", "-f", str(manifest), "--after", AFTER]) == 2
    assert capsys.readouterr().err.startswith("error: spec.scheduleConfig.excludeCron[1]: day-of-week field: 8")

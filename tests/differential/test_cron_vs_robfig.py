"""Differential test: our cron parser and search against robfig/cron v3 itself (the library the
Kubernetes CronJob controller uses), on thousands of random expressions, valid and invalid.

The oracle is hack/gomod/robfig (built by hack/build-binaries.sh). Times are compared in UTC, where
both implement the same field semantics; daylight saving is where we differ on purpose (see
schedule/cron.py) and is covered by the unit tests.
"""

from __future__ import annotations

import datetime as dt
import random
import subprocess
from pathlib import Path

import pytest

from trigger_operator.timemath.cron import CronError, CronSchedule

ROOT = Path(__file__).resolve().parents[2]
EXPRESSIONS = 6000
NEXT_TIMES = 5
FIELDS = [  # (low, high, names)
    (0, 59, []),
    (0, 23, []),
    (1, 31, []),
    (1, 12, ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    (0, 6, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
]
MACROS = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]


def value(rng: random.Random, low: int, high: int, names: list[str]) -> str:
    roll = rng.random()
    if names and roll < 0.25:
        name = rng.choice(names)
        return name.upper() if rng.random() < 0.3 else name
    if roll < 0.04:  # just out of range, or junk
        return rng.choice([str(high + 1), str(low - 1) if low > 0 else "60", "x", "", "+3", "007"])
    return str(rng.randint(low, high))


def part(rng: random.Random, low: int, high: int, names: list[str]) -> str:
    kind = rng.random()
    step = str(rng.choice([1, 2, 3, 5, 7, 10, 15, 0 if rng.random() < 0.05 else 4]))
    if kind < 0.25:
        return rng.choice(["*", "?"])
    if kind < 0.40:
        return f"*/{step}"
    if kind < 0.60:
        return value(rng, low, high, names)
    if kind < 0.75:
        a, b = sorted((rng.randint(low, high), rng.randint(low, high)))
        if rng.random() < 0.05:
            a, b = b + 1, a  # reversed range
        return f"{a}-{b}"
    if kind < 0.85:
        a, b = sorted((rng.randint(low, high), rng.randint(low, high)))
        return f"{a}-{b}/{step}"
    if kind < 0.93:
        return f"{value(rng, low, high, names)}/{step}"
    return rng.choice(["1-2-3", "1//2", "*-5", "-", "5-", "*/", "/5", "1,,2"])


def expression(rng: random.Random) -> str:
    if rng.random() < 0.03:
        return rng.choice(MACROS)
    fields = []
    for low, high, names in FIELDS:
        count = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        fields.append(",".join(part(rng, low, high, names) for _ in range(count)))
    roll = rng.random()
    if roll < 0.02:
        fields.pop()
    elif roll < 0.04:
        fields.append("*")
    return " ".join(fields)


def start_time(rng: random.Random) -> dt.datetime:
    base = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    return base + dt.timedelta(seconds=rng.randint(0, 90 * 365 * 86400))


@pytest.fixture(scope="module")
def oracle() -> Path:
    result = subprocess.run(["bash", str(ROOT / "hack" / "build-binaries.sh")], check=True,
                            stdout=subprocess.PIPE, text=True)
    path = Path(result.stdout.strip().splitlines()[-1]) / "cron-oracle"
    assert path.exists(), f"the robfig/cron oracle was not built: {path}"
    return path


def ours(text: str, after: dt.datetime) -> str:
    try:
        schedule = CronSchedule.parse(text, "UTC")
    except CronError:
        return "ERR"
    times: list[str] = []
    moment: dt.datetime | None = after
    for _ in range(NEXT_TIMES):
        assert moment is not None
        moment = schedule.next_after(moment)
        if moment is None:
            times.append("never")
            break
        times.append(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return " ".join(times)


def test_parse_and_next_times_agree_with_robfig_cron(oracle: Path) -> None:
    rng = random.Random(20261129)
    cases = [(expression(rng), start_time(rng)) for _ in range(EXPRESSIONS)]
    lines = "".join(f"{text}\t{after.strftime('%Y-%m-%dT%H:%M:%SZ')}\t{NEXT_TIMES}\n" for text, after in cases)
    answers = subprocess.run([str(oracle)], input=lines, capture_output=True, text=True, check=True).stdout
    theirs = [("ERR" if a.startswith("ERR") else a) for a in answers.splitlines()]
    assert len(theirs) == len(cases)
    mismatches = [(text, after.isoformat(), mine, their)
                  for (text, after), their in zip(cases, theirs, strict=True)
                  if (mine := ours(text, after)) != their]
    accepted = sum(1 for t in theirs if t != "ERR")
    # Both sides are exercised: many expressions parse, and a fair share are refused.
    assert accepted > EXPRESSIONS // 3 and EXPRESSIONS - accepted > EXPRESSIONS // 20
    assert mismatches == [], f"{len(mismatches)} of {len(cases)} differ; first ones: {mismatches[:5]}"

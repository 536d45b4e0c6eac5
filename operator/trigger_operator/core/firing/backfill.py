"""Backfill: the moments of a past range of a cron or interval Trigger's schedule, each run at most
once, at a stated parallelism, with progress in ``status.backfill``. Pure.

A backfill is a request, not desired state: the annotation `ANNOTATION_BACKFILL` holds JSON
``{"id": "<token>", "from": RFC 3339, "to": RFC 3339, "parallelism": N, "cancel": false}``, like
run-now's token (``kubectl apply`` and Argo CD leave annotations they did not set alone).

- The ``id`` names the backfill: the same id is one backfill however often it is seen (a changed
  range under the same id is ignored); a new id starts a new backfill and replaces the previous one
  if it is running (its runs going finish and are counted in the Trigger's counters, not in the new
  block). Removing the annotation, or ``"cancel": true``, cancels: no new Job; runs going finish.
- The moments are the Trigger's schedule (``time_schedule``: every cron line, the exclusions, the
  window, the jitter) in [from, to], BOTH inclusive (Temporal's backfill range is inclusive too);
  ``to`` may not be after now; at most `MAX_MOMENTS` per backfill (a larger one is refused).
- A moment runs at most once. Its Job is ``scheduled_job_name(trigger, moment)``, the live
  schedule's lock, and because Jobs are pruned by the history limits, status also says which
  moments already ran (`already_ran` is the rule): a moment is passed over when it lies in
  ``status.backfilledMoments`` (an earlier backfill dealt with it), or when the live schedule
  handled it: it lies in ``status.handledMoments`` and not in ``status.missedMoments``. The live
  schedule records what it handled where its cursor moves (core/firing/schedule.py, `with_handled`):
  each active spell, from its first moment to its cursor, so every such moment was run, skipped by
  concurrencyPolicy, or missed (and recorded so); only the missed ones are a backfill's to run (the
  point of a backfill after an outage). Moments outside every handled range (before creation, while
  Paused, Disabled, Failed or Invalid, after a spent budget, or passed over by it) never ran live and
  are run, unless a backfill ran them or their Job (or a record in status) is still there.
  ``activeSince`` alone cannot say this: it moves on every pause, resume, edit and fix.
- Parallelism: at most N backfill runs (RunKind ``backfill``) active at once, whichever request
  started them. They are outside concurrencyPolicy both ways (Temporal gives a backfill its own
  overlap policy; ours is "allow, up to N"): a live run never waits for, skips for or replaces a
  backfill run, and a backfill run never waits for a live one.
- Backfill runs are counted as every run is (core/runs.py): executionCount, failedExecutionCount,
  consecutiveFailures, recentExecutions and the history limits; the block counts its own (Failed
  and Lost both as ``failed``), in the same write that counts the run (`Backfill.counted`).
- Each started run is listed in ``status.active`` in the write that advances ``cursor``, so a crash
  between that write and the create makes the Job on a later pass (core/runs.py), never a second one.
- Progress is made only while the Trigger is Active or Finished (a spent window or budget does not
  stop a backfill asked for by hand) and its template is in the catalog; otherwise the backfill
  waits, Running, and says why. Backfill runs are not scheduled runs: they spend no ``maxRuns``.
- Ranges kept in status are bounded (`RANGES_KEPT`), always erring towards "never twice": past the
  bound, the two closest backfilled or handled ranges merge (the moments between count as run) and
  the oldest missed range is dropped (its moments count as the live schedule's).
- The annotation is anyone's who may patch the Trigger: it is read defensively (at most
  `MAX_REQUEST_BYTES`, times within `EARLIEST`..`LATEST`), and a request that still fails is refused
  by the caller's guard (core/reconcile.py, `refuse_failed`): a backfill never stops the live schedule.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from trigger_operator.api import ANNOTATION_BACKFILL
from trigger_operator.core.plan import Draft, Observed
from trigger_operator.core.runs import EPSILON, start_run
from trigger_operator.jobs.render import scheduled_job_name
from trigger_operator.model.spec import TriggerSpec, TriggerType, time_schedule
from trigger_operator.model.status import (
    ActiveRun,
    Backfill,
    BackfillState,
    MomentRange,
    RunKind,
    TriggerStatus,
    format_time,
)
from trigger_operator.timemath import Schedule
from trigger_operator.timemath.due import Due, latest_at_or_before

MAX_MOMENTS = 10_000  # moments in one backfill; a larger range is refused (split it)
MAX_PARALLELISM = 20
RANGES_KEPT = 32  # merged ranges kept in status.backfilledMoments and status.missedMoments each
ID_MAX_CHARS = 253
MAX_REQUEST_BYTES = 4096  # the annotation's size, checked before it is parsed (JSON nesting, huge numbers)
# The times a request may name: far inside the calendar, so no offset or step back leaves it.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
FIELD = f'metadata.annotations["{ANNOTATION_BACKFILL}"]'
_KEYS = frozenset({"id", "from", "to", "parallelism", "cancel"})


@dataclass(frozen=True)
class Request:
    id: str
    start: dt.datetime
    end: dt.datetime
    parallelism: int
    cancel: bool


class Refusal(ValueError):
    """A request that cannot run: the message names the field and the reason."""

    def __init__(self, message: str, request_id: str | None) -> None:
        super().__init__(message)
        self.request_id = request_id


def parse_request(text: str) -> Request:
    """The annotation's request, or `Refusal` naming the field (``...backfill"].from``) and why."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_REQUEST_BYTES:
        raise Refusal(f"{FIELD}: longer than {MAX_REQUEST_BYTES} bytes", None)
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: nested too deep
        raise Refusal(f"{FIELD}: not JSON ({error.__class__.__name__})", None) from None
    if not isinstance(raw, dict):
        raise Refusal(f"{FIELD}: must be a JSON object", None)
    request_id = raw.get("id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > ID_MAX_CHARS:
        raise Refusal(f"{FIELD}.id: required, a string of 1 to {ID_MAX_CHARS} characters", None)
    for key in sorted(set(raw) - _KEYS):
        raise Refusal(f"{FIELD}.{key}: unknown key (known: {', '.join(sorted(_KEYS))})", request_id)
    cancel = raw.get("cancel", False)
    if not isinstance(cancel, bool):
        raise Refusal(f"{FIELD}.cancel: must be true or false", request_id)
    times: list[dt.datetime] = []
    for key in ("from", "to"):
        value = raw.get(key)
        parsed = _rfc3339(value)
        if parsed is None:
            raise Refusal(f"{FIELD}.{key}: required, an RFC 3339 time with an offset "
                          f"(e.g. 2026-05-01T00:00:00Z); got {str(value)[:40]!r}", request_id)
        if not in_range(parsed):
            raise Refusal(f"{FIELD}.{key}: {RANGE_RULE}", request_id)
        times.append(parsed)
    parallelism = raw.get("parallelism", 1)
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or not 1 <= parallelism <= MAX_PARALLELISM:
        raise Refusal(f"{FIELD}.parallelism: must be an integer from 1 to {MAX_PARALLELISM}", request_id)
    if times[0] > times[1]:
        raise Refusal(f"{FIELD}.to: must not be before from", request_id)
    return Request(request_id, times[0], times[1], parallelism, cancel)


RANGE_RULE = f"must lie from {format_time(EARLIEST)} to before {format_time(LATEST)}"


def in_range(t: dt.datetime) -> bool:
    """Whether a request may name ``t`` (an aware time, any offset): from `EARLIEST` to before
    `LATEST`. The year is looked at first: converting a time near year 1 or 9999 may overflow."""
    return EARLIEST.year <= t.year < LATEST.year and EARLIEST <= t < LATEST


def _rfc3339(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or "T" not in value.upper():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            return None
        # Out of range is said by the caller (near year 1 or 9999, astimezone may overflow).
        return parsed.astimezone(dt.UTC) if in_range(parsed) else parsed
    except (ValueError, OverflowError):
        return None


def request_annotation(request_id: str, start: dt.datetime, end: dt.datetime, parallelism: int = 1,
                       *, cancel: bool = False) -> str:
    """The annotation's value for a request: what the plugin and the REST API write."""
    body: dict[str, Any] = {"id": request_id, "from": format_time(start), "to": format_time(end),
                            "parallelism": parallelism}
    if cancel:
        body["cancel"] = True
    return json.dumps(body, separators=(",", ":"))


# --- which moments ------------------------------------------------------------------------------

def backfill_schedule(o: Observed, spec: TriggerSpec, start: dt.datetime) -> Schedule:
    """The Trigger's schedule as the live schedule has it; an interval lattice is extended back from
    its anchor (the last moment, or activeSince) to before ``start``, so the past moments are the
    lattice's own."""
    status = o.trigger.status
    anchor = status.last_schedule_time or status.active_since or o.trigger.created_at
    first_run = status.last_schedule_time is None
    if spec.trigger_type is TriggerType.INTERVAL and spec.schedule_config.interval_seconds:
        period = dt.timedelta(seconds=spec.schedule_config.interval_seconds)
        steps = max(0, -((start - anchor) // period)) + 1
        anchor, first_run = anchor - steps * period, False
    schedule = time_schedule(spec, origin=anchor, first_run=first_run,
                             trigger=(o.trigger.namespace, o.trigger.name))
    assert schedule is not None
    return schedule


def count_moments(schedule: Schedule, start: dt.datetime, end: dt.datetime, limit: int) -> int:
    """How many moments lie in [start, end], counting at most ``limit + 1``."""
    n, m = 0, schedule.next_after(start - EPSILON)
    while m is not None and m <= end and n <= limit:
        n, m = n + 1, schedule.next_after(m)
    return n


def within(moment: dt.datetime, ranges: Sequence[MomentRange]) -> bool:
    return any(a <= moment <= b for a, b in ranges)


def already_ran(status: TriggerStatus, moment: dt.datetime) -> str | None:
    """Why a backfill passes over ``moment`` (see the module's rule), or None: it is to run."""
    if within(moment, status.backfilled_moments):
        return "an earlier backfill dealt with it"
    if within(moment, status.handled_moments) and not within(moment, status.missed_moments):
        return "the live schedule handled it"
    return None


def merged(ranges: Sequence[MomentRange], new: MomentRange, *, keep: int = RANGES_KEPT,
           overflow_merges: bool) -> tuple[MomentRange, ...]:
    """``ranges`` with ``new``, overlapping ones merged, oldest first, at most ``keep``: past it the
    two closest merge (``overflow_merges``) or the oldest goes."""
    out: list[MomentRange] = []
    for a, b in sorted([*ranges, new]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    while len(out) > keep:
        if not overflow_merges:
            out.pop(0)
            continue
        i = min(range(len(out) - 1), key=lambda k: out[k + 1][0] - out[k][1])
        out[i:i + 2] = [(out[i][0], out[i + 1][1])]
    return tuple(out)


def with_missed(status: TriggerStatus, schedule: Schedule, look_from: dt.datetime, found: Due) -> TriggerStatus:
    """Records the moments ``found`` (timemath/due.py) passed over as missed: they lie after
    ``look_from`` and before the first moment run (or up to the cursor, when none runs)."""
    until = found.run[0] - EPSILON if found.run else found.cursor
    first = schedule.next_after(look_from)
    last = latest_at_or_before(schedule, until, look_from) if until is not None else None
    if first is None or last is None or last < first:
        return status
    return replace(status, missed_moments=merged(status.missed_moments, (first, last), overflow_merges=False))


def with_handled(status: TriggerStatus, schedule: Schedule, *, since: dt.datetime, look_from: dt.datetime,
                 until: dt.datetime) -> TriggerStatus:
    """Records that the live schedule, its cursor now moving to ``until`` (the last moment it ran,
    skipped or missed, not one it passed over for the budget), handled the active spell's moments
    up to there. Called with ``status`` as it was before the cursor moved: a cursor already in this
    spell (at or after ``since``, activeSince) chains on, its moments recorded by earlier passes; a
    new spell starts at its first moment after ``look_from``. A cursor of this spell outside every
    range is a status from before ``handledMoments``: its spell counts from activeSince, the rule
    it had then. Past `RANGES_KEPT` the closest ranges merge: never twice."""
    cursor = status.last_schedule_time
    if cursor is not None and cursor >= since:
        start: dt.datetime | None = cursor if within(cursor, status.handled_moments) else since
    else:
        start = schedule.next_after(look_from)
    if start is None or until < start:
        return status
    return replace(status, handled_moments=merged(status.handled_moments, (start, until), overflow_merges=True))


# --- one pass -----------------------------------------------------------------------------------

def run_backfill(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any] | None, *,
                 waits: str | None) -> None:
    """Takes in the request (a new one, a cancel) and starts the moments that fit under the
    parallelism. ``template`` None or ``waits`` (why the Trigger runs nothing now, e.g. "the
    Trigger is Paused"): nothing starts; the backfill waits, Running."""
    _take_request(o, d, spec)
    block = d.status.backfill
    if block is None or block.state is not BackfillState.RUNNING:
        return
    if waits is None and template is None:
        waits = "the Trigger's action template is missing from the catalog"
    if waits is not None:
        _set(d, replace(block, message=f"waiting: {waits}"))
        return
    assert template is not None and block.start is not None and block.end is not None
    schedule = backfill_schedule(o, spec, block.start)
    slots = block.parallelism - sum(r.kind is RunKind.BACKFILL for r in d.status.active)
    cursor, started, skipped = block.cursor, 0, 0
    moment = schedule.next_after(cursor if cursor is not None else block.start - EPSILON)
    while moment is not None and moment <= block.end:
        name = scheduled_job_name(o.trigger.name, moment)
        job = o.jobs.get(name)
        ran = (already_ran(d.status, moment)
               or ("its run is listed" if any(r.name == name for r in d.status.active)
                   or any(e.name == name for e in d.status.recent_executions) else None)
               or ("its Job exists" if job is not None and job.exists and o.ours(job) else None))
        if ran is None:
            if slots <= 0:
                break
            start_run(o, d, spec, template, ActiveRun(name=name, kind=RunKind.BACKFILL, scheduled_time=moment,
                                                      fired_at=o.now))
            slots, started = slots - 1, started + 1
        else:
            skipped += 1
        cursor = moment
        moment = schedule.next_after(moment)
    done = moment is None or moment > block.end
    block = replace(d.status.backfill or block, cursor=cursor, started=block.started + started,
                    skipped=block.skipped + skipped)
    if cursor is not None and block.start is not None:  # every moment in [from, cursor] has been dealt with
        d.status = replace(d.status, backfilled_moments=merged(d.status.backfilled_moments,
                                                               (block.start, cursor), overflow_merges=True))
    going = sum(block.owns(r) for r in d.status.active)
    if done and not going:
        block = replace(block, state=BackfillState.COMPLETE, message=_summary(block))
        d.notice("Normal", "BackfillComplete", f"backfill {block.id!r} complete: {_summary(block)}")
    else:
        block = replace(block, message=f"{going} running; {_summary(block)}")
    _set(d, block)


def refuse_failed(o: Observed, d: Draft, error: Exception) -> None:
    """A backfill that raised (the guard in core/reconcile.py, ``d`` put back as it was before the
    backfill's part of the pass): refused under its id, so it is not tried again at every pass, and
    said once. The error's class and text are the operator's own, never a source's answer."""
    block = d.status.backfill
    try:
        request_id: str | None = parse_request(o.trigger.annotations.get(ANNOTATION_BACKFILL) or "").id
    except Exception:
        request_id = None
    if block is not None and block.id == request_id and block.state is BackfillState.REFUSED:
        return
    message = f"{FIELD}: this backfill cannot run ({error.__class__.__name__}: {str(error)[:200]})"
    d.notice("Warning", "BackfillRefused", message)
    if block is not None and block.id == request_id:  # keep its progress
        _set(d, replace(block, state=BackfillState.REFUSED, message=message))
    else:
        _set(d, Backfill(id=request_id, state=BackfillState.REFUSED, message=message))


def _summary(block: Backfill) -> str:
    return (f"{block.total} moment(s): {block.started} started, {block.skipped} had already run, "
            f"{block.succeeded} succeeded, {block.failed} failed")


def _set(d: Draft, block: Backfill) -> None:
    if block != d.status.backfill:
        d.status = replace(d.status, backfill=block)


def _take_request(o: Observed, d: Draft, spec: TriggerSpec) -> None:
    """The annotation against ``status.backfill``: a new id accepted (or refused), a cancel."""
    block = d.status.backfill
    running = block is not None and block.state is BackfillState.RUNNING
    text = o.trigger.annotations.get(ANNOTATION_BACKFILL)
    if not text:
        if block is not None and running:
            _set(d, replace(block, state=BackfillState.CANCELLED,
                            message=f"cancelled (the annotation was removed); {_summary(block)}"))
            d.notice("Normal", "BackfillCancelled", f"backfill {block.id!r} cancelled: the annotation was removed")
        return
    request: Request | None = None
    try:
        request = parse_request(text)
        request_id: str | None = request.id
        error = ""
    except Refusal as refusal:
        request_id, error = refusal.request_id, str(refusal)
    if block is not None and request_id is not None and block.id == request_id:
        if running and request is not None and request.cancel:
            _set(d, replace(block, state=BackfillState.CANCELLED, message=f"cancelled; {_summary(block)}"))
            d.notice("Normal", "BackfillCancelled", f"backfill {block.id!r} cancelled")
        return  # the same id is the same backfill, whatever else the annotation now says
    if block is not None and block.id is None and request_id is None and block.message == error:
        return  # the same unreadable request, seen again
    if block is not None and running:
        d.notice("Normal", "BackfillReplaced", f"backfill {block.id!r} replaced by a new request "
                 f"({request_id!r}): its runs going finish and are counted")
    if request is not None:
        try:
            accepted = _accept(o, spec, request)
        except Refusal as refusal:
            request, error = None, str(refusal)
    if request is None:
        d.notice("Warning", "BackfillRefused", error)
        _set(d, Backfill(id=request_id, state=BackfillState.REFUSED, message=error))
        return
    d.notice("Normal", "BackfillCancelled" if request.cancel else "BackfillStarted",
             f"backfill {request.id!r}: {accepted.message}")
    _set(d, accepted)


def _accept(o: Observed, spec: TriggerSpec, request: Request) -> Backfill:
    block = Backfill(id=request.id, state=BackfillState.RUNNING, start=request.start, end=request.end,
                     parallelism=request.parallelism, accepted_at=o.now)
    if request.cancel:
        return replace(block, state=BackfillState.CANCELLED, message="cancelled before it started")
    if not spec.is_time_based():
        raise Refusal(f"{FIELD}: only cron and interval Triggers have moments to backfill "
                      f"(this one is {spec.trigger_type.value})", request.id)
    if request.end > o.now:
        raise Refusal(f"{FIELD}.to: {format_time(request.end)} is after now ({format_time(o.now)}): a "
                      "backfill runs past moments only", request.id)
    total = count_moments(backfill_schedule(o, spec, request.start), request.start, request.end, MAX_MOMENTS)
    if total > MAX_MOMENTS:
        raise Refusal(f"{FIELD}: the range holds more than {MAX_MOMENTS} moments of the schedule: split it "
                      "into several backfills", request.id)
    return replace(block, total=total, message=f"{total} moment(s) from {format_time(request.start)} to "
                   f"{format_time(request.end)}, {request.parallelism} at a time")


"""The ``trigger-operator`` command: ``run`` the operator, or print the ``next`` moments of a schedule."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from trigger_operator.logs import configure as configure_logs
from trigger_operator.model.status import parse_time
from trigger_operator.timemath import Schedule, moments, shortfall
from trigger_operator.timemath.cron import CronError, CronExpression, CronSchedule, load_zone
from trigger_operator.timemath.interval import IntervalSchedule


def _next(args: argparse.Namespace) -> int:
    try:
        after = parse_time(args.after) if args.after else dt.datetime.now(dt.UTC)
    except ValueError:
        print(f"error: --after {args.after!r} is not an ISO-8601 time", file=sys.stderr)
        return 2
    assert after is not None
    schedule: Schedule
    label = repr(args.cron) if args.cron is not None else ""
    allowed: Allowed | None = None
    try:
        zone = load_zone(args.timezone)
        if args.file is not None:
            manifest = _manifest_schedule(args.file, after)
            if isinstance(manifest, str):
                print(f"error: {manifest}", file=sys.stderr)
                return 2
            schedule, zone, label, allowed = manifest
        elif args.cron is not None:
            schedule = CronSchedule(CronExpression.parse(args.cron), zone)
        elif args.interval_seconds > 0:
            schedule = IntervalSchedule(origin=after, period=dt.timedelta(seconds=args.interval_seconds))
        else:
            print("error: --interval-seconds must be a positive number of seconds", file=sys.stderr)
            return 2
    except CronError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    found = moments(schedule, after, args.count)
    if allowed is not None:  # a manifest's run budget (and its status, when it has one)
        found, limit = allowed(found)
        if limit is not None:  # said, not an error: a finished Trigger's answer is no moment
            print(f"note: {limit}", file=sys.stderr)
            for moment in found:
                print(moment.astimezone(zone).isoformat())
            return 0
    short = shortfall(found, args.count, label)
    if short is not None:
        failed, message = short
        print(f"{'error' if failed else 'note'}: {message}", file=sys.stderr)
        if failed:
            return 1
    for moment in found:
        print(moment.astimezone(zone).isoformat())
    return 0


# Of the moments found, those a manifest's run budget allows, and why some are left out (or None).
Allowed = Callable[[list[dt.datetime]], tuple[list[dt.datetime], str | None]]


def _manifest_schedule(path: str, after: dt.datetime) -> tuple[Schedule, ZoneInfo, str, Allowed] | str:
    """A Trigger manifest's whole schedule (every cron line, the exclusions, the window and its
    jitter, from its namespace and name: ``default`` when it names none), as the operator would
    run it were it created at ``after``, and its run budget (``status.scheduledRuns`` when the
    manifest has a status, else none used: core.ready.budget_allows, as the plugin); or why there
    is none."""
    import yaml

    from trigger_operator.core.ready import budget_allows
    from trigger_operator.model.spec import SpecError, calendar, parse_spec, time_schedule
    from trigger_operator.model.status import read_status

    try:
        with open(0 if path == "-" else path, encoding="utf-8") as file:
            manifest = yaml.safe_load(file)
    except (OSError, yaml.YAMLError) as error:
        return f"--file {path}: {error}"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict):
        return f"--file {path}: not a Trigger manifest (no spec)"
    meta: dict[str, Any] = manifest["metadata"] if isinstance(manifest.get("metadata"), dict) else {}
    try:
        spec = parse_spec(manifest["spec"])
        schedule = time_schedule(spec, origin=after, first_run=True,
                                 trigger=(str(meta.get("namespace") or "default"), str(meta.get("name") or "")))
    except SpecError as error:
        return f"{error.field}: {error.reason}"
    if schedule is None:
        return f"a {spec.trigger_type.value} Trigger runs on events or conditions, not at scheduled moments"
    status, _ = read_status(manifest["status"] if isinstance(manifest.get("status"), dict) else None)
    return (schedule, calendar(spec).zone, f"of {meta.get('name') or path}",
            lambda found: budget_allows(spec, status, found, after))


def _run(args: argparse.Namespace) -> int:
    import kopf

    from trigger_operator.config import ConfigurationError

    configure_logs(args.log_format, verbose=args.verbose)
    from trigger_operator.handlers import Options  # (registers the handlers)

    try:
        options = Options.from_env(args.namespace or ())
    except ConfigurationError as error:  # a setting's own words, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    collect_less()
    kopf.run(standalone=True, clusterwide=not args.namespace, namespaces=args.namespace or (),
             liveness_endpoint=args.liveness, memo=kopf.Memo(options=options))
    return 0


# Python's cyclic collector by default scans the young objects every 700 net allocations, the
# middle ones every 10 of those, and all of them every 10 more once the heap grew by a quarter:
# under a burst the operator allocates a few objects per event or Job and keeps many (its store,
# the inbox's entries), and those scans took a large share of the main thread (issue 21). What is
# loaded at start is never garbage: it is frozen out of every scan. Most objects are freed by
# reference counting the moment they are dropped; cycles wait longer now, bounded by the counts
# (errors handed to senders are kept without their tracebacks, whose frames would be such cycles).
GC_THRESHOLDS = (50_000, 20, 20)


def collect_less() -> None:
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _act(_: argparse.Namespace) -> int:
    from trigger_operator.runner import main as act

    return act()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trigger-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig or in-cluster")
    run.add_argument("-n", "--namespace", action="append", metavar="NS",
                     help="watch only this namespace (repeatable; globs allowed); default: all")
    run.add_argument("--liveness", metavar="URL",
                     help="also serve kopf's own liveness probe at URL (not needed: /healthz and /readyz are on "
                          "TRIGGER_OPERATOR_HTTP_PROBE_PORT, default 8081, and on the API port)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.add_argument("--log-format", choices=("text", "json"),
                     default=os.environ.get("TRIGGER_OPERATOR_LOG_FORMAT", "text"),
                     help="text (default) or one JSON object per line; env TRIGGER_OPERATOR_LOG_FORMAT")
    run.set_defaults(func=_run)

    nxt = commands.add_parser("next", help="print the next moments of a schedule, one ISO-8601 time per line")
    kind = nxt.add_mutually_exclusive_group(required=True)
    kind.add_argument("--cron", help="a cron expression, as in a Trigger's scheduleConfig.cronExpression")
    kind.add_argument("--interval-seconds", type=int, help="an interval, anchored at --after")
    kind.add_argument("-f", "--file", metavar="TRIGGER.yaml",
                      help="a Trigger manifest ('-': stdin): its whole schedule, every cron line, the exclusions, "
                           "the window and its jitter, as if created at --after")
    nxt.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC)")
    nxt.add_argument("--after", help="print moments strictly after this time (default: now)")
    nxt.add_argument("--count", type=int, default=5, help="how many moments (default 5)")
    nxt.set_defaults(func=_next)

    act = commands.add_parser("act", help="perform this Job's action against its HTTP endpoint (in a Trigger's Job)")
    act.set_defaults(func=_act)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

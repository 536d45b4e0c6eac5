"""kubectl trigger: the Triggers of trigger-operator, from kubectl.

  kubectl trigger list [-A] [-o json|yaml|wide|name]
  kubectl trigger describe NAME
  kubectl trigger run NAME [--no-wait] [--timeout SECONDS]
  kubectl trigger pause NAME
  kubectl trigger resume NAME                 (also a Trigger stopped at its failure limit)
  kubectl trigger history NAME [-o json|yaml]
  kubectl trigger backfill NAME --from TIME --to TIME [--parallel N]   (progress: kubectl trigger describe)
  kubectl trigger backfill NAME --cancel
  kubectl trigger next NAME [--count K]
  kubectl trigger next --cron EXPR [--timezone TZ] [--after TIME] [--count K]
  kubectl trigger send-event NAME|--all [--type T] [--collection C] [--count N] [--url URL] [--token T]
  kubectl trigger completion bash|zsh

Every command takes -n/--namespace (default: the kubeconfig context's namespace, else "default"),
--context and --kubeconfig, after the command's name (kubectl refuses flags before a plugin's name).

Exit codes:
  0  ok
  1  the run failed, or the operation did (the message says why)
  2  usage error
  3  not found: error: trigger "x" not found in namespace "y"
  4  forbidden: no permission (the message names the verb and the resource), or credentials refused
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import kubernetes
import yaml

from trigger_operator.api import ANNOTATION_BACKFILL, ANNOTATION_RESUME, ANNOTATION_RUN_NOW
from trigger_operator.core.firing.backfill import (
    MAX_PARALLELISM,
    RANGE_RULE,
    Refusal,
    in_range,
    parse_request,
    request_annotation,
)
from trigger_operator.jobs.render import manual_job_name
from trigger_operator.model.status import Phase, parse_time
from trigger_operator.plugin import views
from trigger_operator.plugin.client import Cluster, post_events
from trigger_operator.plugin.complete import SCRIPTS, candidates
from trigger_operator.plugin.errors import FAILED, OK, USAGE, PluginError, where
from trigger_operator.timemath import moments, shortfall
from trigger_operator.timemath.cron import CronError, CronSchedule

POLL_SECONDS = 1.0
# A Job that ended is normally counted by the operator within a second or two; past this the
# Job's own conditions decide (the operator may be down), so the plugin never waits forever.
COUNT_GRACE_SECONDS = 20.0
URL_ENV = "TRIGGER_OPERATOR_URL"
PROG = "kubectl trigger"
EXIT_CODES = (__doc__ or "")[(__doc__ or "").index("Exit codes:"):]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Session:
    """The parsed arguments and, made when first needed, the cluster of the chosen context."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(self.args.kubeconfig, self.args.context)
        return self._cluster

    @property
    def namespace(self) -> str:
        return str(self.args.namespace or self.cluster.namespace)

    def trigger(self) -> dict[str, Any]:
        return self.cluster.trigger(self.namespace, self.args.name)


def emit(data: Any, output: str) -> None:
    if output == "yaml":
        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        print(json.dumps(data, indent=2))


# --- commands -------------------------------------------------------------------------------------


def cmd_list(s: Session) -> int:
    namespace = None if s.args.all_namespaces else s.namespace
    items = s.cluster.triggers(namespace)
    if s.args.output in ("json", "yaml"):
        emit(views.as_list(items), s.args.output)
    elif s.args.output == "name":
        for trigger in items:
            print(views.resource_name(trigger))
    elif not items:
        print(f"No triggers found {where(namespace)}.", file=sys.stderr)
    else:
        print(views.list_table(items, now(), wide=s.args.output == "wide", with_namespace=namespace is None))
    return OK


def cmd_describe(s: Session) -> int:
    trigger = s.trigger()
    jobs = s.cluster.jobs(s.namespace, s.args.name)
    events = s.cluster.events(s.namespace, trigger)
    print(views.describe(trigger, jobs, events, now()))
    return OK


def cmd_history(s: Session) -> int:
    runs = views.history(s.trigger())
    if s.args.output:
        emit(runs, s.args.output)
    elif not runs:
        print(f'No runs recorded for trigger "{s.args.name}".', file=sys.stderr)
    else:
        print(views.history_table(runs))
    return OK


def cmd_pause(s: Session) -> int:
    patched = s.cluster.patch_trigger(s.namespace, s.args.name, {"spec": {"state": "paused"}})
    print(f"{views.resource_name(patched)} paused")
    return OK


def cmd_resume(s: Session) -> int:
    """The operator's own resume (README, "Failures"): a new resume token clears a Trigger stopped
    at its failure limit, and state active ends a pause or a disable; both in one patch, as the
    REST API's resume does."""
    was = (s.trigger().get("status") or {}).get("phase")
    patch = {"metadata": {"annotations": {ANNOTATION_RESUME: uuid.uuid4().hex}}, "spec": {"state": "active"}}
    patched = s.cluster.patch_trigger(s.namespace, s.args.name, patch)
    cleared = " (it had stopped at its failure limit: the failures in a row count from 0 again)"
    print(f"{views.resource_name(patched)} resumed{cleared if was == Phase.FAILED.value else ''}")
    return OK


def cmd_run(s: Session) -> int:
    refusal = views.run_refusal(s.trigger())
    if refusal is not None:
        raise PluginError(FAILED, refusal)
    token = uuid.uuid4().hex
    patched = s.cluster.patch_trigger(s.namespace, s.args.name, {"metadata": {"annotations": {ANNOTATION_RUN_NOW:
                                                                                                token}}})
    print(f"{views.resource_name(patched)} run requested: Job {manual_job_name(s.args.name, token)}")
    if s.args.no_wait:
        return OK
    return follow(s, token, s.args.timeout)


def cmd_backfill(s: Session) -> int:
    """Writes a backfill request (a new id each time) as the caller; ``--cancel`` marks the current
    request cancelled. The operator does the rest (core/firing/backfill.py); describe shows progress."""
    if s.args.cancel:
        trigger = s.trigger()
        text = (trigger.get("metadata") or {}).get("annotations", {}).get(ANNOTATION_BACKFILL)
        state = ((trigger.get("status") or {}).get("backfill") or {}).get("state")
        try:
            request = parse_request(text) if text else None
        except Refusal as refusal:  # anyone who may patch the Trigger can write the annotation
            raise PluginError(FAILED, f'trigger "{s.args.name}" has no backfill running: its request is '
                              f"refused: {refusal}") from None
        if request is None or state not in (None, "Running"):
            raise PluginError(FAILED, f'trigger "{s.args.name}" has no backfill running')
        annotation = request_annotation(request.id, request.start, request.end, request.parallelism, cancel=True)
        patched = s.cluster.patch_trigger(s.namespace, s.args.name,
                                          {"metadata": {"annotations": {ANNOTATION_BACKFILL: annotation}}})
        print(f"{views.resource_name(patched)} backfill {request.id} cancelled (the runs going finish)")
        return OK
    times = []
    for flag, value in (("--from", s.args.start), ("--to", s.args.end)):
        try:
            parsed = parse_time(value)
        except ValueError:
            parsed = None
        except OverflowError:  # an offset takes it out of the calendar (year 1 or 9999)
            raise PluginError(USAGE, f"{flag}: {RANGE_RULE}; got {value!r}") from None
        if parsed is None:
            raise PluginError(USAGE, f"{flag}: an RFC 3339 time is required (e.g. 2026-05-01T00:00:00Z); got {value!r}")
        if not in_range(parsed):
            raise PluginError(USAGE, f"{flag}: {RANGE_RULE}; got {value!r}")
        times.append(parsed)
    annotation = request_annotation(uuid.uuid4().hex[:12], times[0], times[1], s.args.parallel)
    try:
        request = parse_request(annotation)
    except Refusal as refusal:
        raise PluginError(USAGE, str(refusal)) from None
    if request.end > now():
        raise PluginError(USAGE, f"--to: {s.args.end} is in the future: a backfill runs past moments only")
    patched = s.cluster.patch_trigger(s.namespace, s.args.name,
                                      {"metadata": {"annotations": {ANNOTATION_BACKFILL: annotation}}})
    print(f"{views.resource_name(patched)} backfill {request.id} requested: {s.args.start} .. {s.args.end}, "
          f"{request.parallelism} at a time (progress: {PROG} describe {s.args.name})")
    return OK


class ProgressLine:
    """On a terminal one line rewritten in place; otherwise a plain line whenever the state changes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.tty, self.last = stream, stream.isatty(), ""

    def show(self, text: str, state: str) -> None:
        if self.tty:
            self.stream.write(f"\r{text}\x1b[K")
        elif state != self.last:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last = state

    def end(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


def follow(s: Session, token: str, timeout: float | None) -> int:
    """Waits for the run of ``token``: the operator's count in status decides; the Job's own
    conditions only when the operator has not counted it `COUNT_GRACE_SECONDS` after it ended."""
    started, ended_at = time.monotonic(), None
    line = ProgressLine(sys.stdout)
    job_name = manual_job_name(s.args.name, token)
    try:
        while True:
            trigger = s.trigger()
            p = views.progress(trigger, s.cluster.job(s.namespace, job_name), token)
            elapsed = time.monotonic() - started
            line.show(views.progress_line(p, dt.timedelta(seconds=elapsed)), p.state)
            if p.job_outcome and ended_at is None:
                ended_at = time.monotonic()
            if p.outcome or (ended_at is not None and time.monotonic() - ended_at > COUNT_GRACE_SECONDS):
                break
            if timeout is not None and elapsed > timeout:
                raise PluginError(FAILED, f"timed out after {timeout:g}s: Job {job_name} is {p.state}; the run goes "
                                          f"on (kubectl trigger history {s.args.name})")
            time.sleep(POLL_SECONDS)
    finally:
        line.end()
    took = views.span(dt.timedelta(seconds=time.monotonic() - started))
    if p.succeeded:
        print(f"Job {job_name} succeeded ({took})")
        return OK
    raise PluginError(FAILED, f"Job {job_name} did not succeed ({p.outcome or p.job_outcome}): {p.error}")


def cmd_next(s: Session) -> int:
    if s.args.cron is None:
        upcoming = views.upcoming(s.trigger(), now(), s.args.count)
        if upcoming.note:
            print(f"note: {upcoming.note}", file=sys.stderr)
        if upcoming.limit:  # the budget or a finished Trigger: an answer, not a shortfall
            print(f"note: {upcoming.limit}", file=sys.stderr)
            print("\n".join(m.astimezone(upcoming.zone).isoformat() for m in upcoming.moments))
            return OK
        found, zone = upcoming.moments, upcoming.zone
    else:
        try:
            schedule = CronSchedule.parse(s.args.cron, s.args.timezone)
            after = parse_time(s.args.after) if s.args.after else now()
        except CronError as error:
            raise PluginError(USAGE, str(error)) from None
        except ValueError:
            raise PluginError(USAGE, f"--after {s.args.after!r} is not an ISO-8601 time") from None
        assert after is not None
        found, zone = moments(schedule, after, s.args.count), schedule.zone
    short = shortfall(found, s.args.count, repr(s.args.cron) if s.args.cron is not None else f'of "{s.args.name}"')
    if short is not None and short[0]:
        raise PluginError(FAILED, short[1])
    if short is not None:
        print(f"note: {short[1]}", file=sys.stderr)
    print("\n".join(m.astimezone(zone).isoformat() for m in found))
    return OK


def _event_targets(s: Session) -> list[tuple[str, str | None]]:
    if s.args.name is not None:
        spec = s.trigger().get("spec") or {}
        if spec.get("triggerType") != "event":
            raise PluginError(FAILED, f'trigger "{s.args.name}" is a {spec.get("triggerType")} Trigger: '
                                      "events count only for event Triggers")
        config = spec.get("scheduleConfig") or {}
        return [(s.args.type or config["eventType"], s.args.collection or config.get("collectionId"))]
    if s.args.type is not None:
        return [(s.args.type, s.args.collection)]
    targets = views.event_targets(s.cluster.triggers(s.namespace))
    if not targets:
        raise PluginError(FAILED, f"no event Triggers {where(s.namespace)}")
    return targets


def cmd_send_event(s: Session) -> int:
    url = s.args.url or os.environ.get(URL_ENV)
    if not url:
        raise PluginError(USAGE, f"the operator's URL is needed: --url URL or {URL_ENV}")
    token = s.args.token or s.cluster.bearer_token()
    if not token:
        raise PluginError(FAILED, f'the kubeconfig\'s user "{s.cluster.user}" has no bearer token (a client '
                                  "certificate, say), and the operator's event endpoint takes only tokens: pass "
                                  '--token, e.g. --token "$(kubectl create token SENDER)"')
    events = views.cloudevents(_event_targets(s), source=s.args.source, new_id=lambda: uuid.uuid4().hex,
                               event_id=s.args.id, count=s.args.count, subject=s.args.subject,
                               data=_json_or_text(s.args.data))
    answer = post_events(url, token, s.namespace, events)
    if s.args.output:
        emit(answer, s.args.output)
    else:
        print(f"{len(events)} event(s) sent to namespace {answer.get('namespace')}")
        print(views.tally_table(answer) if answer.get("triggers") else "no Trigger counted them")
    counted = {t["name"] for t in answer.get("triggers") or []}
    if s.args.name is not None and s.args.name not in counted:
        raise PluginError(FAILED, f'trigger "{s.args.name}" did not count the event (its filters, or its state?)')
    return OK


def _json_or_text(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def cmd_completion(s: Session) -> int:
    print(SCRIPTS[s.args.shell], end="")
    return OK


# --- the parser -----------------------------------------------------------------------------------


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _common(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """kubectl's global flags; on the subcommands without defaults, so a value given before the
    subcommand is not overwritten by the subcommand's default."""
    d: Callable[[Any], Any] = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    parser.add_argument("-n", "--namespace", default=d(None), help="the namespace (default: the context's)")
    parser.add_argument("--context", default=d(None), help="the kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=d(None), help="the kubeconfig (default: $KUBECONFIG, ~/.kube/config)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, func: Callable[[Session], int], text: str, *, takes_name: bool | None = True,
                outputs: Sequence[str] = ()) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, epilog=EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, defaults=False)
        if takes_name is not None:
            p.add_argument("name", metavar="NAME", nargs=None if takes_name else "?", help="the Trigger")
        if outputs:
            p.add_argument("-o", "--output", choices=outputs, help="output format")
        p.set_defaults(func=func)
        commands[name] = p
        return p

    listing = command("list", cmd_list, "list Triggers: phase, type, schedule, last and next run, run counts",
                      takes_name=None, outputs=("json", "yaml", "wide", "name"))
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="Triggers of every namespace")
    command("describe", cmd_describe, "a Trigger's spec, status, recent executions, Jobs and Events")
    run = command("run", cmd_run, "run a Trigger now and follow the run to its end (exit 1 if it fails)")
    run.add_argument("--no-wait", action="store_true", help="return once the run is requested")
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="stop following after this long, exit 1 (default: until the run ends)")
    command("pause", cmd_pause, "pause a Trigger: no scheduled runs until resumed")
    command("resume", cmd_resume, "resume a paused, disabled or failed Trigger")
    command("history", cmd_history, "a Trigger's recent executions", outputs=("json", "yaml"))
    backfill = command("backfill", cmd_backfill, "run the past moments of a Trigger's schedule in [--from, --to] "
                       "(each at most once, even if it ran live or in an earlier backfill), or --cancel")
    backfill.add_argument("--from", dest="start", metavar="TIME", help="the first moment (RFC 3339, included)")
    backfill.add_argument("--to", dest="end", metavar="TIME",
                          help="the last moment (RFC 3339, included; not after now)")
    backfill.add_argument("--parallel", type=_count, default=1,
                          help=f"at most this many backfill Jobs at once (1 to {MAX_PARALLELISM}, default 1)")
    backfill.add_argument("--cancel", action="store_true", help="cancel the running backfill: no new Job")
    nxt = command("next", cmd_next, "the next moments of a Trigger, or of --cron EXPR", takes_name=False)
    nxt.add_argument("--cron", metavar="EXPR", help="preview a cron expression instead of a Trigger")
    nxt.add_argument("--timezone", default="UTC", help="the --cron expression's IANA time zone (default UTC)")
    nxt.add_argument("--after", metavar="TIME", help="--cron: moments after this ISO-8601 time (default: now)")
    nxt.add_argument("--count", type=_count, default=5, help="how many moments (default 5)")
    send = command("send-event", cmd_send_event, "post events to the operator's /v1/events, counted by event "
                   "Triggers", takes_name=False, outputs=("json", "yaml"))
    send.add_argument("--all", action="store_true", help="no one Trigger: every event Trigger of the namespace "
                      "(one event per event type and collection), or just --type")
    send.add_argument("--type", help="the event type (default: NAME's eventType)")
    send.add_argument("--collection", help="the collectionid (default: NAME's collectionId)")
    send.add_argument("--count", type=_count, default=1, help="occurrences each event stands for (default 1)")
    send.add_argument("--source", default="//kubectl-trigger", help="the CloudEvents source")
    send.add_argument("--id", help="the event id: a retry with the same source and id counts once (default: new)")
    send.add_argument("--subject", help="the CloudEvents subject")
    send.add_argument("--data", help="the event's data (JSON, else a string)")
    send.add_argument("--url", help=f"the operator's HTTP API (default: ${URL_ENV})")
    send.add_argument("--token", help="a Bearer token (default: the kubeconfig user's)")
    completion = command("completion", cmd_completion, "a completion script for kubectl-trigger", takes_name=None)
    completion.add_argument("shell", choices=sorted(SCRIPTS))
    return parser, commands


def _check(args: argparse.Namespace, commands: Mapping[str, argparse.ArgumentParser]) -> None:
    """What argparse cannot say: NAME or one option, not both (exit 2 with the command's usage)."""
    if args.command == "send-event" and (args.name is None) == (not args.all):
        commands["send-event"].error("takes a Trigger's NAME or --all (one of them)")
    if args.command == "backfill" and args.cancel == bool(args.start or args.end):
        commands["backfill"].error("takes --from and --to, or --cancel")
    if args.command == "backfill" and not args.cancel and not (args.start and args.end):
        commands["backfill"].error("takes both --from and --to")
    if args.command == "next" and (args.name is None) == (args.cron is None):
        commands["next"].error("takes a Trigger's NAME or --cron EXPR (one of them)")


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    _check(args, commands)
    try:
        return int(args.func(Session(args)))
    except PluginError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("\ninterrupted (a requested run goes on)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. | head: nothing more to say
        sys.stderr.close()
        return OK


class ClusterSources:
    """Completion's `Sources` from the cluster and kubeconfig; any failure completes nothing."""

    def _cluster(self, scope: Mapping[str, str]) -> Cluster | None:
        try:
            return Cluster(scope.get("kubeconfig"), scope.get("context"))
        except PluginError:
            return None

    def _quietly(self, fn: Callable[[], list[str]]) -> list[str]:
        try:
            return fn()
        except PluginError:
            return []

    def triggers(self, scope: Mapping[str, str]) -> list[str]:
        cluster = self._cluster(scope)
        if cluster is None:
            return []
        namespace = scope.get("namespace") or cluster.namespace
        return self._quietly(lambda: sorted(t["metadata"]["name"] for t in cluster.triggers(namespace)))

    def namespaces(self, scope: Mapping[str, str]) -> list[str]:
        cluster = self._cluster(scope)
        return [] if cluster is None else self._quietly(cluster.namespaces)

    def contexts(self, scope: Mapping[str, str]) -> list[str]:
        try:
            contexts, _ = kubernetes.config.list_kube_config_contexts(scope.get("kubeconfig"))
        except (kubernetes.config.ConfigException, OSError):
            return []
        return sorted(c["name"] for c in contexts)


def complete_main(argv: Sequence[str] | None = None) -> int:
    """``kubectl_complete-trigger WORD...``: kubectl's plugin completion protocol (see complete.py)."""
    parser, commands = build_parser()
    found, directive = candidates(list(sys.argv[1:] if argv is None else argv), parser, commands, ClusterSources())
    print("\n".join([*found, f":{directive}"]))
    return OK


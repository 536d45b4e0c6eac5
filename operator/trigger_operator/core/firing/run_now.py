"""The run-now annotation, for every type of Trigger: one run per new token, never one for a token
seen before. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trigger_operator.api import ANNOTATION_RUN_NOW
from trigger_operator.core.plan import Draft, Observed
from trigger_operator.core.runs import start_run
from trigger_operator.jobs.render import manual_job_name
from trigger_operator.model.spec import TriggerSpec
from trigger_operator.model.status import ActiveRun, RunKind, token_hash


def take_creation_token(o: Observed, d: Draft) -> None:
    """A run-now token a new Trigger carries when the operator first sees it is taken as used: a
    manifest re-applied from Git (or re-created by Argo CD) keeps its last token and must not
    run again each time. Only at generation 1: a Trigger already edited when first seen (the REST
    API's create, update, pause, resume, execute in a row, faster than the operator's first look)
    was given its token after it was made, and that token runs."""
    token = o.trigger.annotations.get(ANNOTATION_RUN_NOW)
    if token and o.trigger.status.phase is None and o.trigger.generation <= 1:
        d.status = d.status.with_run_now_token(token_hash(token))


def run_now(o: Observed, d: Draft, spec: TriggerSpec, template: Mapping[str, Any], *, refuse: bool) -> None:
    """One Job per new run-now token. Status remembers the last RUN_NOW_TOKENS_KEPT tokens, so
    a token used again (A, B, then A; Argo CD reverting a manual token to Git's) runs nothing.
    A token given while the Trigger is disabled (``refuse``) is used up without a run, so that
    enabling it later does not start a run nobody asked for then."""
    token = o.trigger.annotations.get(ANNOTATION_RUN_NOW)
    if not token or token_hash(token) in d.status.run_now_tokens:
        return
    d.status = d.status.with_run_now_token(token_hash(token))
    if refuse:
        d.notice("Warning", "RunNowRefused", f"run-now token {token!r} ignored: the Trigger is disabled")
        return
    name = manual_job_name(o.trigger.name, token)
    job = o.jobs.get(name)
    if any(r.name == name for r in d.status.active) or (job is not None and o.ours(job)):
        return
    start_run(o, d, spec, template, ActiveRun(name=name, kind=RunKind.MANUAL,
                                              scheduled_time=o.now, fired_at=o.now))

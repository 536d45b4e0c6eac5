"""A small in-memory API server behind the controller's `ClusterApi`, for testing the shell's protocol.

Not a mock of Kubernetes in general: it keeps just the rules the exactly-once protocol leans on,
as the real API server applies them - resourceVersions that grow with every write, status merge
patches guarded by a resourceVersion precondition, Job names that can be taken once, finalizers
that hold a deleted Job until they are removed - plus what the tests need to break things: watch
streams that a test delivers, delays or drops, a crash before the Nth call, refusals, and pauses
at chosen points of a call (a replica stopped with its request on the way or its answer unread).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trigger_operator.controller.loop import Scheduler
from trigger_operator.jobs.wire import decode_event
from trigger_operator.kube.interface import AlreadyExists, Body, Conflict, Identity, NotFound, Rejected, TooLate
from trigger_operator.model.notice import Notice
from trigger_operator.model.status import format_time


class Crash(BaseException):
    """The operator process dies here (a BaseException, so no handler in the shell catches it)."""


@dataclass
class Watch:
    """One operator's watch streams: events wait here until the test delivers or drops them."""

    pending: list[tuple[str, str, Body]] = field(default_factory=list)  # (kind, event type, body)

    def deliver(self, scheduler: Scheduler, only: str | None = None) -> None:
        """Hands the waiting events to the scheduler; with ``only`` ("Trigger" or "Job") the others
        are lost, as in a gap of that one watch."""
        events, self.pending = self.pending, []
        for kind, event_type, body in events:
            if only is not None and kind != only:
                continue
            if kind == "Trigger":
                scheduler.store.on_trigger(event_type, body)
            else:  # slimmed as our Job watch slims it (kube/watch.py): the controller must need no more
                line = json.dumps({"type": event_type or "ADDED", "object": body}).encode()
                scheduler.store.on_job(event_type, decode_event(line)[1])

    def drop(self) -> None:
        """A watch gap: these events never arrive (kopf's re-list after an outage sends no DELETED)."""
        self.pending = []


@dataclass
class FakeCluster:
    clock: Callable[[], dt.datetime]
    triggers: dict[tuple[str, str], Body] = field(default_factory=dict)
    jobs: dict[tuple[str, str], Body] = field(default_factory=dict)
    config_map: Body | None = None
    created: list[str] = field(default_factory=list)  # every Job name ever created, in order
    calls: list[tuple[str, str]] = field(default_factory=list)  # every API call (method, object name), in order
    events: list[Notice] = field(default_factory=list)
    watches: list[Watch] = field(default_factory=list)
    calls_before_crash: int | None = None  # the call after this many more raises Crash
    refuse_creates: Exception | None = None  # Rejected(...) or RetryLater(...) for every create
    # A status patch whose JSON is longer is refused with HTTP 413, as the API server refuses a
    # request over its bound (and etcd an object over its own: "request is too large").
    max_patch_bytes: int | None = None
    tokens: dict[str, Identity] = field(default_factory=dict)  # the tokens the API server accepts
    token_audiences: dict[str, tuple[str, ...]] = field(default_factory=dict)  # token -> audiences (review_token)
    objects: dict[tuple[str, str, str, str], Body] = field(default_factory=dict)  # (apiVersion, kind, ns, name)
    secrets: dict[tuple[str, str], Body] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], Body] = field(default_factory=dict)  # the event inbox's (namespace, name)
    kinds: dict[str, tuple[str, bool]] = field(default_factory=dict)  # kind -> (resource, namespaced)
    grants: set[tuple[str, str, str, str]] = field(default_factory=set)  # (user, namespace, verb, resource[/sub])
    # A call reaching one of these points waits for the gate: "patch_trigger_status:answered" (the
    # write is applied, its answer not yet read), "create_job:deciding" (before the in_time check),
    # "create_job:sent" (the check passed, the request not yet applied: on its way).
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    revision: int = 0
    _uids: itertools.count[int] = field(default_factory=itertools.count)

    # --- what the API server does ------------------------------------------------------------------

    def _call(self, method: str, name: str) -> None:
        if self.calls_before_crash is not None:
            if self.calls_before_crash <= 0:
                self.calls_before_crash = None
                raise Crash(method)
            self.calls_before_crash -= 1
        self.calls.append((method, name))

    async def _gate(self, point: str) -> None:
        gate = self.gates.pop(point, None)
        if gate is not None:
            await gate.wait()

    def pause_at(self, point: str) -> asyncio.Event:
        """The next call reaching ``point`` waits until the returned event is set."""
        gate = self.gates[point] = asyncio.Event()
        return gate

    def called(self, method: str, name: str | None = None) -> int:
        return sum(1 for m, n in self.calls if m == method and name in (None, n))

    def _stamp(self, body: Body) -> Body:
        self.revision += 1
        body["metadata"]["resourceVersion"] = str(self.revision)
        return body

    def _emit(self, kind: str, event_type: str, body: Body) -> None:
        for watch in self.watches:
            watch.pending.append((kind, event_type, copy.deepcopy(body)))

    def watch(self) -> Watch:
        """A new operator's watches: they start with a full list, as kopf's do."""
        w = Watch([("Trigger", "ADDED", copy.deepcopy(b)) for b in self.triggers.values()]
                  + [("Job", "ADDED", copy.deepcopy(b)) for b in self.jobs.values()])
        self.watches.append(w)
        return w

    async def get_trigger(self, namespace: str, name: str) -> Body:
        self._call("get_trigger", name)
        if (namespace, name) not in self.triggers:
            raise NotFound(name)
        return copy.deepcopy(self.triggers[namespace, name])

    async def patch_trigger_status(self, namespace: str, name: str, resource_version: str,
                                   patch: Mapping[str, Any]) -> Body:
        self._call("patch_trigger_status", name)
        if self.max_patch_bytes is not None and len(json.dumps(patch)) > self.max_patch_bytes:
            raise Rejected("the request is too large", 413)
        body = self.triggers.get((namespace, name))
        if body is None:
            raise NotFound(name)
        if body["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(name)
        status = body.setdefault("status", {})
        before = copy.deepcopy(status)
        for key, value in patch.items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = _without_nulls(value)
        if status == before:  # as the API server: a patch that changes nothing writes nothing
            return copy.deepcopy(body)
        self._emit("Trigger", "MODIFIED", self._stamp(body))
        written = copy.deepcopy(body)
        await self._gate("patch_trigger_status:answered")
        return written

    async def patch_trigger_finalizers(self, namespace: str, name: str, resource_version: str,
                                       finalizers: Sequence[str]) -> Body:
        self._call("patch_trigger_finalizers", name)
        body = self.triggers.get((namespace, name))
        if body is None:
            raise NotFound(name)
        if body["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(name)
        added = set(finalizers) - set(body["metadata"].get("finalizers") or [])
        if body["metadata"].get("deletionTimestamp") and added:
            raise Rejected("a finalizer cannot be added to an object being deleted", 422)
        body["metadata"]["finalizers"] = list(finalizers)
        if body["metadata"].get("deletionTimestamp") and not finalizers:  # the last one: it is gone
            del self.triggers[namespace, name]
            self._emit("Trigger", "DELETED", self._stamp(body))
        else:
            self._emit("Trigger", "MODIFIED", self._stamp(body))
        return copy.deepcopy(body)

    async def create_job(self, namespace: str, manifest: Mapping[str, Any],
                         in_time: Callable[[], bool] = lambda: True) -> Body:
        await self._gate("create_job:deciding")
        if not in_time():
            raise TooLate(manifest["metadata"]["name"])
        self._call("create_job", manifest["metadata"]["name"])
        await self._gate("create_job:sent")
        if self.refuse_creates is not None:
            raise self.refuse_creates
        name = manifest["metadata"]["name"]
        if (namespace, name) in self.jobs:
            raise AlreadyExists(name)
        body = copy.deepcopy(dict(manifest))
        body["metadata"].update(uid=f"job-uid-{next(self._uids)}", creationTimestamp=format_time(self.clock()))
        body["status"] = {}
        self.jobs[namespace, name] = self._stamp(body)
        self.created.append(name)
        self._emit("Job", "ADDED", body)
        return copy.deepcopy(body)

    async def get_job(self, namespace: str, name: str) -> Body | None:
        self._call("get_job", name)
        body = self.jobs.get((namespace, name))
        return copy.deepcopy(body) if body is not None else None

    async def delete_job(self, namespace: str, name: str) -> bool:
        self._call("delete_job", name)
        return self.remove_job(namespace, name)

    async def release_job(self, namespace: str, name: str) -> Body | None:
        self._call("release_job", name)
        body = self.jobs.get((namespace, name))
        if body is None:
            return None
        body["metadata"]["finalizers"] = [f for f in body["metadata"].get("finalizers") or []
                                          if f != "trigger-operator.io/count-result"]
        self._stamp(body)
        if body["metadata"].get("deletionTimestamp") and not body["metadata"]["finalizers"]:
            del self.jobs[namespace, name]
            self._emit("Job", "DELETED", body)
        else:
            self._emit("Job", "MODIFIED", body)
        return copy.deepcopy(body)

    async def list_triggers(self, namespace: str) -> list[Body]:
        self._call("list_triggers", namespace)
        return [copy.deepcopy(b) for (ns, _), b in self.triggers.items() if ns == namespace]

    async def list_jobs(self, namespace: str) -> tuple[list[Body], str]:
        self._call("list_jobs", namespace)
        return [copy.deepcopy(b) for (ns, _), b in self.jobs.items() if ns == namespace], str(self.revision)

    async def job_pods(self, namespace: str, job_name: str) -> list[Body]:
        self._call("job_pods", job_name)
        return []

    async def get_config_map(self, namespace: str, name: str) -> Body | None:
        self._call("get_config_map", name)
        return copy.deepcopy(self.config_map)

    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> Body:
        self._call("create_config_map", body["metadata"]["name"])
        if (namespace, body["metadata"]["name"]) in self.config_maps:
            raise AlreadyExists(body["metadata"]["name"])
        stored = self._stamp(copy.deepcopy(dict(body)) | {"metadata": {**body["metadata"], "namespace": namespace}})
        self.config_maps[namespace, body["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def list_config_maps(self, namespace: str, label_selector: str) -> list[Body]:
        self._call("list_config_maps", namespace)
        return [copy.deepcopy(b) for (ns, _), b in sorted(self.config_maps.items())
                if ns == namespace and label_selector in (b["metadata"].get("labels") or {})]

    async def delete_config_map(self, namespace: str, name: str) -> bool:
        self._call("delete_config_map", name)
        return self.config_maps.pop((namespace, name), None) is not None

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        self._call("get_secret", name)
        return copy.deepcopy(self.secrets.get((namespace, name)))

    async def get_object(self, namespace: str, api_version: str, kind: str, name: str) -> Body | None:
        self._call("get_object", name)
        if (api_version, kind) == ("trigger-operator.io/v1alpha1", "Trigger"):
            return copy.deepcopy(self.triggers.get((namespace, name)))
        return copy.deepcopy(self.objects.get((api_version, kind, namespace, name)))

    async def review_token(self, token: str, audiences: Sequence[str] = ()) -> Identity | None:
        """Accepts ``tokens``; a token listed in ``token_audiences`` only for those audiences, any
        other only for the API server's own (``""``), as the real TokenReview does."""
        self._call("review_token", ",".join(audiences))
        bound = self.token_audiences.get(token, ("",))
        return self.tokens.get(token) if set(bound) & set(audiences or ("",)) else None

    async def resource_of(self, api_version: str, kind: str) -> tuple[str, bool]:
        self._call("resource_of", kind)
        if kind not in self.kinds:
            raise Rejected(f"the API server serves no kind {kind!r} in {api_version}")
        return self.kinds[kind]

    async def review_access(self, identity: Identity, *, namespace: str, verb: str, group: str, resource: str,
                            subresource: str = "", name: str = "") -> tuple[bool, str]:
        self._call("review_access", identity.user)
        allowed = (identity.user, namespace, verb, f"{resource}/{subresource}" if subresource else resource)
        # A grant on one object: (user, namespace, verb, "resource/*name"), beside namespace-wide ones.
        one = (*allowed[:3], f"{allowed[3]}/*{name}") if name else None
        ok = allowed in self.grants or one in self.grants
        return ok, "" if ok else "no RBAC rule allows it"

    async def post_event(self, trigger: Mapping[str, Any], notice: Notice, now: dt.datetime) -> None:
        self.events.append(notice)

    # --- what users and other controllers do ----------------------------------------------------

    def apply_trigger(self, namespace: str, name: str, spec: Mapping[str, Any], *,
                      annotations: Mapping[str, str] | None = None, created_at: dt.datetime | None = None) -> Body:
        body: Body = {"apiVersion": "trigger-operator.io/v1alpha1", "kind": "Trigger",
                      "metadata": {"namespace": namespace, "name": name, "uid": f"trigger-uid-{next(self._uids)}",
                                   "generation": 1, "annotations": dict(annotations or {}),
                                   "creationTimestamp": format_time(created_at or self.clock())},
                      "spec": copy.deepcopy(dict(spec))}
        self.triggers[namespace, name] = self._stamp(body)
        self._emit("Trigger", "ADDED", body)
        return copy.deepcopy(body)

    def edit_trigger(self, namespace: str, name: str, *, status: Mapping[str, Any] | None = None) -> None:
        """A person's edit of status (kubectl edit --subresource=status)."""
        body = self.triggers[namespace, name]
        body["status"] = copy.deepcopy(dict(status or {}))
        self._emit("Trigger", "MODIFIED", self._stamp(body))

    def edit_spec(self, namespace: str, name: str, **fields: Any) -> None:
        """A person's edit of the spec (kubectl patch --type=merge)."""
        body = self.triggers[namespace, name]
        body["spec"].update(copy.deepcopy(fields))
        body["metadata"]["generation"] += 1
        self._emit("Trigger", "MODIFIED", self._stamp(body))

    def annotate(self, namespace: str, name: str, **annotations: str) -> None:
        """A person's annotation of the Trigger (kubectl annotate): no new generation."""
        body = self.triggers[namespace, name]
        body["metadata"]["annotations"] = {**(body["metadata"].get("annotations") or {}), **annotations}
        self._emit("Trigger", "MODIFIED", self._stamp(body))

    def delete_trigger(self, namespace: str, name: str) -> None:
        """kubectl delete: finalizers hold the Trigger (a deletionTimestamp) until the last comes off."""
        body = self.triggers[namespace, name]
        if body["metadata"].get("finalizers"):
            if not body["metadata"].get("deletionTimestamp"):
                body["metadata"]["deletionTimestamp"] = format_time(self.clock())
                self._emit("Trigger", "MODIFIED", self._stamp(body))
        else:
            del self.triggers[namespace, name]
            self._emit("Trigger", "DELETED", self._stamp(body))

    def finish_job(self, namespace: str, name: str, *, succeeded: bool = True) -> None:
        """The Job controller marks the Job Complete (or Failed)."""
        body = self.jobs[namespace, name]
        now = format_time(self.clock())
        condition = {"type": "Complete" if succeeded else "Failed", "status": "True", "lastTransitionTime": now,
                     **({} if succeeded else {"reason": "BackoffLimitExceeded", "message": "exit code 1"})}
        body["status"] = {"startTime": body["metadata"]["creationTimestamp"], "conditions": [condition],
                          **({"completionTime": now} if succeeded else {})}
        self._emit("Job", "MODIFIED", self._stamp(body))

    def remove_job(self, namespace: str, name: str) -> bool:
        """A delete by anyone (the TTL controller, a person, us): finalizers hold the Job."""
        body = self.jobs.get((namespace, name))
        if body is None:
            return False
        if body["metadata"].get("finalizers"):
            if not body["metadata"].get("deletionTimestamp"):
                body["metadata"]["deletionTimestamp"] = format_time(self.clock())
                self._emit("Job", "MODIFIED", self._stamp(body))
        else:
            del self.jobs[namespace, name]
            self._emit("Job", "DELETED", self._stamp(body))
        return True

    def put_job(self, body: Body) -> None:
        """A Job someone else made (a stranger holding a name, an orphan with our label)."""
        body = copy.deepcopy(body)
        body["metadata"].setdefault("uid", f"job-uid-{next(self._uids)}")
        self.jobs[body["metadata"]["namespace"], body["metadata"]["name"]] = self._stamp(body)
        self._emit("Job", "ADDED", body)

    def status(self, namespace: str, name: str) -> Body:
        return copy.deepcopy(self.triggers[namespace, name].get("status") or {})


def _without_nulls(value: Any) -> Any:
    """What the API server stores: a structural schema prunes nulls of fields not marked nullable,
    at any depth (inside list items too, where a merge patch cannot remove them)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return copy.deepcopy(value)

"""The Kubernetes API as the controller uses it: one small interface, its errors, nothing else.

`kube.api.KubeApi` implements it against a real API server; the unit tests implement it with a
small in-memory cluster of their own (``tests/unit/fake_cluster.py``), as the CronJob controller
tests its ``jobControl`` seam. Bodies are plain JSON data (dicts), as the API server sends them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trigger_operator.model.notice import Notice

Body = dict[str, Any]


class Conflict(Exception):
    """A guarded write found a newer resourceVersion: read again and decide again."""


class NotFound(Exception):
    """The object does not exist (any more): HTTP 404. (Not "Gone": to a Kubernetes reader 410 Gone
    is a resourceVersion too old to watch from.)"""


class AlreadyExists(Exception):
    """A create found an object of that name: read it to learn whose it is."""


class TooLate(Exception):
    """A create not sent: its ``in_time`` check said the decision behind it is too old to act on."""


class Rejected(Exception):
    """Refused for good (invalid, forbidden): retrying the same request will not help."""

    def __init__(self, message: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the API server's HTTP status, when it gave one


class RetryLater(Exception):
    """Refused for now (e.g. a ResourceQuota is exhausted): the same request may pass later."""


@dataclass(frozen=True)
class Identity:
    """Who a Bearer token belongs to, as a TokenReview says."""

    user: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_user_info(cls, user: Mapping[str, Any]) -> Identity:
        """From a UserInfo, as a TokenReview's status and an AdmissionReview's request carry it."""
        return cls(user=user.get("username", ""), uid=user.get("uid", ""), groups=tuple(user.get("groups") or ()),
                   extra=user.get("extra") or {})


class ClusterApi(Protocol):
    async def get_trigger(self, namespace: str, name: str) -> Body:
        """The Trigger as stored now (a quorum read); `NotFound` if it does not exist."""

    async def list_triggers(self, namespace: str) -> list[Body]:
        """Every Trigger of the namespace, as stored now."""

    async def patch_trigger_status(self, namespace: str, name: str, resource_version: str,
                                   patch: Mapping[str, Any]) -> Body:
        """A merge patch of status, applied only if the Trigger still has ``resource_version``
        (else `Conflict`; `NotFound` if deleted). Returns the Trigger as written."""

    async def patch_trigger_finalizers(self, namespace: str, name: str, resource_version: str,
                                       finalizers: Sequence[str]) -> Body:
        """Sets ``metadata.finalizers`` (a merge patch) only if the Trigger still has
        ``resource_version`` (else `Conflict`; `NotFound` if gone): another controller's finalizer
        added meanwhile is never overwritten. Returns the Trigger as written."""

    async def create_job(self, namespace: str, manifest: Mapping[str, Any],
                         in_time: Callable[[], bool] = lambda: True) -> Body:
        """Creates a Job: `AlreadyExists`, `Rejected` or `RetryLater` when it cannot. ``in_time`` is
        asked as late as can be, right before the request goes out: False raises `TooLate`."""

    async def get_job(self, namespace: str, name: str) -> Body | None:
        """The Job as stored now, or None."""

    async def delete_job(self, namespace: str, name: str) -> bool:
        """Deletes a Job, its pods first; False if there was none."""

    async def release_job(self, namespace: str, name: str) -> Body | None:
        """Removes our finalizer from a Job; returns it as written, or None if there was none."""

    async def list_jobs(self, namespace: str) -> tuple[list[Body], str]:
        """Every Job with our Trigger label in the namespace, and the list's resourceVersion."""

    async def job_pods(self, namespace: str, job_name: str) -> list[Body]:
        """The pods of a Job (for the messages of failed containers)."""

    async def get_config_map(self, namespace: str, name: str) -> Body | None:
        """A ConfigMap, or None."""

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        """A Secret, or None (read only for an http condition source's token)."""

    async def get_object(self, namespace: str, api_version: str, kind: str, name: str) -> Body | None:
        """Any object by apiVersion and kind (namespaced in ``namespace``, or cluster-scoped), or None."""

    async def resource_of(self, api_version: str, kind: str) -> tuple[str, bool]:
        """A kind's resource (plural) and whether it is namespaced, by discovery; `Rejected` if not served."""

    async def post_event(self, trigger: Mapping[str, Any], notice: Notice, now: dt.datetime) -> None:
        """Posts a Kubernetes Event on the Trigger; best effort, never raises."""

    async def review_token(self, token: str, audiences: Sequence[str] = ()) -> Identity | None:
        """A TokenReview: whose token this is, or None when the API server does not accept it (with
        ``audiences``: for none of them, or answers without naming one, as an audience-blind
        authenticator does)."""

    async def review_access(self, identity: Identity, *, namespace: str, verb: str, group: str, resource: str,
                            subresource: str = "", name: str = "") -> tuple[bool, str]:
        """A SubjectAccessReview: whether RBAC lets ``identity`` do it (to the object ``name``, or to
        any of the namespace's when empty), and the authorizer's reason."""


class LeaseApi(Protocol):
    """The Leases that say which replica schedules what (coordination.k8s.io/v1)."""

    async def get_lease(self, namespace: str, name: str) -> Body | None:
        """The Lease, or None."""

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Body:
        """Creates it; `AlreadyExists` when another replica did first."""

    async def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Body:
        """Replaces it if it still has ``body``'s resourceVersion, else `Conflict`."""

    async def list_leases(self, namespace: str, label_selector: str) -> list[Body]:
        """The Leases with these labels (the shards' and the members' of a sharded install)."""

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None:
        """Deletes it if it still has ``resource_version`` (else `Conflict`); `NotFound` if there is none."""


class CallerError(Exception):
    """The API server refused a request made with the caller's own token: its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CallerApi(Protocol):
    """The Kubernetes API as a caller of the REST API would use it: every request carries the caller's
    own Bearer token, so RBAC decides what each caller may do."""

    async def request(self, token: str, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                      params: Mapping[str, str] | None = None) -> Any:
        """The answer's JSON; raises `CallerError` on any status but 2xx."""

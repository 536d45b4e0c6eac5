"""Source approvals: what needs the author's rights, the signature bound to namespace, name,
subject and requester, and the controller's refusal of what was never approved. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from trigger_operator.admission.approval import (
    check_key,
    refusal,
    requester,
    requester_of,
    sign,
    subject,
    verify,
)
from trigger_operator.api import ANNOTATION_SOURCE_APPROVAL
from trigger_operator.kube.interface import Identity
from trigger_operator.model.spec import ConditionSource

KEY = b"k" * 32
TOKEN = {"http": {"url": "https://metrics.example.com/doc", "tokenSecret": {"name": "s", "key": "token"}}}
CONFIG_MAP = {"configMap": {"name": "stats", "key": "centroid"}}
OBJECT = {"object": {"apiVersion": "example.io/v1", "kind": "Index", "name": "i", "fieldPath": ".status.drift"}}
ADMIN = requester(Identity("admin", groups=("system:masters",)))


def source(data: dict[str, Any]) -> ConditionSource:
    return ConditionSource.model_validate(data)


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param(CONFIG_MAP, {"kind": "ConfigMap", "name": "stats"}, id="configMap"),
    pytest.param(OBJECT, {"apiVersion": "example.io/v1", "kind": "Index", "name": "i"}, id="object"),
    pytest.param(TOKEN, {"kind": "Secret", "name": "s", "key": "token", "url": "https://metrics.example.com/doc"},
                 id="http-with-token"),
    pytest.param({"http": {"url": "https://metrics.example.com/doc"}}, None, id="http-without-token"),
    pytest.param({"prometheus": {"url": "https://prom.example.com", "query": "up"}}, None, id="prometheus"),
])
def test_what_needs_the_authors_rights(data: dict[str, Any], expected: dict[str, str] | None) -> None:
    assert subject(source(data)) == expected
    assert subject(None) is None


def trigger(data: dict[str, Any], *, namespace: str = "team-a", name: str = "t",
            approval: str | None = None) -> dict[str, Any]:
    annotations = {ANNOTATION_SOURCE_APPROVAL: approval} if approval is not None else {}
    return {"metadata": {"namespace": namespace, "name": name, "annotations": annotations},
            "spec": {"scheduleConfig": {"source": data}}}


def approval(data: dict[str, Any], namespace: str = "team-a", name: str = "t", key: bytes = KEY) -> str:
    approved = subject(source(data))
    assert approved is not None
    return sign(key, namespace, name, approved, ADMIN)


OTHER_URL = {"http": {**TOKEN["http"], "url": "https://attacker.example.net/collect"}}
OTHER_SECRET = {"http": {**TOKEN["http"], "tokenSecret": {"name": "admin-token", "key": "token"}}}


@pytest.mark.parametrize(("body", "data", "key", "required", "refused"), [
    pytest.param(trigger(TOKEN, approval=approval(TOKEN)), TOKEN, KEY, True, None, id="approved"),
    pytest.param(trigger(CONFIG_MAP, approval=approval(CONFIG_MAP)), CONFIG_MAP, KEY, True, None, id="approved-cm"),
    pytest.param(trigger(TOKEN), TOKEN, KEY, True, "not approved", id="no-annotation"),
    pytest.param(trigger(TOKEN, approval="v2.forged"), TOKEN, KEY, True, "not approved", id="forged"),
    pytest.param(trigger(TOKEN, approval=approval(TOKEN).replace("v2.", "v1.", 1)), TOKEN, KEY, True, "not approved",
                 id="v1-never-released"),
    pytest.param(trigger(TOKEN, approval=approval(TOKEN).replace(ADMIN, requester(Identity("bob")))), TOKEN,
                 KEY, True, "not approved", id="requester-swapped"),
    pytest.param(trigger(TOKEN, approval=approval(TOKEN, name="other")), TOKEN, KEY, True, "not approved",
                 id="copied-from-another-trigger"),
    pytest.param(trigger(TOKEN, approval=approval(TOKEN, namespace="team-b")), TOKEN, KEY, True, "not approved",
                 id="copied-from-another-namespace"),
    pytest.param(trigger(OTHER_URL, approval=approval(TOKEN)), OTHER_URL, KEY, True, "not approved",
                 id="url-changed"),
    pytest.param(trigger(OTHER_SECRET, approval=approval(TOKEN)), OTHER_SECRET, KEY, True, "not approved",
                 id="secret-changed"),
    pytest.param(trigger(TOKEN, approval=approval(TOKEN, key=b"x" * 32)), TOKEN, KEY, True, "not approved",
                 id="signed-with-another-key"),
    pytest.param(trigger(TOKEN, approval=approval(TOKEN)), TOKEN, None, True, "no approval key", id="no-key"),
    pytest.param(trigger(TOKEN), TOKEN, None, False, None, id="not-required"),
    pytest.param(trigger({"http": {"url": "https://x.example.com/"}}), {"http": {"url": "https://x.example.com/"}},
                 KEY, True, None, id="nothing-to-approve"),
])
def test_the_controller_reads_only_what_was_approved_for_this_trigger(
        body: dict[str, Any], data: dict[str, Any], key: bytes | None, required: bool, refused: str | None) -> None:
    message = refusal(body, source(data), key, required)
    if refused is None:
        assert message is None
    else:
        assert message is not None and refused in message, message
        assert message.startswith("spec.scheduleConfig.source.") and ": not approved: " in message


def test_the_refusal_names_the_field_and_what_to_do() -> None:
    assert refusal(trigger(TOKEN), source(TOKEN), KEY, True) == (
        "spec.scheduleConfig.source.http.tokenSecret: not approved: the operator reads Secret s only for an author "
        "who may get it; write the Trigger again (create or update) with the admission webhooks running, as a user "
        "who may get Secret s")
    assert "spec.scheduleConfig.source.configMap: not approved" in str(refusal(trigger(CONFIG_MAP), source(CONFIG_MAP),
                                                                               KEY, True))
    assert "Index i (example.io/v1)" in str(refusal(trigger(OBJECT), source(OBJECT), KEY, True))


def test_signatures_are_versioned_bound_to_the_requester_and_keys_checked() -> None:
    approved = {"kind": "ConfigMap", "name": "stats"}
    signature = sign(KEY, "a", "b/c", approved, ADMIN)
    assert signature.startswith(f"v2.{ADMIN}.") and requester_of(signature) == ADMIN
    assert verify(KEY, "a", "b/c", approved, signature)  # the controller: for whoever it names
    assert verify(KEY, "a", "b/c", approved, signature, by=ADMIN)  # the validating webhook: for this user
    assert not verify(KEY, "a", "b/c", approved, signature, by=requester(Identity("admin")))
    assert not verify(KEY, "a/b", "c", approved, signature)  # no concatenation of fields mimics another
    assert requester_of("v1." + "0" * 64) is None and requester_of(f"v2.{ADMIN}.") is None
    assert check_key(KEY + b"\n") == KEY
    with pytest.raises(ValueError, match="fewer than 16"):
        check_key(b"short\n")


@pytest.mark.parametrize(("other", "same"), [
    pytest.param({"username": "alice", "uid": "1", "groups": ["devs", "system:authenticated"],
                  "extra": {"x": ["b", "a"]}}, True, id="same-user-groups-and-extra-in-another-order"),
    pytest.param({"username": "alice", "uid": "1", "groups": ["devs", "system:authenticated", "system:masters"],
                  "extra": {"x": ["a", "b"]}}, False, id="a-group-added"),
    pytest.param({"username": "bob", "uid": "1", "groups": ["system:authenticated", "devs"],
                  "extra": {"x": ["a", "b"]}}, False, id="another-username"),
    pytest.param({"username": "alice", "uid": "2", "groups": ["system:authenticated", "devs"],
                  "extra": {"x": ["a", "b"]}}, False, id="another-uid"),
    pytest.param({"username": "alice", "uid": "1", "groups": ["system:authenticated", "devs"],
                  "extra": {"x": ["a", "c"]}}, False, id="other-extra"),
    # The forged review of the second review: an extra key RBAC is asked about (the webhook's one
    # Identity carries it to the SubjectAccessReview) names another requester.
    pytest.param({"username": "alice", "uid": "1", "groups": ["system:authenticated", "devs"],
                  "extra": {"x": ["a", "b"], "scopes.example.io/grant": ["secrets:read"]}}, False,
                 id="an-extra-key-added"),
    pytest.param({"username": "alice", "uid": "1", "groups": ["system:authenticated", "devs"]}, False,
                 id="no-extra"),
])
def test_the_requester_is_everything_rbac_answers_on(other: dict[str, Any], same: bool) -> None:
    """The digest of the one Identity the webhook parses from userInfo and asks RBAC about."""
    alice = {"username": "alice", "uid": "1", "groups": ["system:authenticated", "devs"], "extra": {"x": ["a", "b"]}}
    digest = requester(Identity.from_user_info(other))
    assert (digest == requester(Identity.from_user_info(alice))) is same
    assert len(digest) == 32 and not digest.strip("0123456789abcdef")

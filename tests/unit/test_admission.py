"""Admission decisions for Triggers (pure), and the webhook routes on a fake cluster: source
approvals asked of RBAC as the requester and admitted only for the user of the request, the
creator kept on updates, malformed reviews refused before any question."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.unit.conftest import at, cron_spec, job_template
from tests.unit.fake_cluster import FakeCluster
from trigger_operator.admission.approval import requester, sign, subject
from trigger_operator.admission.review import Decision, malformed, mutate, response, validate
from trigger_operator.api import ANNOTATION_CREATED_BY, ANNOTATION_SOURCE_APPROVAL
from trigger_operator.jobs.catalog import merge_sources
from trigger_operator.kube.interface import Identity
from trigger_operator.model.spec import ConditionSource
from trigger_operator.web.admission import add_admission_routes

CATALOG = ["cluster", "taxonomy_enrichment"]
ALICE_USER = Identity("alice", groups=("devs",))  # request()'s user, as the webhook parses it


def request(spec: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "t"} | ({"annotations": annotations} if annotations is not None else {})
    return {"uid": "req-1", "operation": operation, "namespace": "team-a",
            "kind": {"group": "trigger-operator.io", "version": "v1alpha1", "kind": "Trigger"},
            "resource": {"group": "trigger-operator.io", "version": "v1alpha1", "resource": "triggers"},
            "userInfo": {"username": "alice", "groups": ["devs"]},
            "object": {"metadata": meta, "spec": spec}, "oldObject": {"spec": old} if old is not None else None}


def without_template(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "jobTemplate"}


@pytest.mark.parametrize(("spec", "says"), [
    pytest.param(cron_spec("61 * * * *"), "spec.scheduleConfig.cronExpression: minute field", id="minute-61"),
    pytest.param(cron_spec(timezone="Mars/Base"), "spec.scheduleConfig.timezone", id="unknown-zone"),
    pytest.param(cron_spec("0 0 30 2 *"), "never fires", id="never-fires"),
    pytest.param(without_template({**cron_spec(), "actionType": "batch_rerun"}),
                 "spec.actionType: no Job template for action type 'batch_rerun'", id="no-template"),
    pytest.param({**cron_spec(), "scheduleConfig": {"cronExpression": "0 2 * * *", "timezon": "UTC"}},
                 "spec.scheduleConfig.timezon", id="a-misspelt-field"),
])
def test_what_the_schema_cannot_refuse_is_refused_naming_the_field(spec: dict[str, Any], says: str) -> None:
    decision = validate(request(spec), ALICE_USER, action_types=CATALOG, now=at())
    assert not decision.allowed and says in decision.message
    answer = response(request(spec), decision)["response"]
    assert answer["allowed"] is False and answer["status"]["code"] == 422 and answer["uid"] == "req-1"


SEED_CONDITIONAL = {"actionType": "cluster", "actionConfig": {"cluster_id": "clust_abc123"},
                    "triggerType": "conditional",
                    "scheduleConfig": {"conditionType": "drift", "metric": "cosine_drift", "threshold": 0.3,
                                       "checkIntervalSeconds": 3600}}
DEFAULTS, _ = merge_sources({}, {"cluster.sources": "drift:\n  configMap: {name: trigger-metrics, key: "
                                                    "'{cluster_id}.centroid'}\n"})


@pytest.mark.parametrize(("spec", "sources", "says"), [
    pytest.param(SEED_CONDITIONAL, DEFAULTS, None, id="the-seeds-body-with-a-default"),
    pytest.param(SEED_CONDITIONAL, {}, "spec.scheduleConfig.source: is required: the actions ConfigMap has no ",
                 id="no-default-in-the-catalog"),  # its wording is jobs/catalog.py's
    pytest.param({**SEED_CONDITIONAL, "actionConfig": {}}, DEFAULTS, "spec.actionConfig.cluster_id",
                 id="a-placeholder-the-action-config-lacks"),
    pytest.param({**SEED_CONDITIONAL, "actionConfig": {"cluster_id": "a b"}}, DEFAULTS, "spec.actionConfig.cluster_id",
                 id="a-placeholder-value-that-cannot-fill-it"),
])
def test_a_conditional_trigger_naming_no_source_needs_the_catalogs_default_at_apply(
        spec: dict[str, Any], sources: Any, says: str | None) -> None:
    """Refused at `kubectl apply`, naming the field, rather than admitted and made Invalid later."""
    decision = validate(request(spec), ALICE_USER, action_types=CATALOG, now=at(), default_sources=sources)
    assert decision.allowed is (says is None)
    if says is not None:
        assert decision.message.startswith(says), decision.message


def test_a_good_trigger_is_allowed_and_only_its_own_new_template_needs_job_rights() -> None:
    plain = validate(request(without_template(cron_spec())), ALICE_USER, action_types=CATALOG, now=at())
    assert plain.allowed and not plain.needs_job_rights
    own = validate(request(cron_spec()), ALICE_USER, action_types=CATALOG, now=at())
    assert own.allowed and own.needs_job_rights
    unchanged = validate(request(cron_spec(), "UPDATE", old=cron_spec()), ALICE_USER, action_types=CATALOG, now=at())
    assert unchanged.allowed and not unchanged.needs_job_rights  # e.g. a pause by someone without Job rights
    changed = {**cron_spec(), "jobTemplate": {**job_template(), "metadata": {"labels": {"x": "y"}}}}
    moved = validate(request(changed, "UPDATE", old=cron_spec()), ALICE_USER, action_types=CATALOG, now=at())
    assert moved.needs_job_rights


def test_the_creator_is_recorded_as_an_annotation_on_create_only() -> None:
    for present, path in [(None, "/metadata/annotations"),
                              ({"team": "data"}, "/metadata/annotations/trigger-operator.io~1created-by")]:
        decision = mutate(request(cron_spec(), annotations=present), ALICE_USER)
        [op] = decision.patch
        assert op["path"] == path and decision.allowed
        patch = json.loads(base64.b64decode(response(request(cron_spec()), decision)["response"]["patch"]))
        assert patch == decision.patch
    assert mutate(request(cron_spec(), "UPDATE"), ALICE_USER).patch == []


@pytest.mark.parametrize(("old", "new", "patch"), [
    pytest.param({ANNOTATION_CREATED_BY: "carol"}, {ANNOTATION_CREATED_BY: "mallory"},
                 [{"op": "add", "path": "/metadata/annotations/trigger-operator.io~1created-by", "value": "carol"}],
                 id="rewritten-is-restored"),
    pytest.param({ANNOTATION_CREATED_BY: "carol"}, {"team": "data"},
                 [{"op": "add", "path": "/metadata/annotations/trigger-operator.io~1created-by", "value": "carol"}],
                 id="dropped-is-restored"),
    pytest.param({}, {ANNOTATION_CREATED_BY: "mallory", "team": "data"},
                 [{"op": "remove", "path": "/metadata/annotations/trigger-operator.io~1created-by"}],
                 id="added-where-there-was-none-is-removed"),
    pytest.param({ANNOTATION_CREATED_BY: "carol"}, {ANNOTATION_CREATED_BY: "carol"}, [], id="kept-is-left-alone"),
])
def test_an_update_never_rewrites_the_creator(old: dict[str, str], new: dict[str, str],
                                              patch: list[dict[str, Any]]) -> None:
    made = request(cron_spec(), "UPDATE", annotations=new)
    made["oldObject"] = {"metadata": {"name": "t", "annotations": old}, "spec": cron_spec()}
    decision = mutate(made, ALICE_USER)
    assert decision.allowed and decision.patch == patch


KEY = b"k" * 32
TOKEN = {"http": {"url": "https://metrics.example.com/doc", "tokenSecret": {"name": "s", "key": "token"}}}
CONFIG_MAP = {"configMap": {"name": "stats", "key": "centroid"}}
OBJECT = {"object": {"apiVersion": "example.io/v1", "kind": "Index", "name": "i", "fieldPath": ".status.drift"}}
NODE = {"object": {"apiVersion": "v1", "kind": "Node", "name": "n1", "fieldPath": ".status.capacity.cpu"}}


def conditional(source: dict[str, Any]) -> dict[str, Any]:
    return {"actionType": "cluster", "triggerType": "conditional", "scheduleConfig": {
        "conditionType": "threshold", "metric": "m", "threshold": 1, "checkIntervalSeconds": 60, "source": source}}


ALICE = requester(ALICE_USER)
# What a pod gets back for a review it forged: alice, with a group that may get anything.
FORGED = requester(Identity("alice", groups=("devs", "system:masters")))


def approval_of(source: dict[str, Any], name: str = "t", by: str = ALICE) -> str:
    approved = subject(ConditionSource.model_validate(source))
    assert approved is not None
    return sign(KEY, "team-a", name, approved, by)


def annotations_after(decision: Any, before: dict[str, str] | None) -> dict[str, str]:
    """The annotations a JSON patch leaves (the ops mutate() emits: add and remove)."""
    result = dict(before or {})
    for op in decision.patch:
        if op["path"] == "/metadata/annotations":
            result = dict(op["value"])
        elif op["path"].startswith("/metadata/annotations/"):
            k = op["path"].rpartition("/")[2].replace("~1", "/").replace("~0", "~")
            if op["op"] == "remove":
                del result[k]
            else:
                result[k] = op["value"]
    return result


def update(spec: dict[str, Any], old: dict[str, Any], annotations: dict[str, str],
           old_annotations: dict[str, str]) -> dict[str, Any]:
    made = request(spec, "UPDATE", annotations=annotations)
    made["oldObject"] = {"metadata": {"name": "t", "annotations": old_annotations}, "spec": old}
    return made


OTHER_URL = {"http": {**TOKEN["http"], "url": "https://attacker.example.net/collect"}}
PLAIN = {"http": {"url": "https://metrics.example.com/doc"}}


@pytest.mark.parametrize(("made", "ask", "approval"), [
    pytest.param(request(conditional(TOKEN)), "secrets s", approval_of(TOKEN), id="create-token-asks"),
    pytest.param(request(conditional(CONFIG_MAP)), "configmaps stats", approval_of(CONFIG_MAP), id="create-cm-asks"),
    pytest.param(request(conditional(OBJECT)), " i", approval_of(OBJECT), id="create-object-asks"),
    pytest.param(request(conditional(PLAIN), annotations={ANNOTATION_SOURCE_APPROVAL: "v1.x"}), None, None,
                 id="nothing-to-approve-removes-a-stale-one"),
    pytest.param(request(conditional(TOKEN), annotations={ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)}),
                 "secrets s", approval_of(TOKEN), id="an-approval-in-the-request-is-never-trusted"),
    pytest.param(update(conditional(TOKEN), conditional(TOKEN), {}, {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)}),
                 None, approval_of(TOKEN), id="unchanged-keeps-the-old-approval"),
    pytest.param(update(conditional(OTHER_URL), conditional(TOKEN), {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)},
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)}),
                 "secrets s", approval_of(OTHER_URL), id="a-changed-url-asks-again"),
    pytest.param(update(conditional(TOKEN), conditional(TOKEN), {},
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN, "x")}),
                 "secrets s", approval_of(TOKEN), id="unchanged-but-copied-asks"),
    pytest.param(update(conditional(PLAIN), conditional(TOKEN), {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)},
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)}), None, None, id="token-removed"),
])
def test_the_mutating_webhook_recomputes_the_approval(made: dict[str, Any], ask: str | None,
                                                      approval: str | None) -> None:
    decision = mutate(made, ALICE_USER, KEY)
    assert decision.allowed
    asked = decision.ask and f"{decision.ask.resource} {decision.ask.name}"
    assert (asked is None) == (ask is None) and (ask is None or ask in str(asked))
    before = made["object"]["metadata"].get("annotations")
    assert annotations_after(decision, before).get(ANNOTATION_SOURCE_APPROVAL) == approval


def test_without_a_key_the_mutating_webhook_only_records_the_creator() -> None:
    decision = mutate(request(conditional(TOKEN)), ALICE_USER)
    assert decision.ask is None and annotations_after(decision, None) == {"trigger-operator.io/created-by": "alice"}


def test_a_trigger_created_with_generate_name_is_named_by_the_webhook_so_its_approval_binds() -> None:
    made = request(conditional(CONFIG_MAP))
    made["object"]["metadata"] = {"generateName": "trg-"}
    decision = mutate(made, ALICE_USER, KEY, name_suffix="abcde")
    assert {"op": "add", "path": "/metadata/name", "value": "trg-abcde"} in decision.patch
    assert annotations_after(decision, None)[ANNOTATION_SOURCE_APPROVAL] == approval_of(CONFIG_MAP, "trg-abcde")


def mutated(made: dict[str, Any]) -> dict[str, Any]:
    """``made`` as the validating webhook sees it after the mutating webhook answered it."""
    after: dict[str, Any] = json.loads(json.dumps(made))
    after["object"]["metadata"]["annotations"] = annotations_after(mutate(made, ALICE_USER, KEY),
                                                                   made["object"]["metadata"].get("annotations"))
    return after


def with_approval(made: dict[str, Any], signature: str) -> dict[str, Any]:
    """``made`` carrying ``signature``, as when the mutating webhook did not run."""
    made["object"]["metadata"]["annotations"] = {ANNOTATION_SOURCE_APPROVAL: signature}
    return made


PAUSED = {**conditional(TOKEN), "state": "paused"}


@pytest.mark.parametrize(("made", "key", "allowed"), [
    pytest.param(mutated(request(conditional(TOKEN))), KEY, True, id="create-approved-by-the-mutating-webhook"),
    pytest.param(mutated(request(conditional(OBJECT))), KEY, True, id="create-object-approved"),
    pytest.param(with_approval(request(conditional(TOKEN)), approval_of(TOKEN, by=FORGED)), KEY, False,
                 id="create-with-a-forged-reviews-approval"),
    pytest.param(request(conditional(TOKEN)), KEY, False, id="create-without-the-mutating-webhook"),
    pytest.param(with_approval(request(conditional(TOKEN)), approval_of(TOKEN, name="other")), KEY, False,
                 id="create-with-an-approval-copied-from-another-trigger"),
    pytest.param(with_approval(request(conditional(TOKEN)), "v1." + "0" * 64), KEY, False, id="create-with-v1"),
    pytest.param(update(PAUSED, conditional(TOKEN), {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN, by=FORGED)},
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN, by=FORGED)}), KEY, True,
                 id="update-leaving-source-and-approval-unchanged"),
    # The mutating webhook's rule (kept_approval): an unchanged approval is kept only when it
    # verifies for this Trigger; one copied from another is made anew, so it is not admitted as is.
    pytest.param(update(PAUSED, conditional(TOKEN), {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN, name="other")},
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN, name="other")}), KEY, False,
                 id="update-leaving-a-copied-approval-unchanged"),
    pytest.param(update(PAUSED, conditional(TOKEN), {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)},
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)}), b"o" * 32, False,
                 id="update-leaving-an-approval-of-another-key-unchanged"),
    pytest.param(update(conditional(OTHER_URL), conditional(TOKEN), {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)},
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)}), KEY, False,
                 id="update-changing-the-url-with-the-old-approval"),
    pytest.param(update(conditional(TOKEN), conditional(TOKEN),
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN, by=FORGED)},
                        {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN, name="other")}), KEY, False,
                 id="update-swapping-in-a-forged-approval"),
    pytest.param(mutated(update(conditional(OTHER_URL), conditional(TOKEN), {},
                                {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)})), KEY, True,
                 id="update-changing-the-url-approved-anew"),
    pytest.param(with_approval(request(conditional(TOKEN)), approval_of(TOKEN, by=FORGED)), None, True,
                 id="approval-not-required-checks-nothing"),
    pytest.param(with_approval(request(conditional(PLAIN)), "v1.anything"), KEY, True,
                 id="a-source-read-with-no-rights-checks-nothing"),
])
def test_the_validating_webhook_admits_only_an_approval_made_for_this_requests_user(
        made: dict[str, Any], key: bytes | None, allowed: bool) -> None:
    decision = validate(made, ALICE_USER, action_types=CATALOG, now=at(), approval_key=key)
    assert decision.allowed is allowed, decision.message
    if not allowed:
        assert decision.message.startswith(
            "metadata.annotations[trigger-operator.io/source-approval]: not made by the operator's mutating webhook "
            "for this request's user and spec.scheduleConfig.source."), decision.message
        assert "(the mutating webhook did not run, or the approval was copied or forged)" in decision.message
        assert response(made, decision)["response"]["status"]["code"] == 403


def test_the_approval_check_comes_after_the_spec_and_before_the_job_rights() -> None:
    bad = with_approval(request({**conditional(TOKEN), "actionType": "nope"}), "")
    assert "spec.actionType" in validate(bad, ALICE_USER, action_types=CATALOG, now=at(), approval_key=KEY).message
    own = mutated(request({**conditional(TOKEN), "jobTemplate": job_template()}))
    assert validate(own, ALICE_USER, action_types=CATALOG, now=at(), approval_key=KEY) == Decision(
        True, needs_job_rights=True)


def review(made: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": made}


@pytest.fixture
def webhooks() -> tuple[TestClient, FakeCluster]:
    cluster = FakeCluster(clock=at)
    cluster.kinds = {"Index": ("indexes", True), "Node": ("nodes", False)}
    app = FastAPI()
    add_admission_routes(app, api=cluster, action_types=lambda: CATALOG, clock=at, approval_key=KEY)
    return TestClient(app), cluster


@pytest.mark.parametrize(("source", "grant", "field"), [
    pytest.param(TOKEN, ("alice", "team-a", "get", "secrets/*s"), "spec.scheduleConfig.source.http.tokenSecret",
                 id="token"),
    pytest.param(CONFIG_MAP, ("alice", "team-a", "get", "configmaps/*stats"), "spec.scheduleConfig.source.configMap",
                 id="configMap"),
    pytest.param(OBJECT, ("alice", "team-a", "get", "indexes"), "spec.scheduleConfig.source.object", id="object"),
])
def test_a_source_is_approved_only_for_a_requester_who_may_get_it(
        webhooks: tuple[TestClient, FakeCluster], source: dict[str, Any], grant: tuple[str, str, str, str],
        field: str) -> None:
    client, cluster = webhooks
    denied = client.post("/admission/mutate", json=review(request(conditional(source)))).json()["response"]
    assert denied["allowed"] is False and denied["status"]["code"] == 403
    assert denied["status"]["message"].startswith(f"{field}: alice may not get ")
    assert cluster.called("review_access") == 1
    cluster.grants.add(grant)
    allowed = client.post("/admission/mutate", json=review(request(conditional(source)))).json()["response"]
    patch = json.loads(base64.b64decode(allowed["patch"]))
    assert allowed["allowed"] is True
    assert patch[0]["value"][ANNOTATION_SOURCE_APPROVAL] == approval_of(source)


def test_an_unchanged_approved_source_asks_nothing_and_a_cluster_scoped_kind_is_refused(
        webhooks: tuple[TestClient, FakeCluster]) -> None:
    client, cluster = webhooks
    kept = update(conditional(TOKEN), conditional(TOKEN), {}, {ANNOTATION_SOURCE_APPROVAL: approval_of(TOKEN)})
    assert client.post("/admission/mutate", json=review(kept)).json()["response"]["allowed"] is True
    cluster.grants.add(("alice", "team-a", "get", "nodes/*n1"))
    node = client.post("/admission/mutate", json=review(request(conditional(NODE)))).json()["response"]
    assert node["allowed"] is False and "Node is cluster-scoped" in node["status"]["message"]
    assert cluster.called("review_access") == 0


def broken(change: Any) -> dict[str, Any]:
    whole = review(request(conditional(TOKEN)))
    change(whole)
    return whole


@pytest.mark.parametrize("body", [
    pytest.param(broken(lambda r: r.update(apiVersion="admission.k8s.io/v1beta1")), id="old-api-version"),
    pytest.param(broken(lambda r: r.update(kind="TokenReview")), id="not-an-admission-review"),
    pytest.param(broken(lambda r: r.pop("request")), id="no-request"),
    pytest.param(broken(lambda r: r["request"].pop("uid")), id="no-uid"),
    pytest.param(broken(lambda r: r["request"].update(kind={"group": "", "kind": "Secret"})), id="not-a-trigger"),
    pytest.param(broken(lambda r: r["request"].update(resource={"group": "", "resource": "secrets"})),
                 id="not-triggers"),
    pytest.param(broken(lambda r: r["request"].update(operation="ASK")), id="unknown-operation"),
    pytest.param(broken(lambda r: r["request"].update(userInfo={})), id="no-username"),
    # The forged review of the second review: extra as a list of pairs, which the access check
    # read as {"k": ["v"]} while the approval's digest ignored it.
    pytest.param(broken(lambda r: r["request"]["userInfo"].update(extra=[["k", ["v"]]])), id="extra-a-list-of-pairs"),
    pytest.param(broken(lambda r: r["request"]["userInfo"].update(extra={"k": "v"})), id="extra-value-a-string"),
    pytest.param(broken(lambda r: r["request"]["userInfo"].update(extra={"k": [1]})), id="extra-value-not-strings"),
    pytest.param(broken(lambda r: r["request"]["userInfo"].update(extra=None)), id="extra-null"),
    pytest.param(broken(lambda r: r["request"]["userInfo"].update(groups="system:masters")), id="groups-a-string"),
    pytest.param(broken(lambda r: r["request"]["userInfo"].update(groups=["devs", ["system:masters"]])),
                 id="a-group-not-a-string"),
    pytest.param(broken(lambda r: r["request"]["userInfo"].update(uid=7)), id="uid-a-number"),
    pytest.param(broken(lambda r: r["request"]["userInfo"].update(username=["alice"])), id="username-a-list"),
    pytest.param(broken(lambda r: r["request"].update(userInfo=["alice"])), id="user-info-a-list"),
    pytest.param(broken(lambda r: r["request"].pop("object")), id="no-object"),
    pytest.param([1, 2], id="a-list"),
])
def test_a_malformed_review_gets_400_and_no_rbac_question(webhooks: tuple[TestClient, FakeCluster],
                                                          body: Any) -> None:
    client, cluster = webhooks
    for path in ("/admission/mutate", "/admission/validate"):
        answer = client.post(path, json=body)
        assert answer.status_code == 400, answer.text
        assert "not an AdmissionReview about a Trigger" in answer.json()["detail"]
    assert client.post("/admission/mutate", content=b"{not json").status_code == 400
    assert cluster.called("review_access") == 0 and cluster.called("resource_of") == 0


def test_a_well_formed_review_is_answered() -> None:
    assert malformed(review(request(conditional(TOKEN)))) is None
    full = review(request(conditional(TOKEN)))
    full["request"]["userInfo"] = {"username": "alice", "uid": "u1", "groups": ["devs", "system:authenticated"],
                                   "extra": {"scopes.example.io/grant": ["secrets:read"], "empty": []}}
    assert malformed(full) is None


@pytest.mark.parametrize(("user_info", "says"), [
    pytest.param({"username": "alice", "extra": [["k", ["v"]]]}, "request.userInfo.extra: expected an object",
                 id="extra-pairs"),
    pytest.param({"username": "alice", "extra": {"k": ["v", 2]}}, "request.userInfo.extra[k]: expected a list",
                 id="extra-value"),
    pytest.param({"username": "alice", "groups": ["devs", 3]}, "request.userInfo.groups[1]: expected a string",
                 id="group"),
    pytest.param({"username": "alice", "uid": None}, "request.userInfo.uid: expected a string", id="uid-null"),
])
def test_a_malformed_user_info_is_named(user_info: dict[str, Any], says: str) -> None:
    made = review(request(conditional(TOKEN)))
    made["request"]["userInfo"] = user_info
    assert str(malformed(made)).startswith(says), malformed(made)


def test_an_approval_from_a_forged_review_is_refused_by_the_validating_webhook(
        webhooks: tuple[TestClient, FakeCluster]) -> None:
    client, cluster = webhooks
    cluster.grants.add(("admin", "team-a", "get", "secrets/*s"))
    forged = request(conditional(TOKEN))
    forged["userInfo"] = {"username": "admin", "groups": ["system:masters"]}  # what any pod may send
    answer = client.post("/admission/mutate", json=review(forged)).json()["response"]
    assert answer["allowed"] is True
    signature = json.loads(base64.b64decode(answer["patch"]))[0]["value"][ANNOTATION_SOURCE_APPROVAL]
    # alice writes it on her Trigger while the mutating webhook does not run: the API server tells
    # the validating webhook who she is.
    refused = client.post("/admission/validate", json=review(with_approval(request(conditional(TOKEN)), signature)))
    assert refused.json()["response"]["allowed"] is False
    assert refused.json()["response"]["status"]["code"] == 403
    # Her own write, through both webhooks, once she may get the Secret.
    cluster.grants.add(("alice", "team-a", "get", "secrets/*s"))
    made = request(conditional(TOKEN))
    patched = client.post("/admission/mutate", json=review(made)).json()["response"]
    made["object"]["metadata"]["annotations"] = json.loads(base64.b64decode(patched["patch"]))[0]["value"]
    assert client.post("/admission/validate", json=review(made)).json()["response"]["allowed"] is True

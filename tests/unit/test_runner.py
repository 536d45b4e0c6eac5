"""``trigger-operator act`` as a process against a local HTTP server that succeeds, fails, is
unavailable for a while and times out."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from trigger_operator.runner import BadConfiguration, fill_url

ROOT = Path(__file__).resolve().parents[2]


class Platform:
    """Answers each POST with the next of ``answers`` (status, or "sleep" to time out), the last one for ever."""

    def __init__(self) -> None:
        self.answers: list[int | str] = [200]
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                platform.requests.append((self.path, dict(self.headers), body))
                answer = platform.answers.pop(0) if len(platform.answers) > 1 else platform.answers[0]
                if answer == "sleep":
                    time.sleep(2)
                    answer = 200
                payload = b'{"task_id": "task_1"}' if answer == 200 else b'{"error": "cluster clust_x not found"}'
                self.send_response(int(answer))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def platform() -> Iterator[Platform]:
    p = Platform()
    yield p
    p.server.shutdown()


def act(platform: Platform, tmp_path: Path, **env: str) -> tuple[int, str]:
    log = tmp_path / "termination-log"
    environment = {"PATH": os.environ["PATH"],
                   "TRIGGER_ACTION_URL": f"{platform.url}/v1/clusters/{{cluster_id}}/execute",
                   "TRIGGER_ACTION_TYPE": "cluster", "TRIGGER_ACTION_CONFIG": '{"cluster_id": "clust_abc123"}',
                   "TRIGGER_NAME": "daily", "TRIGGER_NAMESPACE": "team-a", "TRIGGER_EXECUTION_ID": "daily-1772445600",
                   "TRIGGER_SCHEDULED_TIME": "2026-03-02T10:00:00Z", "TRIGGER_RUN_KIND": "scheduled",
                   "TRIGGER_ACTION_BACKOFF_SECONDS": "0.05", "TRIGGER_TERMINATION_LOG": str(log), **env}
    done = subprocess.run([sys.executable, "-m", "trigger_operator", "act"], env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, log.read_text() if log.exists() else ""


def test_a_successful_action_posts_the_run_once_and_exits_0(platform: Platform, tmp_path: Path) -> None:
    code, message = act(platform, tmp_path, TRIGGER_ACTION_TOKEN="tok-1")
    assert (code, message) == (0, "")
    [(path, headers, body)] = platform.requests
    assert path == "/v1/clusters/clust_abc123/execute"
    assert headers["Authorization"] == "Bearer tok-1" and headers["Idempotency-Key"] == "daily-1772445600"
    assert body["action_config"] == {"cluster_id": "clust_abc123"} and body["trigger"] == {"name": "daily",
                                                                                          "namespace": "team-a"}


def test_an_unavailable_platform_is_retried_with_backoff(platform: Platform, tmp_path: Path) -> None:
    platform.answers = [503, 502, 200]
    code, _ = act(platform, tmp_path)
    assert code == 0 and len(platform.requests) == 3
    assert len({r[1]["Idempotency-Key"] for r in platform.requests}) == 1  # the same key on every attempt


def test_a_refusal_is_final_and_its_reason_is_the_termination_message(platform: Platform, tmp_path: Path) -> None:
    platform.answers = [404]
    code, message = act(platform, tmp_path)
    assert code == 1 and len(platform.requests) == 1
    assert "HTTP 404" in message and "cluster clust_x not found" in message


def test_a_platform_that_never_answers_in_time_fails_after_the_attempts(platform: Platform, tmp_path: Path) -> None:
    platform.answers = ["sleep"]
    code, message = act(platform, tmp_path, TRIGGER_ACTION_TIMEOUT_SECONDS="0.3", TRIGGER_ACTION_ATTEMPTS="2")
    assert code == 1 and len(platform.requests) == 2
    assert "no answer within 0.3 s" in message and "gave up after 2 attempts" in message


def test_a_missing_url_is_a_configuration_error(platform: Platform, tmp_path: Path) -> None:
    code, message = act(platform, tmp_path, TRIGGER_ACTION_URL="")
    assert code == 2 and "TRIGGER_ACTION_URL" in message and platform.requests == []


# --- URL templates (issue 17, finding 8): the template is the admin's, the values a Trigger author's ----

TEMPLATE = "https://api.example.com/v1/clusters/{cluster_id}/execute"


@pytest.mark.parametrize(("value", "path"), [
    pytest.param("clust_abc123", "/v1/clusters/clust_abc123/execute", id="plain"),
    pytest.param("col-1.v2~x", "/v1/clusters/col-1.v2~x/execute", id="every-unreserved-character"),
    pytest.param(42, "/v1/clusters/42/execute", id="a-number"),
])
def test_a_value_fills_one_path_segment_and_the_url_keeps_its_origin(value: Any, path: str) -> None:
    url = fill_url(TEMPLATE, {"cluster_id": value}, namespace="team-a")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.query, parts.fragment) == (
        "https", "api.example.com", path, "", "")


@pytest.mark.parametrize("value", [
    pytest.param("..", id="dot-dot"),
    pytest.param(".", id="dot"),
    pytest.param("", id="empty"),
    pytest.param("...", id="three-dots"),
    pytest.param("a..b", id="dots-inside"),
    # Percent-encoded, these reach a server or proxy that decodes %2F before it resolves '..' as
    # /v1/x (second review, M4): the platform's token would go with them.
    pytest.param("a/../../x", id="slashes-and-dots"),
    pytest.param("x/../../admin/tenants/team-b/purge?", id="the-issues-traversal"),
    pytest.param("x%2F..%2F..%2Fadmin", id="encoded-slashes"),
    pytest.param("%2e%2e", id="encoded-dots"),
    pytest.param("a#frag", id="fragment-injection"),
    pytest.param("a?admin=1", id="query-injection"),
    pytest.param("@evil.example.net", id="at-sign"),
    pytest.param("a;b", id="semicolon"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("clüster ☃", id="unicode-and-space"),
    pytest.param("\uff0e\uff0e", id="fullwidth-dots"),
    pytest.param(True, id="a-boolean"),
])
def test_a_path_value_outside_the_unreserved_characters_or_with_dot_dot_is_refused_naming_the_field(
        value: Any) -> None:
    with pytest.raises(BadConfiguration, match=r"^actionConfig\.cluster_id: "):
        fill_url(TEMPLATE, {"cluster_id": value}, namespace="team-a")


def test_a_path_value_is_refused_with_the_reason() -> None:
    with pytest.raises(BadConfiguration, match=r"^actionConfig\.cluster_id: 'a/\.\./\.\./x' cannot fill a URL path "
                                               r"segment of TRIGGER_ACTION_URL: .* letters, digits and - \. _ ~"):
        fill_url(TEMPLATE, {"cluster_id": "a/../../x"}, namespace="team-a")


def test_namespace_is_the_triggers_never_action_configs() -> None:
    template = "https://api.example.com/v1/namespaces/{namespace}/clusters/{cluster_id}/execute"
    url = fill_url(template, {"cluster_id": "c1", "namespace": "team-b"}, namespace="team-a")
    assert urlsplit(url).path == "/v1/namespaces/team-a/clusters/c1/execute"
    with pytest.raises(BadConfiguration, match=r"\{namespace\} is the Trigger's namespace, which is not known"):
        fill_url(template, {"cluster_id": "c1", "namespace": "team-b"}, namespace=None)


@pytest.mark.parametrize(("template", "value"), [
    pytest.param("https://api.example.com{tenant}/x", "@evil.example.net", id="at-after-the-host"),
    pytest.param("https://api.example.com{tenant}/x", ".evil.example.net", id="host-suffix"),
    pytest.param("https://{tenant}.example.com/x", "evil.example.net/", id="placeholder-in-the-host"),
    pytest.param("https://api.example.com:{tenant}/x", "8443", id="placeholder-in-the-port"),
    pytest.param("https://api.example.com:{tenant}/x", "443@evil", id="port-with-at"),
])
def test_a_url_that_would_leave_the_templates_origin_is_refused(template: str, value: str) -> None:
    # Refused by the origin check, or before it by the path rule (no '@', '/' or ':' in a segment).
    with pytest.raises(BadConfiguration, match=r"^actionConfig\.tenant: (filled into TRIGGER_ACTION_URL would leave "
                                               r"the template's origin/path|.* cannot fill a URL path segment)"):
        fill_url(template, {"tenant": value}, namespace="team-a")


@pytest.mark.parametrize(("value", "query"), [
    pytest.param("a&mode=purge#x", "cluster=a%26mode%3Dpurge%23x&mode=dry", id="query-injection"),
    pytest.param("a b/c", "cluster=a+b%2Fc&mode=dry", id="space-and-slash"),
    pytest.param("..", "cluster=..&mode=dry", id="dots-are-harmless-in-a-query"),
    pytest.param("", "cluster=&mode=dry", id="empty-is-allowed-in-a-query"),
])
def test_a_value_in_the_query_is_form_encoded(value: str, query: str) -> None:
    url = fill_url("https://api.example.com/v1/run?cluster={cluster_id}&mode=dry", {"cluster_id": value},
                   namespace="team-a")
    parts = urlsplit(url)
    assert (parts.netloc, parts.path, parts.query, parts.fragment) == ("api.example.com", "/v1/run", query, "")


@pytest.mark.parametrize(("template", "config", "says"), [
    pytest.param(TEMPLATE, {}, "actionConfig.cluster_id: is required by TRIGGER_ACTION_URL (a string or number)",
                 id="missing"),
    pytest.param(TEMPLATE, {"cluster_id": {"nested": 1}}, "actionConfig.cluster_id: is required by", id="not-a-scalar"),
    pytest.param("https://h/{cluster_id.__class__}", {"cluster_id": "a"}, "must name an actionConfig key",
                 id="attribute-access"),
    pytest.param("https://h/{cluster_id!r}", {"cluster_id": "a"}, "must name an actionConfig key", id="conversion"),
    pytest.param("https://h/{0}", {"cluster_id": "a"}, "must name an actionConfig key", id="positional"),
])
def test_a_template_or_config_that_cannot_be_filled_is_a_configuration_error(
        template: str, config: dict[str, Any], says: str) -> None:
    with pytest.raises(BadConfiguration, match=re.escape(says)):
        fill_url(template, config, namespace="team-a")


def test_the_issues_example_sends_nothing_and_says_why(platform: Platform, tmp_path: Path) -> None:
    config = json.dumps({"cluster_id": "x/../../admin/tenants/team-b/purge?"})
    code, message = act(platform, tmp_path, TRIGGER_ACTION_CONFIG=config, TRIGGER_ACTION_TOKEN="tok-1")
    assert code == 2 and platform.requests == []  # the token went nowhere
    assert message.startswith("actionConfig.cluster_id: ") and "cannot fill a URL path segment" in message


def test_the_runner_fills_namespace_from_trigger_namespace(platform: Platform, tmp_path: Path) -> None:
    code, _ = act(platform, tmp_path, TRIGGER_ACTION_URL=f"{platform.url}/v1/ns/{{namespace}}/clusters/{{cluster_id}}",
                  TRIGGER_ACTION_CONFIG='{"cluster_id": "c1", "namespace": "team-b"}')
    assert code == 0
    [(path, _, _)] = platform.requests
    assert path == "/v1/ns/team-a/clusters/c1"


def test_a_dot_dot_value_sends_nothing_and_exits_2(platform: Platform, tmp_path: Path) -> None:
    code, message = act(platform, tmp_path, TRIGGER_ACTION_CONFIG='{"cluster_id": ".."}', TRIGGER_ACTION_TOKEN="t")
    assert code == 2 and message.startswith("actionConfig.cluster_id: ") and platform.requests == []


@pytest.mark.parametrize(("action_type", "config", "path"), [
    pytest.param("retriever_execution", {"retriever_id": "ret_abc123", "inputs": {"query": "resistance bands"}},
                 "/v1/retrievers/ret_abc123/execute", id="retriever-execution"),
    pytest.param("alert_evaluation", {"alert_id": "alrt_1"}, "/v1/alerts/alrt_1/execute", id="alert-evaluation"),
])
def test_the_seeds_new_action_types_post_their_run(platform: Platform, tmp_path: Path, action_type: str,
                                                   config: dict[str, Any], path: str) -> None:
    kind, key = path.split("/")[2], next(iter(config))
    code, message = act(platform, tmp_path, TRIGGER_ACTION_TYPE=action_type, TRIGGER_ACTION_CONFIG=json.dumps(config),
                        TRIGGER_ACTION_URL=f"{platform.url}/v1/{kind}/{{{key}}}/execute")
    assert (code, message) == (0, "")
    [(sent_path, _, body)] = platform.requests
    assert sent_path == path and body["action_type"] == action_type and body["action_config"] == config


@pytest.mark.parametrize(("action_type", "config", "key"), [
    pytest.param("retriever_execution", {"inputs": {"query": "q"}}, "retriever_id", id="retriever-execution"),
    pytest.param("alert_evaluation", {}, "alert_id", id="alert-evaluation"),
    pytest.param("taxonomy_enrichment", {"taxonomy_id": "tax_1"}, "collection_id", id="taxonomy-enrichment"),
])
def test_a_run_without_a_key_its_action_type_needs_is_a_configuration_error_sent_nowhere(
        platform: Platform, tmp_path: Path, action_type: str, config: dict[str, Any], key: str) -> None:
    code, message = act(platform, tmp_path, TRIGGER_ACTION_TYPE=action_type, TRIGGER_ACTION_CONFIG=json.dumps(config),
                        TRIGGER_ACTION_URL=f"{platform.url}/v1/run")
    assert code == 2 and message.startswith(f"actionConfig.{key} is required for action type {action_type!r}")
    assert platform.requests == []

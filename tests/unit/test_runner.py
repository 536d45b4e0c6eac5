"""``trigger-operator act`` as a process against a local HTTP server that succeeds, fails, is
unavailable for a while and times out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

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

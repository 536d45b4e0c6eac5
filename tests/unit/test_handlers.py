"""The kopf registrations: only watch-event handlers (plus start-up and clean-up), which is what
makes the operator's no-copy essence storage safe and its writes status-only (README, GitOps)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kopf
import pytest

import trigger_operator.handlers as handlers

SOURCE = Path(handlers.__file__).read_text()


def test_only_event_startup_and_cleanup_handlers_are_registered() -> None:
    kinds = set(re.findall(r"@kopf\.on\.(\w+)\(", SOURCE))
    assert kinds == {"event", "startup", "cleanup"}


def test_the_essence_storage_copies_nothing() -> None:
    storage = handlers._WatchOnlyEssence(prefix="trigger-operator.io", key="last-handled-configuration", v1=False)
    body = kopf.Body({"metadata": {"name": "t"}, "spec": {"big": ["x"] * 1000}})
    assert storage.build(body=body) == {}


def test_tls_on_the_api_port_needs_both_a_certificate_and_a_key() -> None:
    from trigger_operator.config import ConfigurationError, HttpSettings
    from trigger_operator.web.server import api_tls

    assert api_tls(HttpSettings()) == ("", "")
    assert api_tls(HttpSettings(api_tls_cert="c.pem", api_tls_key="k.pem")) == ("c.pem", "k.pem")
    with pytest.raises(ConfigurationError, match="TRIGGER_OPERATOR_HTTP_API_TLS_KEY is set but "
                                                 "TRIGGER_OPERATOR_HTTP_API_TLS_CERT is not"):
        api_tls(HttpSettings(api_tls_key="k.pem"))


def test_the_operator_refuses_to_start_with_half_a_tls_pair_naming_the_settings() -> None:
    env = {**os.environ, "TRIGGER_OPERATOR_HTTP_API_TLS_CERT": "/nowhere/cert.pem"}
    env.pop("TRIGGER_OPERATOR_HTTP_API_TLS_KEY", None)
    done = subprocess.run([sys.executable, "-m", "trigger_operator", "run"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "TRIGGER_OPERATOR_HTTP_API_TLS_CERT is set but TRIGGER_OPERATOR_HTTP_API_TLS_KEY is not" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_webhook_port_has_no_rate_limit_and_the_probes_a_port_of_their_own() -> None:
    """The API server is one address for every tenant's writes: a per-address rate on the webhooks
    let one tenant's dry runs refuse the others' writes, so neither the setting nor the parameter
    exists any more. The probes are served on ``probe_port`` with the same server bounds."""
    import dataclasses
    import inspect

    from trigger_operator.config import HttpSettings
    from trigger_operator.web.app import build_webhook_app

    assert "webhook_rate_per_address" not in {f.name for f in dataclasses.fields(HttpSettings)}
    assert set(inspect.signature(build_webhook_app).parameters) == {"admission", "max_body_bytes"}
    assert HttpSettings().probe_port == 8081 and "port=http.probe_port, http=http" in SOURCE
    assert re.search(r"build_probe_app\(health\)", SOURCE)


@pytest.mark.parametrize("patterns", [
    pytest.param((), id="none-is-all"),
    pytest.param(("team-a",), id="one-name"),
    pytest.param(("team-*", "ops"), id="a-glob-and-a-name"),
    pytest.param(("myapp-*, !*-pr-*, *pr-123",), id="exclusion-then-re-inclusion"),
    pytest.param(("!*-pr-*, *pr-123",), id="a-first-exclusion-implies-all"),
])
def test_the_watched_namespaces_are_matched_as_kopf_matches_them(patterns: tuple[str, ...]) -> None:
    """`watches` restates kopf's pattern rule (kopf exports no matcher); it must agree with kopf's
    own, or `know` would list namespaces the watches never cover, or skip ones they do."""
    from kopf._cogs.structs.references import NamespaceName, match_namespace

    covered = handlers.watches(patterns)
    for namespace in ["team-a", "team-b", "ops", "myapp-test", "myapp-pr-123", "myapp-pr-456", "otherapp-pr-123",
                      "kube-system"]:
        expected = not patterns or any(match_namespace(NamespaceName(namespace), p) for p in patterns)
        assert covered(namespace) is expected, namespace


def test_nothing_is_read_from_the_environment_at_import_and_no_private_kopf_module_is_imported() -> None:
    assert "kopf._" not in SOURCE and "from_env()\n" not in SOURCE.split("class Options")[0]
    assert not hasattr(handlers, "CONFIG") and not hasattr(handlers, "WATCHED")

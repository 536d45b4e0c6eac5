"""Shared pytest options. Cluster fixtures live in tests/integration/conftest.py, so the pure unit
tests never start (or need) a control plane."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kubeconfig", default=None,
                     help="run cluster tests against this cluster (default: $KUBECONFIG, else a local "
                          "control plane started by the harness)")

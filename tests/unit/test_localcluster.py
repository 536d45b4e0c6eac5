"""The local control plane's start-up rules (hack/localcluster.py) that need no cluster: servers
listen below the kernel's ephemeral range, where no outgoing connection can take the port between
our check and their bind; a component that dies while we wait for it fails the wait at once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
import localcluster


@pytest.mark.parametrize(("ephemeral", "expected"), [
    ("32768\t60999", range(20000, 32768)),
    ("40000 60999", range(20000, 40000)),
    ("1024\t65535", range(20000, 20000)),  # no room below: empty, free_port asks the kernel
    ("20000\t60999", range(20000, 20000)),
])
def test_servers_listen_below_the_ephemeral_range(ephemeral: str, expected: range) -> None:
    assert localcluster.ports_to_listen_on(ephemeral) == expected


def test_free_ports_are_outside_the_ephemeral_range_unused_and_distinct() -> None:
    low = int(localcluster.EPHEMERAL_RANGE.read_text().split()[0])
    ports = [localcluster.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if low > localcluster.LOWEST_LISTENING_PORT:
        assert all(localcluster.LOWEST_LISTENING_PORT <= p < low for p in ports)
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing holds it


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        free = localcluster.free_port()
        monkeypatch.setattr(localcluster, "ports_to_listen_on", lambda _: range(busy, busy + 1))
        fallback = localcluster.free_port()  # the only candidate is busy: the kernel's choice
    assert busy not in (free, fallback)


def _cluster_folder(tmp_path: Path, pid: int) -> Path:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kube-controller-manager.log").write_text(
        "starting\nbind: address already in use\n")
    (tmp_path / "pids.json").write_text(json.dumps({"kube-controller-manager": pid}))
    return tmp_path


def test_a_component_that_exits_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    _cluster_folder(tmp_path, dead.pid)
    gone_by = time.monotonic() + 5
    while localcluster._alive(dead.pid) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not localcluster._alive(dead.pid)  # a zombie, not reaped: dead all the same
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"kube-controller-manager exited waiting for the default "
                                           r"ServiceAccount\n(.|\n)*address already in use"):
        localcluster._wait("the default ServiceAccount", lambda: False, 60, tmp_path, "kube-controller-manager")
    assert time.monotonic() - started < 5
    dead.wait()
    assert not localcluster._alive(dead.pid)  # reaped: gone from /proc


def test_a_running_component_is_waited_for_until_the_timeout(tmp_path: Path) -> None:
    alive = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(RuntimeError, match="timed out after 1s waiting for nodes"):
            localcluster._wait("nodes", lambda: False, 1, _cluster_folder(tmp_path, alive.pid),
                               "kube-controller-manager")
        assert localcluster._alive(alive.pid)
    finally:
        alive.kill()
        alive.wait()

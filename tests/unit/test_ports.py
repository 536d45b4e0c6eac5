"""The harness's ports: servers we start listen below the kernel's ephemeral range, where no
outgoing connection can take the port between our check and their bind."""

from __future__ import annotations

import socket
import sys
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

"""The SSH step's reachability check (provision/ssh.py) on local sockets: a host that only times out is asked
again for a while (a loaded hypervisor, an emulated guest: issue #16's VM under a busy CI host timed out opening
its first channel), and a refusal is final at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision import ssh
from provision.inventory import Connection


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (no SSH banner): a host too busy to answer."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def conn(port: int, tmp_path: Path) -> Connection:
    return Connection("127.0.0.1", port, "root", str(ssh.ensure_key(tmp_path / "key")))


def test_a_host_that_does_not_answer_is_asked_again_then_named(silent_port: int, tmp_path: Path) -> None:
    started = time.monotonic()
    reach = ssh.check_one("busy", conn(silent_port, tmp_path), tmp_path / "known_hosts", accept_new=True,
                          timeout=0.5, patience=3)
    assert not reach.ok and reach.slow, reach
    assert "(asked for 3 s)" in reach.why, reach.why
    assert time.monotonic() - started >= 2  # at least one more attempt


def test_a_closed_port_is_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    reach = ssh.check_one("closed", conn(closed_port(), tmp_path), tmp_path / "known_hosts", accept_new=True,
                          timeout=0.5, patience=30)
    assert not reach.ok and not reach.slow, reach
    assert "cannot connect to 127.0.0.1" in reach.why
    assert time.monotonic() - started < 5


def test_a_host_that_answers_after_timing_out_is_reached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    answers = [ssh.Reach("vm", False, "SSH to root@vm:22 failed: Timeout opening channel.", True), ssh.Reach("vm", True)]
    monkeypatch.setattr(ssh, "_check_once", lambda *args: answers.pop(0))
    monkeypatch.setattr(ssh.time, "sleep", lambda s: None)
    assert ssh.check_one("vm", conn(22, tmp_path), tmp_path / "known_hosts", accept_new=False).ok
    assert answers == []

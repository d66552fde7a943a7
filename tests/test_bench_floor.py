"""bench/cluster.py's floor installs what os_prep installs, the way os_prep installs it (no node needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from provision import packages

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def bench_cluster():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import cluster
    finally:
        sys.path.pop(0)
    return cluster


@pytest.mark.parametrize("recommends", [True, False])
def test_the_floor_takes_the_recommends_as_os_prep_does(bench_cluster, recommends: bool,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = {**packages.os_prep_defaults(), "os_prep_install_recommends": recommends}
    monkeypatch.setattr(packages, "os_prep_defaults", lambda: defaults)
    command = bench_cluster.floor_apt(["containerd", "haproxy"])
    assert ("--no-install-recommends" in command) is not recommends, command
    assert "apt-get install -y -q " in command and " containerd haproxy " in command, command


def test_the_floor_reads_os_preps_documented_default() -> None:
    text = (ROOT / "roles" / "os_prep" / "defaults" / "main.yml").read_text()
    assert packages.os_prep_installs_recommends() is yaml.safe_load(text)["os_prep_install_recommends"]

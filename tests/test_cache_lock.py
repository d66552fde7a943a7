"""The Debian test cache's lock (tests/cri/debian.py): the test lanes run at once (tests/run.sh) and share one
cache, so a writer holds an flock the other processes wait for, and re-enters it freely (an image build reads
unpacked packages)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cri import debian

PROBE = "import fcntl, sys; fcntl.flock(open(sys.argv[1], 'w'), fcntl.LOCK_EX | fcntl.LOCK_NB)"


def another_process_can_lock(cache: Path) -> bool:
    return subprocess.run([sys.executable, "-c", PROBE, str(cache / ".lock")], capture_output=True,
                          check=False).returncode == 0


def test_the_cache_lock_keeps_other_processes_out_until_its_outermost_holder_leaves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(debian, "CACHE", tmp_path)
    with debian.cache_lock():
        with debian.cache_lock():
            assert not another_process_can_lock(tmp_path)
        assert not another_process_can_lock(tmp_path), "released by the inner exit"
    assert another_process_can_lock(tmp_path)

"""`provision etcd backup` and `provision etcd restore` on a real 3-member external etcd (Debian's etcd).

The cluster is the session's `ha_etcd` (tests/conftest.py: 3 etcd members, 3 idle control planes, the vip
endpoint), which test_etcd_endpoint reads first; only the machines, SSH, etcd and endpoint steps ran on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision import cli, runner, state
from tests.conftest import LiveCluster, docker_out, make_spec

pytestmark = pytest.mark.nodes
NAME = "pt-ha"
MEMBERS = [f"{NAME}-etcd{i}" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def etcd3(ha_etcd: LiveCluster) -> LiveCluster:
    """The session's 3-member cluster (tests/conftest.py), after test_etcd_endpoint has read it: restores and a
    member's removal change it, so this module runs after that one (conftest's LAST)."""
    assert cli.main(["plan", "-f", str(ha_etcd.spec_path)]) == 0
    return ha_etcd


def sh(node: str, command: str) -> str:
    return docker_out("exec", node, "sh", "-c", command)


def get(node: str, key: str) -> str:
    return sh(node, f"etcdctl-tls get {key} --print-value-only").strip()


def node_marks() -> dict[str, tuple[str, str]]:
    """Per member: etcd's main PID and the data dirs kept by earlier restores (what a restore would change)."""
    return {m: (sh(m, "systemctl show -p MainPID --value etcd").strip(),
                sh(m, "ls -d /var/lib/etcd.before-restore-* 2>/dev/null || true"))
            for m in MEMBERS}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_backup_then_restore_brings_back_the_snapshot(etcd3: LiveCluster, capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    spec_args = ["-f", str(etcd3.spec_path), "--state-dir", str(etcd3.state_dir)]
    assert sh(MEMBERS[0], "etcdctl-tls put key-a before-backup").strip() == "OK"

    copy = tmp_path / "copies" / "etcd.db"
    rc, out, err = run_cli(capsys, "etcd", "backup", *spec_args, "-o", str(copy))
    assert rc == 0, err
    snapshot = Path(out.strip())
    assert snapshot.parent == etcd3.state_dir / "backups" / "etcd" and snapshot.is_file()
    assert snapshot.stat().st_size > 0 and oct(snapshot.stat().st_mode & 0o777) == "0o600"
    assert copy.read_bytes() == snapshot.read_bytes() and oct(copy.stat().st_mode & 0o777) == "0o600"

    assert sh(MEMBERS[1], "etcdctl-tls put key-b after-backup").strip() == "OK"

    rc, out, err = run_cli(capsys, "etcd", "restore", str(snapshot), *spec_args, "--yes")
    assert rc == 0, err
    assert "before-restore-" in err

    for member in MEMBERS:
        assert get(member, "key-a") == "before-backup"
        assert get(member, "key-b") == ""
    health = sh(MEMBERS[2], "etcdctl-tls endpoint health --cluster 2>&1")
    assert health.count("is healthy") == 3, health
    members = json.loads(sh(MEMBERS[0], "etcdctl-tls member list -w json"))["members"]
    assert sorted(m["name"] for m in members) == MEMBERS
    assert all(u.startswith("https://") for m in members for u in m["peerURLs"] + m["clientURLs"])
    for member in MEMBERS:
        kept = sh(member, "ls -d /var/lib/etcd.before-restore-*").split()
        assert len(kept) == 1, kept
        assert sh(member, f"test -d {kept[0]}/member && echo yes").strip() == "yes"
        assert sh(member, "stat -c '%U %a' /var/lib/etcd").split() == ["etcd", "700"]
        assert sh(member, "find /var/lib/etcd ! -user etcd").strip() == ""
        assert sh(member, "ls /var/backups/etcd/restore.db 2>/dev/null || true").strip() == ""

    # the cluster is back in the state the role leaves it in: converging etcd again changes nothing
    result = runner.run_playbook(etcd3.state_dir, "etcd.yml", len(etcd3.topo.nodes))
    assert result.ok, [f.line() for f in result.failures]
    assert result.changed == {}, result.changed_tasks


def test_restore_refuses_a_missing_snapshot_or_no_confirmation_and_touches_no_node(
        etcd3: LiveCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec_args = ["-f", str(etcd3.spec_path), "--state-dir", str(etcd3.state_dir)]
    artifacts = etcd3.state_dir / "runner" / "artifacts"
    runs_before = sorted(p.name for p in artifacts.iterdir()) if artifacts.is_dir() else []
    marks_before = node_marks()

    rc, out, err = run_cli(capsys, "etcd", "restore", str(tmp_path / "nope.db"), *spec_args, "--yes")
    assert rc != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope.db" in lines[0], err

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a snapshot" * 400)
    rc, out, err = run_cli(capsys, "etcd", "restore", str(garbage), *spec_args, "--yes")
    assert rc == 2 and "not an etcd snapshot" in err and len(err.strip().splitlines()) == 1, err

    real = bbolt_header_only(tmp_path)
    rc, out, err = run_cli(capsys, "etcd", "restore", str(real), *spec_args)  # stdin is no terminal here
    assert rc != 0 and "--yes" in err and len(err.strip().splitlines()) == 1, err

    assert (sorted(p.name for p in artifacts.iterdir()) if artifacts.is_dir() else []) == runs_before
    assert node_marks() == marks_before


def test_stacked_etcd_needs_a_running_cluster_and_says_so(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    path = make_spec(tmp_path, "pt-etcdbk-stacked", "single-master", "nodes: {controlPlanes: 1, workers: 1}\n")
    (tmp_path / "state" / "inventory").mkdir(parents=True)
    (tmp_path / "state" / "inventory" / "hosts.yml").write_text("all: {}\n")
    for argv in (["restore", str(bbolt_header_only(tmp_path)), "--yes"], ["backup"]):
        rc, out, err = run_cli(capsys, "etcd", *argv, "-f", str(path), "--state-dir", str(tmp_path / "state"))
        lines = err.strip().splitlines()
        assert rc == 1 and out == "" and len(lines) == 1, err
        assert "no running cluster" in lines[0] and "provision up" in lines[0], err


def bbolt_header_only(tmp: Path) -> Path:
    """A file with a bbolt meta page header (what the local check reads), nothing else."""
    path = tmp / "header-only.db"
    path.write_bytes(bytes(8) + (4).to_bytes(2, "little") + bytes(6) + (0xED0CDAED).to_bytes(4, "little") +
                     bytes(4096 - 20))
    return path


# ---------------------------------------------------------------- remove-node of an etcd member (#7)


def test_remove_node_refuses_to_break_quorum_then_removes_a_member(etcd3: LiveCluster,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """With one member down, removing another would leave 1 healthy of 2: refused. With all up, a member goes."""
    # Only etcd ran here: record the cluster as `up` would after its joins, so the day-2 verbs accept it.
    st = state.load(etcd3.state_dir)
    st.members, st.init_node = [n.name for n in etcd3.topo.nodes], f"{NAME}-cp1"
    state.save(etcd3.state_dir, st)
    spec_args = ["-f", str(etcd3.spec_path), "--state-dir", str(etcd3.state_dir)]
    sh(MEMBERS[0], "systemctl stop etcd")
    try:
        rc, _, err = run_cli(capsys, "remove-node", MEMBERS[1], "--yes", *spec_args)
        assert rc == 1 and "refusing to remove" in err and "quorum" in err, err
        members = json.loads(sh(MEMBERS[2], "etcdctl-tls member list -w json"))["members"]
        assert sorted(m["name"] for m in members) == MEMBERS  # nothing was removed
        assert sh(MEMBERS[1], "systemctl is-active etcd").strip() == "active"
    finally:
        sh(MEMBERS[0], "systemctl start etcd")

    rc, _, err = run_cli(capsys, "remove-node", MEMBERS[2], "--yes", *spec_args)
    assert rc == 0, err
    members = json.loads(sh(MEMBERS[0], "etcdctl-tls member list -w json"))["members"]
    assert sorted(m["name"] for m in members) == MEMBERS[:2]
    health = sh(MEMBERS[1], "etcdctl-tls endpoint health --cluster 2>&1")
    assert health.count("is healthy") == 2, health
    assert sh(MEMBERS[2], "systemctl is-active etcd || true").strip() == "inactive"
    assert sh(MEMBERS[2], "ls -A /var/lib/etcd").strip() == ""
    assert MEMBERS[2] not in state.load(etcd3.state_dir).members

    # the last but one: one member stays, so it is allowed by the rules; the last one is refused before any host
    st = state.load(etcd3.state_dir)
    st.members = [m for m in st.members if m != MEMBERS[1]]
    state.save(etcd3.state_dir, st)
    rc, _, err = run_cli(capsys, "remove-node", MEMBERS[0], "--yes", *spec_args)
    assert rc == 1 and "last etcd member" in err, err

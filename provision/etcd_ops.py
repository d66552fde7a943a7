"""`provision etcd backup` and `provision etcd restore`: snapshots of the cluster's etcd, external or stacked.

Backup takes a snapshot from an etcd member (external: the first; stacked: the first control plane whose member is
healthy), checks it with etcd's own tooling and keeps it in the state dir (0600). Restore stops every member (for
stacked etcd: the API server and etcd static pods on every control plane), keeps each old data dir beside the new
one, restores the snapshot into every member under its own name and peer URL, and starts them together. For
stacked etcd the control planes get etcd's client tools first (from `etcd.source`, like external members).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from provision import runner, state, topology
from provision.cli_common import cluster_state_dir, err, load, progress, say, spec_args
from provision.errors import UserError
from provision.inventory import jump_host
from provision.spec import Cluster

PLAYBOOKS = {"external": ("etcd-backup.yml", "etcd-restore.yml"),
             "stacked": ("etcd-backup-stacked.yml", "etcd-restore-stacked.yml")}
DATA_DIR = "/var/lib/etcd"  # roles/etcd: etcd_data_dir, and kubeadm's etcd.local.dataDir


def _check(cluster: Cluster, state_dir: Path) -> tuple[topology.Topology, list[str]]:
    """The cluster as it runs and its etcd members: the external members, or the control planes (stacked)."""
    if not (state_dir / "inventory" / "hosts.yml").is_file():
        raise UserError(f"no inventory for {cluster.name} in {state_dir}; run `provision up` first")
    if cluster.spec.etcd.mode == "external":
        topo = topology.build(cluster)
        if not topo.groups.get("external_etcd"):
            raise UserError(f"cluster {cluster.name} has no external etcd members")
        return topo, topo.groups["external_etcd"]
    st = state.load(state_dir)
    if not st.initialized:
        raise UserError(f"{cluster.name} has no running cluster on record in {state_dir} (stacked etcd runs in "
                        "kubeadm's static pods); run `provision up` first")
    topo = topology.build(cluster, st.init_node, exclude=st.removed)
    return topo, [c for c in topo.groups["control_plane"] if c in st.members]


def _run(cluster: Cluster, topo: topology.Topology, state_dir: Path, playbook: str, what: str,
         extravars: dict[str, str], hosts: list[str]) -> None:
    result = runner.run_playbook(state_dir, playbook, len(topo.nodes), progress(), extravars=extravars,
                                 jump=jump_host(cluster))
    if not result.ok:
        raise UserError(f"{what} failed:\n  {result.failure_lines()}")
    missed = [h for h in hosts if not result.tasks.get(h)]  # every host named must have run a task
    if missed:
        raise UserError(f"{what} ran no task on {', '.join(missed)}; check {state_dir / 'inventory'} "
                        "(`provision up` writes it)")


BBOLT_MAGIC = 0xED0CDAED  # go.etcd.io/bbolt: the meta page's magic, after the 16-byte page header
META_PAGE_FLAG = 0x04


def refuse_a_file_that_is_no_snapshot(path: Path) -> None:
    """An etcd snapshot is a bbolt database: its first page is a meta page carrying bbolt's magic. Checked here so
    that a wrong file is refused before any member stops (etcd's own tooling checks it again on each member)."""
    with path.open("rb") as f:
        head = f.read(24)
    flags = int.from_bytes(head[8:10], "little") if len(head) == 24 else 0
    magic = int.from_bytes(head[16:20], "little") if len(head) == 24 else 0
    if magic != BBOLT_MAGIC or not flags & META_PAGE_FLAG:
        raise UserError(f"{path} is not an etcd snapshot (no bbolt database header); give a file from "
                        "`provision etcd backup` or `etcdctl snapshot save`; nothing was changed", code=2)


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _write_private(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o600, exist_ok=True)
    target.chmod(0o600)
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)


def cmd_backup(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    state_dir = cluster_state_dir(cluster, args)
    topo, members = _check(cluster, state_dir)
    mode = cluster.spec.etcd.mode
    stamp = _stamp()
    snapshot = state_dir / "backups" / "etcd" / f"snapshot-{stamp}.db"
    if snapshot.exists():
        raise UserError(f"{snapshot} exists already (a backup in this same second); run the backup again")
    say(f"snapshot of etcd from {members[0]}" if mode == "external" else
        f"snapshot of stacked etcd from the first healthy member of {', '.join(members)}")
    _run(cluster, topo, state_dir, PLAYBOOKS[mode][0], "etcd backup", {"etcd_backup_stamp": stamp},
         members[:1] if mode == "external" else [])
    if not snapshot.is_file():
        raise UserError(f"the backup ran but {snapshot} is missing; look at {state_dir / 'runner'}")
    snapshot.parent.chmod(0o700)
    snapshot.chmod(0o600)
    if args.output:
        target = Path(args.output).expanduser()
        _write_private(snapshot, target)
        say(f"wrote {target} (0600)")
    sys.stdout.write(f"{snapshot}\n")
    return 0


def _confirm_by_name(cluster: Cluster, members: list[str], snapshot: Path) -> None:
    question = (f"restore {snapshot} into every etcd member of {cluster.name} ({', '.join(members)})? "
                "Every member stops and everything written since the snapshot is lost.")
    if not sys.stdin.isatty():
        raise UserError(f"{question} Pass --yes to confirm (stdin is not a terminal)")
    err.print(question, markup=False)
    answer = input(f"type the cluster name ({cluster.name}) to go on: ").strip()
    if answer != cluster.name:
        raise UserError("not confirmed; nothing was changed")


def cmd_restore(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    state_dir = cluster_state_dir(cluster, args)
    snapshot = Path(args.snapshot).expanduser()
    if not snapshot.is_file():
        raise UserError(f"no snapshot at {snapshot}; give a file from `provision etcd backup` "
                        f"(they are kept in {state_dir / 'backups' / 'etcd'}); nothing was changed", code=2)
    snapshot = snapshot.resolve()
    refuse_a_file_that_is_no_snapshot(snapshot)
    topo, members = _check(cluster, state_dir)
    mode = cluster.spec.etcd.mode
    if not args.yes:
        _confirm_by_name(cluster, members, snapshot)
    stamp = _stamp()
    say(f"restore {snapshot} into {len(members)} etcd member(s): {', '.join(members)}")
    undo = (f"etcd restore (what a member had is kept: {DATA_DIR}.before-restore-{stamp}"
            + (f", and on a control plane /etc/kubernetes/manifests.before-restore-{stamp}" if mode == "stacked" else "")
            + "; move it back to undo)")
    _run(cluster, topo, state_dir, PLAYBOOKS[mode][1], undo,
         {"etcd_restore_snapshot": str(snapshot), "etcd_restore_stamp": stamp}, members)
    kept = f"Each member kept its old data in {DATA_DIR}.before-restore-{stamp}."
    say(f"restored; all {len(members)} member(s) healthy. {kept} Restart every kube-apiserver so none serves "
        "state newer than the snapshot from its cache." if mode == "external" else
        f"restored; all {len(members)} member(s) healthy and every API server running again. {kept}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `provision etcd backup|restore` to the CLI."""
    p = subparsers.add_parser(
        "etcd", help="back up or restore the cluster's etcd (external or stacked)",
        description="Snapshots of the cluster's etcd: the external members (etcd.mode: external), or kubeadm's "
                    "stacked members in kubeadm's static pods on the control planes, which get etcd's client tools "
                    "(etcd.source) first.")
    esub = p.add_subparsers(dest="etcd_command", metavar="ACTION", required=True)

    b = esub.add_parser(
        "backup", help="take a snapshot into the state dir and print its path",
        description="Take a snapshot from the first etcd member (stacked: the first control plane whose member "
                    "is healthy), check it with etcd's own tooling, keep it in "
                    "<state dir>/backups/etcd/ (0600) and print its path.")
    spec_args(b)
    b.add_argument("-o", "--output", metavar="FILE", help="also copy the snapshot here (0600)")
    b.set_defaults(func=cmd_backup)

    r = esub.add_parser(
        "restore", help="restore a snapshot into every etcd member (stops etcd)",
        description="Copy SNAPSHOT to every etcd member, check it, stop every member (stacked: the API server "
                    "and etcd static pods of every control plane), move each old data dir "
                    "aside (kept as <data dir>.before-restore-<stamp>), restore the snapshot into each member "
                    "with its own name and the cluster's peer URLs and token, start them together and wait "
                    "until the cluster is healthy. Everything written after the snapshot is lost.")
    spec_args(r)
    r.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot file on this machine")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.set_defaults(func=cmd_restore)

"""`provision etcd backup` and `provision etcd restore`: snapshots of the external etcd cluster.

Backup takes a snapshot from the first external etcd member, checks it with etcd's own tooling and keeps it in
the state dir (0600). Restore stops every member, keeps each old data dir beside the new one, restores the
snapshot into every member (same names, peer URLs and token) and starts them together. Stacked etcd lives in
kubeadm's static pods on the control planes and is not handled here.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from provision import runner, topology
from provision.cli_common import cluster_state_dir, err, load, progress, say, spec_args
from provision.errors import UserError
from provision.inventory import jump_host
from provision.spec import Cluster

BACKUP_PLAYBOOK = "etcd-backup.yml"
RESTORE_PLAYBOOK = "etcd-restore.yml"
DATA_DIR = "/var/lib/etcd"  # roles/etcd: etcd_data_dir


def _stacked_refusal(cluster: Cluster, verb: str) -> UserError:
    return UserError(
        f"cluster {cluster.name} runs stacked etcd: `provision etcd {verb}` covers external etcd only; stacked "
        "etcd lives in kubeadm's static pods on the control planes, so back it up there with `etcdctl snapshot "
        "save FILE --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt "
        "--cert=/etc/kubernetes/pki/etcd/server.crt --key=/etc/kubernetes/pki/etcd/server.key` "
        "(restore: kubeadm's etcd restore procedure)")


def _check(cluster: Cluster, state_dir: Path, verb: str) -> topology.Topology:
    if cluster.spec.etcd.mode != "external":
        raise _stacked_refusal(cluster, verb)
    topo = topology.build(cluster)
    if not topo.groups.get("external_etcd"):
        raise UserError(f"cluster {cluster.name} has no external etcd members")
    if not (state_dir / "inventory" / "hosts.yml").is_file():
        raise UserError(f"no inventory for {cluster.name} in {state_dir}; run `provision up` first")
    return topo


def _run(cluster: Cluster, topo: topology.Topology, state_dir: Path, playbook: str, what: str,
         extravars: dict[str, str], hosts: list[str]) -> None:
    result = runner.run_playbook(state_dir, playbook, len(topo.nodes), progress(), extravars=extravars,
                                 jump=jump_host(cluster))
    if not result.ok:
        raise UserError(f"{what} failed:\n  {result.failure_lines()}")
    missed = [h for h in hosts if not result.tasks.get(h)]
    if missed:
        raise UserError(f"{what} ran no task on {', '.join(missed)}; check {state_dir / 'inventory'} "
                        "(`provision up` writes it)")


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
    topo = _check(cluster, state_dir, "backup")
    stamp = _stamp()
    snapshot = state_dir / "backups" / "etcd" / f"snapshot-{stamp}.db"
    if snapshot.exists():
        raise UserError(f"{snapshot} exists already (a backup in this same second); run the backup again")
    say(f"snapshot of etcd from {topo.groups['external_etcd'][0]}")
    _run(cluster, topo, state_dir, BACKUP_PLAYBOOK, "etcd backup", {"etcd_backup_stamp": stamp},
         topo.groups["external_etcd"][:1])
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
    if cluster.spec.etcd.mode != "external":
        raise _stacked_refusal(cluster, "restore")
    snapshot = Path(args.snapshot).expanduser()
    if not snapshot.is_file():
        raise UserError(f"no snapshot at {snapshot}; give a file from `provision etcd backup` "
                        f"(they are kept in {state_dir / 'backups' / 'etcd'}); nothing was changed")
    snapshot = snapshot.resolve()
    topo = _check(cluster, state_dir, "restore")
    members = topo.groups["external_etcd"]
    if not args.yes:
        _confirm_by_name(cluster, members, snapshot)
    stamp = _stamp()
    say(f"restore {snapshot} into {len(members)} etcd member(s): {', '.join(members)}")
    _run(cluster, topo, state_dir, RESTORE_PLAYBOOK, "etcd restore",
         {"etcd_restore_snapshot": str(snapshot), "etcd_restore_stamp": stamp}, members)
    say(f"restored; all {len(members)} member(s) healthy. Each member kept its old data in "
        f"{DATA_DIR}.before-restore-{stamp}. Restart every kube-apiserver so none serves state newer than "
        "the snapshot from its cache.")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `provision etcd backup|restore` to the CLI."""
    p = subparsers.add_parser(
        "etcd", help="back up or restore the external etcd cluster",
        description="Snapshots of the external etcd cluster (etcd.mode: external). Stacked etcd runs in "
                    "kubeadm's static pods on the control planes and is not handled here.")
    esub = p.add_subparsers(dest="etcd_command", metavar="ACTION", required=True)

    b = esub.add_parser(
        "backup", help="take a snapshot into the state dir and print its path",
        description="Take a snapshot from the first etcd member, check it with etcd's own tooling, keep it in "
                    "<state dir>/backups/etcd/ (0600) and print its path.")
    spec_args(b)
    b.add_argument("-o", "--output", metavar="FILE", help="also copy the snapshot here (0600)")
    b.set_defaults(func=cmd_backup)

    r = esub.add_parser(
        "restore", help="restore a snapshot into every etcd member (stops etcd)",
        description="Copy SNAPSHOT to every etcd member, check it, stop every member, move each old data dir "
                    "aside (kept as <data dir>.before-restore-<stamp>), restore the snapshot into each member "
                    "with its own name and the cluster's peer URLs and token, start them together and wait "
                    "until the cluster is healthy. Everything written after the snapshot is lost.")
    spec_args(r)
    r.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot file on this machine")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.set_defaults(func=cmd_restore)

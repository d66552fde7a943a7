"""The day-2 verbs on nodes: drain, uncordon, add-node, remove-node, reset and upgrade."""

from __future__ import annotations

import argparse
import time

from provision import day2
from provision.cli_common import cluster_state_dir, confirm, load, out, progress, say, spec_args


def _day2_done(what: str, report: day2.Day2Report, started: float) -> int:
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(f"{what}: done in {time.monotonic() - started:.0f}s, {report.changed} change(s)")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    started = time.monotonic()
    report = day2.drain(cluster, cluster_state_dir(cluster, args), args.node, force=args.force,
                        timeout=args.timeout, progress=progress())
    return _day2_done(f"drain {args.node}", report, started)


def cmd_uncordon(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    started = time.monotonic()
    report = day2.uncordon(cluster, cluster_state_dir(cluster, args), args.node,
                           progress=progress())
    return _day2_done(f"uncordon {args.node}", report, started)


def cmd_remove_node(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    where = cluster_state_dir(cluster, args)
    started = time.monotonic()
    day2.check_removal(cluster, where, args.node)  # refusals come before the question
    confirm(f"remove {args.node} from {cluster.name} (drain, kubeadm reset, delete)?", args.yes)
    report = day2.remove_node(cluster, where, args.node, say, force=args.force, timeout=args.timeout,
                              progress=progress())
    return _day2_done(f"remove-node {args.node}", report, started)


def cmd_add_node(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    started = time.monotonic()
    report = day2.add_nodes(cluster, cluster_state_dir(cluster, args), say, progress=progress())
    return _day2_done("add-node", report, started)


def cmd_reset(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    where = cluster_state_dir(cluster, args)
    confirm(f"reset {cluster.name}: remove Kubernetes and every workload from all its nodes?", args.yes)
    started = time.monotonic()
    report = day2.reset(cluster, where, say, progress=progress())
    return _day2_done(f"reset {cluster.name}", report, started)


def cmd_upgrade(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    started = time.monotonic()
    report = day2.upgrade(cluster, cluster_state_dir(cluster, args), args.to, say,
                          batch=args.batch, artifacts_dir=args.artifacts_dir, progress=progress())
    return _day2_done(f"upgrade to {args.to}", report, started)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("drain", help="cordon a node and evict its pods (PodDisruptionBudgets respected)",
                       description="Cordon NODE, then evict its pods through the eviction API, which respects "
                                   "PodDisruptionBudgets; DaemonSet pods stay. Runs kubectl on a control plane.")
    spec_args(p)
    p.add_argument("node", metavar="NODE")
    p.add_argument("--force", action="store_true", help="also delete pods no controller manages (they are lost)")
    p.add_argument("--timeout", default="5m", help="give up after this long (default 5m)")
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("uncordon", help="let the scheduler use a node again",
                       description="Mark NODE schedulable again (after drain or an upgrade).")
    spec_args(p)
    p.add_argument("node", metavar="NODE")
    p.set_defaults(func=cmd_uncordon)

    p = sub.add_parser("remove-node", help="drain, reset and delete a node; update etcd and the load balancer",
                       description="Drain NODE, run kubeadm reset on it, delete its Node object, remove its "
                                   "etcd member, take it out of the API endpoint's backends and the state. "
                                   "Refuses to remove the last control plane or to break etcd's quorum.")
    spec_args(p)
    p.add_argument("node", metavar="NODE")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true", help="drain also deletes pods no controller manages")
    p.add_argument("--timeout", default="5m", help="drain gives up after this long (default 5m)")
    p.set_defaults(func=cmd_remove_node)

    p = sub.add_parser("add-node", help="add the spec's new workers and control planes",
                       description="Bring the nodes the spec lists but the cluster lacks into the cluster: "
                                   "only they are contacted, plus the first control plane (for a join token) "
                                   "and, for a new control plane, the API endpoint's load balancers.")
    spec_args(p)
    p.set_defaults(func=cmd_add_node)

    p = sub.add_parser("reset", help="remove Kubernetes from every node (the machines stay)",
                       description="kubeadm reset on every node, then remove kubelet, CNI, container and "
                                   "kube-proxy firewall state, and external etcd's data. Asks first.")
    spec_args(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser("upgrade", help="upgrade Kubernetes one minor version",
                       description="Control planes first, one at a time (kubeadm upgrade apply, then node), "
                                   "then workers in batches (drain, packages, kubeadm upgrade node, uncordon). "
                                   "Stops at the first failure with the cluster still serving.")
    spec_args(p)
    p.add_argument("--to", required=True, metavar="VERSION", help="1.37 or 1.37.2: at most one minor ahead")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="workers upgraded at once (default 1)")
    p.add_argument("--artifacts-dir", metavar="DIR",
                   help="offline mode: the artifacts directory holding the new version")
    p.set_defaults(func=cmd_upgrade)

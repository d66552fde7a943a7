"""`provision certs` and `provision certs renew`."""

from __future__ import annotations

import argparse
import time

from rich.table import Table

from provision import certs
from provision.cli_common import cluster_state_dir, confirm, load, out, progress, say, spec_args
from provision.errors import UserError


def table(found: list[certs.Cert], now: float) -> Table:
    t = Table(box=None, show_edge=False, pad_edge=False)
    for column in ("NODE", "CERTIFICATE", "EXPIRES", "RESIDUAL", "SIGNED BY"):
        t.add_column(column)
    for c in found:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(c.expires)) if c.expires is not None else c.note
        left = c.residual(now)
        t.add_row(c.node, c.name, when, certs.human(left) if left is not None else "-", c.ca or "(CA)")
    return t


def cmd_certs(args: argparse.Namespace) -> int:
    within = certs.threshold_seconds(args.threshold)  # bad input before anything is contacted
    cluster = load(args.file)
    now = time.time()
    found = certs.collect(cluster, cluster_state_dir(cluster, args))
    out.print(table(found, now))
    soon = certs.expiring(found, within, now)
    if soon:
        first = soon[0]
        raise UserError(f"{len(soon)} certificate(s) expire within {args.threshold}, first {first.name} on "
                        f"{first.node}: renew with `provision certs renew` (CAs: by hand, see kubeadm's docs)")
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    where = cluster_state_dir(cluster, args)
    etcd = (" and external etcd's member certificates (each member restarted in turn)"
            if cluster.spec.etcd.mode == "external" else "")
    confirm(f"renew kubeadm's certificates on every control plane of {cluster.name}{etcd}, restarting their static "
            "pods one control plane at a time?", args.yes)
    started = time.monotonic()
    result = certs.renew(cluster, where, say, progress=progress())
    out.print(f"certs renew: done in {time.monotonic() - started:.0f}s, {sum(result.changed.values())} change(s); "
              f"the admin kubeconfig in {where} was refreshed")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("certs", help="every node's kubeadm certificates and the etcd PKI, soonest expiry first",
                       description="Ask kubeadm on every control plane (`kubeadm certs check-expiration`) and read "
                                   "the external etcd members' certificates; print them soonest expiry first. "
                                   "Exit 1 when any expires within --threshold. Changes nothing.")
    spec_args(p)
    p.add_argument("--threshold", default=certs.DEFAULT_THRESHOLD, metavar="DURATION",
                   help=f"fail when a certificate expires within this (default {certs.DEFAULT_THRESHOLD}; "
                        "e.g. 30d, 720h, 2w)")
    p.set_defaults(func=cmd_certs)
    actions = p.add_subparsers(dest="certs_command", metavar="ACTION")
    renew = actions.add_parser("renew", help="renew kubeadm's certificates, one control plane at a time",
                               description="External etcd first: new member certificates and a new API server "
                                           "client certificate from its CA, each member restarted and healthy "
                                           "before the next. Then kubeadm certs renew all on each control plane "
                                           "in turn, its static pods restarted and the API answering again before "
                                           "the next; then the admin kubeconfig in the state dir is refreshed. "
                                           "CAs are not renewed.")
    spec_args(renew)
    renew.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    renew.set_defaults(func=cmd_renew)

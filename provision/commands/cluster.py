"""The verbs of a cluster's life: init (write a spec), plan (show what up would do), up, verify, kubeconfig,
status and destroy."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jinja2
from rich.table import Table

from provision import certs, lifecycle, versions
from provision import inventory as inventory_mod
from provision import spec as spec_mod
from provision import state as state_mod
from provision import steps as steps_mod
from provision import topology as topology_mod
from provision import verify as verify_mod
from provision.cli_common import (
    DEFAULT_SPEC,
    cluster_state_dir,
    err,
    load,
    out,
    progress,
    say,
    spec_arg,
    spec_args,
)
from provision.errors import UserError
from provision.paths import TEMPLATES


def cmd_init(args: argparse.Namespace) -> int:
    topology = args.topology
    preset = spec_mod.PRESETS[topology]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    target = Path(args.output)
    text = env.get_template("cluster.yaml.j2").render(
        file=str(target), name=args.name, topology=topology, nodes=preset["nodes"],
        etcd_mode=preset["etcd"]["mode"], endpoint=preset["endpoint"]["type"],
        minor=versions.DEFAULT_KUBERNETES_MINOR, patch=versions.DEFAULT_KUBERNETES_VERSION,
        minors=", ".join(versions.SUPPORTED_MINORS))
    spec_mod.load_text(text, str(target))  # what we write must pass our own checks
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    if target.exists() and not args.force:
        raise UserError(f"{target} already exists; pass --force to overwrite it, or -o another file")
    target.write_text(text)
    err.print(f"wrote {target} ({topology}); next: provision plan -f {target}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    cluster = load(args.file, warn=True)
    topo = topology_mod.build(cluster)
    spec = cluster.spec
    files = inventory_mod.render(topo)
    if args.render_to:
        inventory_mod.write(files, Path(args.render_to))
    out.print(f"[bold]cluster {cluster.name}[/]  topology {spec.topology}  Kubernetes {cluster.kubernetes_version}"
              f"  provider {spec.provider.type}  etcd {spec.etcd.mode}")
    ep = "none (the control plane's own address)" if spec.endpoint.type == "none" else spec.endpoint.type
    out.print(f"API endpoint {topo.endpoint_host}:{topo.endpoint_port}  ({ep})")
    table = Table(title=None, show_edge=False, pad_edge=False, box=None)
    table.add_column("NODE")
    table.add_column("ADDRESS")
    table.add_column("RUNS")
    for n in topo.nodes:
        table.add_row(n.name, n.address, ", ".join(topo.roles_of(n.name)))
    out.print()
    out.print(table)
    out.print()
    out.print("[bold]groups[/]")
    for group, members in topo.groups.items():
        out.print(f"  {group}: {', '.join(members) if members else '-'}")
    out.print()
    out.print("[bold]steps of `provision up`[/] (pick with --only/--skip STEP)")
    for i, step in enumerate(steps_mod.steps_for(topo), 1):
        detail = f" — {step.detail}" if step.detail else ""
        out.print(f"  {i:>2}. {step.title} [dim]\\[{step.hosts}][/]{detail}  [dim](step {step.id})[/]")
    if args.render_to:
        out.print()
        out.print(f"rendered the inventory into {args.render_to}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    cluster = load(args.file, warn=True)
    state_dir = cluster_state_dir(cluster, args)
    started = time.monotonic()
    shown = progress()
    try:
        report = lifecycle.up(cluster, state_dir, say, progress=shown, only=args.only, skip=args.skip)
    except UserError as exc:
        if not (state_dir / "inventory" / "hosts.yml").is_file():
            raise
        raise UserError(f"{exc}\n  the nodes' logs, secrets redacted: provision logs -f {args.file}"
                        + (f" --state-dir {args.state_dir}" if args.state_dir else ""), exc.code) from None
    out.print()
    table = Table(box=None, show_edge=False, pad_edge=False)
    table.add_column("PHASE")
    table.add_column("SECONDS", justify="right")
    table.add_column("OUTCOME")
    for row in lifecycle.summary_rows(report):
        table.add_row(row["phase"], f"{row['seconds']:.1f}", row["outcome"])
    out.print(table)
    if report.checks:
        out.print()
        print_checks(report.checks)
    out.print(f"cluster {cluster.name} up in {time.monotonic() - started:.0f}s; state dir {state_dir}")
    topo = topology_mod.build(cluster)
    out.print(f"API endpoint: https://{topo.endpoint_host}:{topo.endpoint_port}")
    kubeconfig = state_dir / "kubeconfig"
    if kubeconfig.exists():
        out.print(f"kubeconfig:   {kubeconfig}  (export KUBECONFIG={kubeconfig})")
    for note in shown.notes:
        out.print(note)
    for warning in shown.warnings:
        out.print(f"warning: {warning}")
    if report.not_available:
        out.print(f"not available in this version yet: {', '.join(report.not_available)}")
    return 0


def print_checks(checks: list[verify_mod.Check]) -> None:
    table = Table(box=None, show_edge=False, pad_edge=False)
    table.add_column("CHECK")
    table.add_column("RESULT")
    table.add_column("DETAIL")
    for c in checks:
        table.add_row(c.name, "ok" if c.ok else "FAILED", c.detail)
    out.print(table)


def cmd_verify(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    checks = lifecycle.verify(cluster, cluster_state_dir(cluster, args),
                              workloads=not args.no_workloads)
    print_checks(checks)
    return 0 if all(c.ok for c in checks) else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    source = cluster_state_dir(cluster, args) / "kubeconfig"
    if not source.exists():
        raise UserError(f"no kubeconfig for {cluster.name} yet ({source}); run `provision up` first")
    if args.output:
        target = Path(args.output).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600, exist_ok=True)
        target.chmod(0o600)
        target.write_bytes(source.read_bytes())
        say(f"wrote {target} (0600)")
    else:
        out.print(str(source))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    state_dir = cluster_state_dir(cluster, args)
    states = lifecycle.status(cluster, state_dir)
    table = Table(box=None, show_edge=False, pad_edge=False)
    table.add_column("NODE")
    table.add_column("STATE")
    for name, state in states.items():
        table.add_row(name, state)
    out.print(table)
    _warn_of_expiring_certificates(cluster, state_dir)
    return 0


def _warn_of_expiring_certificates(cluster: spec_mod.Cluster, state_dir: Path) -> None:
    """A running cluster: one warning per certificate that ends within 30 days (`provision certs` lists all)."""
    if not state_mod.load(state_dir).initialized:
        return
    try:
        found = certs.collect(cluster, state_dir)
    except UserError as exc:
        say(f"warning: could not read the certificates: {str(exc).splitlines()[0]}")
        return
    for c in certs.expiring(found, certs.threshold_seconds(certs.DEFAULT_THRESHOLD)):
        assert c.expires is not None
        say(f"warning: {c.name} on {c.node} expires {time.strftime('%Y-%m-%d', time.gmtime(c.expires))}: "
            "renew with `provision certs renew`")


def cmd_destroy(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    lifecycle.destroy(cluster, cluster_state_dir(cluster, args), say)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="write a commented cluster spec for a topology",
                       description="Write a commented cluster spec for a topology preset.")
    p.add_argument("--topology", "-t", choices=spec_mod.TOPOLOGIES, default="single-master")
    p.add_argument("--name", default="demo", help="cluster name (default: demo)")
    p.add_argument("-o", "--output", default=DEFAULT_SPEC, help="file to write, or - for stdout")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("plan", help="validate the spec and show what `up` would do (touches no host)",
                       description="Validate the spec, render the inventory and print which node runs what "
                                   "and the ordered steps of `provision up`. Touches no host.")
    spec_arg(p)
    p.add_argument("--render-to", metavar="DIR", help="also write the rendered inventory into DIR")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("up", help="create the machines and converge the cluster (safe to re-run)",
                       description="Create the machines, render the inventory, wait for SSH and run every step "
                                   "of the plan. Re-running it finishes what is missing and changes nothing else.")
    spec_args(p)
    p.add_argument("--only", action="append", metavar="STEP", help="run only this step id (repeatable)")
    p.add_argument("--skip", action="append", metavar="STEP", help="skip this step id (repeatable)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("verify", help="check nodes, system pods, DNS and service traffic",
                       description="Check that every node is Ready, kube-system pods run, CoreDNS resolves "
                                   "kubernetes.default from a pod, and a 2-replica Deployment spread over 2 nodes "
                                   "answers through its ClusterIP Service from a pod on another node.")
    spec_args(p)
    p.add_argument("--no-workloads", action="store_true", help="only nodes and system pods (creates nothing)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("kubeconfig", help="print the admin kubeconfig's path, or write it where asked",
                       description="Print the path of the cluster's admin kubeconfig (0600, in the state dir), "
                                   "or copy it to -o PATH.")
    spec_args(p)
    p.add_argument("-o", "--output", metavar="PATH", help="write the kubeconfig here (0600)")
    p.set_defaults(func=cmd_kubeconfig)

    p = sub.add_parser("status", help="show the cluster's nodes and their state",
                       description="Show each node of the cluster and its state as the provider sees it.")
    spec_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("destroy", help="remove the machines, networks, keys and state dir",
                       description="Remove every machine and network the provider made for this cluster, its "
                                   "SSH keys and its state dir. Existing (static) hosts are left alone.")
    spec_args(p)
    p.set_defaults(func=cmd_destroy)

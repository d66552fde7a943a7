"""The `provision` command line. Each verb is a thin layer over the package: spec -> topology -> ..."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jinja2
from rich.console import Console
from rich.table import Table

from provision import __version__, day2, lifecycle, versions
from provision import inventory as inventory_mod
from provision import spec as spec_mod
from provision import steps as steps_mod
from provision import topology as topology_mod
from provision import verify as verify_mod
from provision.errors import UserError
from provision.paths import TEMPLATES
from provision.progress import TaskProgress

DEFAULT_SPEC = "cluster.yaml"

out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def load(path: str, warn: bool = False) -> spec_mod.Cluster:
    """The spec; with warn (plan and up), also what it allows but a person should know."""
    cluster = spec_mod.load_spec(path)
    for w in spec_mod.warnings_for(cluster.spec) if warn else []:
        err.print(f"[yellow]warning:[/] {w}", markup=True)
    return cluster


# ---------------------------------------------------------------- init


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


# ---------------------------------------------------------------- plan


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


# ---------------------------------------------------------------- machines


def say(text: str) -> None:
    err.print(text, markup=False, highlight=False)


def cmd_up(args: argparse.Namespace) -> int:
    cluster = load(args.file, warn=True)
    state_dir = lifecycle.state_dir_for(cluster, args.state_dir)
    started = time.monotonic()
    progress = TaskProgress(lambda text, style: err.print(text, markup=False, style=style))
    report = lifecycle.up(cluster, state_dir, say, progress=progress, only=args.only, skip=args.skip)
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
    for note in progress.notes:
        out.print(note)
    for warning in progress.warnings:
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
    checks = lifecycle.verify(cluster, lifecycle.state_dir_for(cluster, args.state_dir),
                              workloads=not args.no_workloads)
    print_checks(checks)
    return 0 if all(c.ok for c in checks) else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    source = lifecycle.state_dir_for(cluster, args.state_dir) / "kubeconfig"
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
    state_dir = lifecycle.state_dir_for(cluster, args.state_dir)
    states = lifecycle.status(cluster, state_dir)
    table = Table(box=None, show_edge=False, pad_edge=False)
    table.add_column("NODE")
    table.add_column("STATE")
    for name, state in states.items():
        table.add_row(name, state)
    out.print(table)
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    lifecycle.destroy(cluster, lifecycle.state_dir_for(cluster, args.state_dir), say)
    return 0


# ---------------------------------------------------------------- day 2


def _progress() -> TaskProgress:
    return TaskProgress(lambda text, style: err.print(text, markup=False, style=style))


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{question} needs confirmation: pass --yes (stdin is not a terminal)")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("nothing was done (not confirmed)")


def _day2_done(what: str, report: day2.Day2Report, started: float) -> int:
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(f"{what}: done in {time.monotonic() - started:.0f}s, {report.changed} change(s)")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    started = time.monotonic()
    report = day2.drain(cluster, lifecycle.state_dir_for(cluster, args.state_dir), args.node, force=args.force,
                        timeout=args.timeout, progress=_progress())
    return _day2_done(f"drain {args.node}", report, started)


def cmd_uncordon(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    started = time.monotonic()
    report = day2.uncordon(cluster, lifecycle.state_dir_for(cluster, args.state_dir), args.node,
                           progress=_progress())
    return _day2_done(f"uncordon {args.node}", report, started)


def cmd_remove_node(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    state_dir = lifecycle.state_dir_for(cluster, args.state_dir)
    started = time.monotonic()
    day2.check_removal(cluster, state_dir, args.node)  # refusals come before the question
    _confirm(f"remove {args.node} from {cluster.name} (drain, kubeadm reset, delete)?", args.yes)
    report = day2.remove_node(cluster, state_dir, args.node, say, force=args.force, timeout=args.timeout,
                              progress=_progress())
    return _day2_done(f"remove-node {args.node}", report, started)


def cmd_add_node(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    started = time.monotonic()
    report = day2.add_nodes(cluster, lifecycle.state_dir_for(cluster, args.state_dir), say, progress=_progress())
    return _day2_done("add-node", report, started)


def cmd_reset(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    state_dir = lifecycle.state_dir_for(cluster, args.state_dir)
    _confirm(f"reset {cluster.name}: remove Kubernetes and every workload from all its nodes?", args.yes)
    started = time.monotonic()
    report = day2.reset(cluster, state_dir, say, progress=_progress())
    return _day2_done(f"reset {cluster.name}", report, started)


def cmd_upgrade(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    started = time.monotonic()
    report = day2.upgrade(cluster, lifecycle.state_dir_for(cluster, args.state_dir), args.to, say,
                          batch=args.batch, artifacts_dir=args.artifacts_dir, progress=_progress())
    return _day2_done(f"upgrade to {args.to}", report, started)


def cmd_image_build(args: argparse.Namespace) -> int:
    from provision.providers import docker_engine

    if args.install_engine:
        docker_engine.ensure_engine(say)
    else:
        docker_engine.require_engine()
    how = docker_engine.build_image(say, force=args.force, install_tools=args.install_engine)
    say(f"node image {docker_engine.NODE_IMAGE}: {how}")
    return 0


# ---------------------------------------------------------------- wiring


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provision",
        description="Turn one cluster spec into a working kubeadm Kubernetes cluster.",
    )
    parser.add_argument("--version", action="version", version=f"provision {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
    p.add_argument("-f", "--file", default=DEFAULT_SPEC, help=f"cluster spec (default: {DEFAULT_SPEC})")
    p.add_argument("--render-to", metavar="DIR", help="also write the rendered inventory into DIR")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("up", help="create the machines and converge the cluster (safe to re-run)",
                       description="Create the machines, render the inventory, wait for SSH and run every step "
                                   "of the plan. Re-running it finishes what is missing and changes nothing else.")
    _spec_args(p)
    p.add_argument("--only", action="append", metavar="STEP", help="run only this step id (repeatable)")
    p.add_argument("--skip", action="append", metavar="STEP", help="skip this step id (repeatable)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("verify", help="check nodes, system pods, DNS and service traffic",
                       description="Check that every node is Ready, kube-system pods run, CoreDNS resolves "
                                   "kubernetes.default from a pod, and a 2-replica Deployment spread over 2 nodes "
                                   "answers through its ClusterIP Service from a pod on another node.")
    _spec_args(p)
    p.add_argument("--no-workloads", action="store_true", help="only nodes and system pods (creates nothing)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("kubeconfig", help="print the admin kubeconfig's path, or write it where asked",
                       description="Print the path of the cluster's admin kubeconfig (0600, in the state dir), "
                                   "or copy it to -o PATH.")
    _spec_args(p)
    p.add_argument("-o", "--output", metavar="PATH", help="write the kubeconfig here (0600)")
    p.set_defaults(func=cmd_kubeconfig)

    p = sub.add_parser("status", help="show the cluster's nodes and their state",
                       description="Show each node of the cluster and its state as the provider sees it.")
    _spec_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("destroy", help="remove the machines, networks, keys and state dir",
                       description="Remove every machine and network the provider made for this cluster, its "
                                   "SSH keys and its state dir. Existing (static) hosts are left alone.")
    _spec_args(p)
    p.set_defaults(func=cmd_destroy)

    p = sub.add_parser("drain", help="cordon a node and evict its pods (PodDisruptionBudgets respected)",
                       description="Cordon NODE, then evict its pods through the eviction API, which respects "
                                   "PodDisruptionBudgets; DaemonSet pods stay. Runs kubectl on a control plane.")
    _spec_args(p)
    p.add_argument("node", metavar="NODE")
    p.add_argument("--force", action="store_true", help="also delete pods no controller manages (they are lost)")
    p.add_argument("--timeout", default="5m", help="give up after this long (default 5m)")
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("uncordon", help="let the scheduler use a node again",
                       description="Mark NODE schedulable again (after drain or an upgrade).")
    _spec_args(p)
    p.add_argument("node", metavar="NODE")
    p.set_defaults(func=cmd_uncordon)

    p = sub.add_parser("remove-node", help="drain, reset and delete a node; update etcd and the load balancer",
                       description="Drain NODE, run kubeadm reset on it, delete its Node object, remove its "
                                   "etcd member, take it out of the API endpoint's backends and the state. "
                                   "Refuses to remove the last control plane or to break etcd's quorum.")
    _spec_args(p)
    p.add_argument("node", metavar="NODE")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true", help="drain also deletes pods no controller manages")
    p.add_argument("--timeout", default="5m", help="drain gives up after this long (default 5m)")
    p.set_defaults(func=cmd_remove_node)

    p = sub.add_parser("add-node", help="add the spec's new workers and control planes",
                       description="Bring the nodes the spec lists but the cluster lacks into the cluster: "
                                   "only they are contacted, plus the first control plane (for a join token) "
                                   "and, for a new control plane, the API endpoint's load balancers.")
    _spec_args(p)
    p.set_defaults(func=cmd_add_node)

    p = sub.add_parser("reset", help="remove Kubernetes from every node (the machines stay)",
                       description="kubeadm reset on every node, then remove kubelet, CNI, container and "
                                   "kube-proxy firewall state, and external etcd's data. Asks first.")
    _spec_args(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_reset)

    p = sub.add_parser("upgrade", help="upgrade Kubernetes one minor version",
                       description="Control planes first, one at a time (kubeadm upgrade apply, then node), "
                                   "then workers in batches (drain, packages, kubeadm upgrade node, uncordon). "
                                   "Stops at the first failure with the cluster still serving.")
    _spec_args(p)
    p.add_argument("--to", required=True, metavar="VERSION", help="1.37 or 1.37.2: at most one minor ahead")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="workers upgraded at once (default 1)")
    p.add_argument("--artifacts-dir", metavar="DIR",
                   help="offline mode: the artifacts directory holding the new version")
    p.set_defaults(func=cmd_upgrade)

    p = sub.add_parser("image", help="build the docker provider's node image",
                       description="Manage the node image of the docker provider.")
    isub = p.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="build the node image once (cached afterwards)",
                        description="Build the node image: from debian:bookworm where a registry answers, "
                                    "otherwise from Debian's mirror with mmdebstrap.")
    b.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    b.add_argument("--install-engine", action="store_true",
                   help="as root: install docker.io/mmdebstrap where missing and start dockerd")
    b.set_defaults(func=cmd_image_build)

    try:
        from provision import artifacts
    except ImportError:
        pass
    else:
        artifacts.register(sub)
    from provision import etcd_ops

    etcd_ops.register(sub)
    return parser


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--file", default=DEFAULT_SPEC, help=f"cluster spec (default: {DEFAULT_SPEC})")
    p.add_argument("--state-dir", metavar="DIR", help="state dir (default: $PROVISION_STATE_DIR/<name>)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result: int = args.func(args)
        return result
    except spec_mod.SpecError as exc:
        for line in exc.lines():
            err.print(f"error: {line}", markup=False)
        return 2
    except UserError as exc:
        err.print(f"error: {exc}", markup=False)
        return exc.code
    except KeyboardInterrupt:
        err.print("interrupted; the state dir keeps what was done, run the command again to continue")
        return 130

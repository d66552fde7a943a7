"""The `provision` command line. Each verb is a thin layer over the package: spec -> topology -> ..."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jinja2
from rich.console import Console
from rich.table import Table

from provision import __version__, versions
from provision import inventory as inventory_mod
from provision import spec as spec_mod
from provision import steps as steps_mod
from provision import topology as topology_mod
from provision.errors import UserError
from provision.paths import TEMPLATES

DEFAULT_SPEC = "cluster.yaml"

out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def load(path: str) -> spec_mod.Cluster:
    cluster = spec_mod.load_spec(path)
    for w in spec_mod.warnings_for(cluster.spec):
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
    cluster = load(args.file)
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
    out.print("[bold]steps of `provision up`[/]")
    for i, step in enumerate(steps_mod.steps_for(topo), 1):
        detail = f" — {step.detail}" if step.detail else ""
        out.print(f"  {i:>2}. {step.title} [dim]\\[{step.hosts}][/]{detail}")
    if args.render_to:
        out.print()
        out.print(f"rendered the inventory into {args.render_to}")
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

    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands() -> list[Any]:
    from provision import commands

    return commands.REGISTER


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

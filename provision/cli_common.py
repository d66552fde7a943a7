"""What every verb module of the command line shares: output, progress, confirmation, the spec arguments, and
loading the spec. `provision.cli` turns a `SpecError` or `UserError` raised below into one line and an exit code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from provision import lifecycle
from provision import spec as spec_mod
from provision.errors import UserError
from provision.progress import TaskProgress

DEFAULT_SPEC = "cluster.yaml"


out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """A line of progress or outcome, on stderr."""
    err.print(text, markup=False, highlight=False)


def progress() -> TaskProgress:
    """Progress of a long Ansible run, shown task by task on stderr."""
    return TaskProgress(lambda text, style: err.print(text, markup=False, style=style))


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive action; --yes answers, and without a terminal it must."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{question} needs confirmation: pass --yes (stdin is not a terminal)")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("nothing was done (not confirmed)")


def spec_arg(p: argparse.ArgumentParser) -> None:
    """-f/--file: the cluster spec, for every verb that reads one."""
    p.add_argument("-f", "--file", default=DEFAULT_SPEC, help=f"cluster spec (default: {DEFAULT_SPEC})")


def spec_args(p: argparse.ArgumentParser) -> None:
    """-f/--file and --state-dir: for every verb that works on a cluster's machines."""
    spec_arg(p)
    p.add_argument("--state-dir", metavar="DIR", help="state dir (default: $PROVISION_STATE_DIR/<name>)")


def load(path: str, warn: bool = False) -> spec_mod.Cluster:
    """The spec; with warn (plan and up), also what it allows but a person should know."""
    cluster = spec_mod.load_spec(path)
    for w in spec_mod.warnings_for(cluster.spec) if warn else []:
        err.print(f"[yellow]warning:[/] {w}", markup=True)
    return cluster


def cluster_state_dir(cluster: spec_mod.Cluster, args: argparse.Namespace) -> Path:
    """The cluster's state dir: --state-dir, else $PROVISION_STATE_DIR/<name>."""
    return lifecycle.state_dir_for(cluster, args.state_dir)

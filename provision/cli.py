"""The `provision` command line: the parser of every verb module, and the one place errors become exit codes.

Each verb is a thin layer over the package (spec -> topology -> inventory -> runner -> providers -> verify) and
declares its own arguments in its module's `register()`; what they share is in `provision.cli_common`.
"""

from __future__ import annotations

import argparse

from provision import __version__, artifacts, etcd_ops, logs
from provision import spec as spec_mod
from provision.cli_common import err
from provision.commands import certs, cluster, image, nodes
from provision.errors import UserError

VERB_MODULES = (cluster, nodes, logs, image, artifacts, etcd_ops, certs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provision",
        description="Turn one cluster spec into a working kubeadm Kubernetes cluster.",
    )
    parser.add_argument("--version", action="version", version=f"provision {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in VERB_MODULES:
        module.register(sub)
    return parser


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

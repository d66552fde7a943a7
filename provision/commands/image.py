"""`provision image build`: the docker provider's node image."""

from __future__ import annotations

import argparse

from provision.cli_common import say


def cmd_image_build(args: argparse.Namespace) -> int:
    from provision.providers import docker_engine

    if args.install_engine:
        docker_engine.ensure_engine(say)
    else:
        docker_engine.require_engine()
    how = docker_engine.build_image(say, force=args.force, install_tools=args.install_engine)
    say(f"node image {docker_engine.NODE_IMAGE}: {how}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

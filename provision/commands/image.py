"""`provision image build`: the docker provider's node image, or (--vm) the libvirt box."""

from __future__ import annotations

import argparse

from provision.cli_common import say


def cmd_image_build(args: argparse.Namespace) -> int:
    if args.vm:
        from provision.providers import vm_box

        if args.install_engine:
            vm_box.ensure_libvirt(say)
        how = vm_box.build_box(say, force=args.force, install_tools=args.install_engine)
        say(f"VM box {vm_box.BOX}: {how} (use it with provider.vagrant.box: {vm_box.BOX})")
        return 0
    from provision.providers import docker_engine

    if args.install_engine:
        docker_engine.ensure_engine(say)
    else:
        docker_engine.require_engine()
    how = docker_engine.build_image(say, force=args.force, install_tools=args.install_engine)
    say(f"node image {docker_engine.NODE_IMAGE}: {how}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("image", help="build the docker provider's node image, or the libvirt box",
                       description="Manage the node image of the docker provider and the libvirt box.")
    isub = p.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="build the node image (or --vm the libvirt box) once, cached afterwards",
                        description="Build the node image: from debian:bookworm where a registry answers, "
                                    "otherwise from Debian's mirror with mmdebstrap. With --vm, build the libvirt "
                                    "box provision/bookworm from Debian's mirror instead (for sites without "
                                    "Vagrant Cloud).")
    b.add_argument("--vm", action="store_true", help="build the libvirt box provision/bookworm (as root)")
    b.add_argument("--force", action="store_true", help="rebuild even when the image or box exists")
    b.add_argument("--install-engine", action="store_true",
                   help="as root: install what is missing and start its daemons where nothing runs them (docker.io "
                        "and dockerd; with --vm libvirt, QEMU, libvirtd and virtlogd, and the box build's tools)")
    b.set_defaults(func=cmd_image_build)

"""Providers make (or find) the machines and say how Ansible reaches them.

- `docker`: systemd container nodes on this machine (quick tries, our tests).
- `vagrant`: VMs through the repo's Vagrantfile (libvirt, VirtualBox) or Vagrant's docker provider.
- `static`: existing cloud or bare-metal hosts over SSH.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from provision.inventory import Connection
from provision.topology import Topology


class Provider(Protocol):
    def create(self) -> dict[str, Connection]:
        """Make the machines (idempotent) and return how to reach each node."""

    def connections(self) -> dict[str, Connection]:
        """How to reach each node of an existing cluster."""

    def status(self) -> dict[str, str]:
        """Node name -> state (running, stopped, missing, ...)."""

    def destroy(self) -> None:
        """Remove everything the provider made; leave nothing running."""


def for_topology(topo: Topology, state_dir: Path) -> Provider:
    kind = topo.cluster.spec.provider.type
    if kind == "docker":
        from provision.providers.docker import DockerProvider

        return DockerProvider(topo, state_dir)
    if kind == "vagrant":
        from provision.providers.vagrant import VagrantProvider

        return VagrantProvider(topo, state_dir)
    from provision.providers.static import StaticProvider

    return StaticProvider(topo, state_dir)

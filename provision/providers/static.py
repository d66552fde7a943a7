"""Provider `static`: existing machines (cloud VMs, bare metal) reached over SSH, optionally via a bastion.

Nothing is created or removed here: `create` only says how to reach each host (user, port and key from the
spec), and the SSH pre-check before any role runs names every host that cannot be reached, and why.
"""

from __future__ import annotations

from pathlib import Path

from provision import ssh
from provision.inventory import Connection, default_connections, jump_host
from provision.topology import Topology


class StaticProvider:
    def __init__(self, topo: Topology, state_dir: Path) -> None:
        self.topo = topo
        self.state_dir = state_dir

    def create(self) -> dict[str, Connection]:
        return self.connections()

    def connections(self) -> dict[str, Connection]:
        return default_connections(self.topo)

    def status(self) -> dict[str, str]:
        results = ssh.check_all(self.connections(), self.state_dir / "known_hosts", accept_new=False,
                                timeout=5, jump=jump_host(self.topo.cluster))
        return {r.node: "reachable" if r.ok else f"unreachable: {r.why}" for r in results}

    def destroy(self) -> None:
        """Existing machines stay; `provision reset` cleans Kubernetes off them."""

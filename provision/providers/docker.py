"""Provider `docker`: every node a privileged container with systemd as PID 1 and a real sshd.

Nodes sit on a dedicated Docker network (`provision-<cluster>`) with the fixed addresses of the topology's
address plan; the hostname is the node name. Each container is labelled with its cluster, so `destroy`
finds every node it ever made, even ones since dropped from the spec, and with the state dir that made it: `up`
from another state dir refuses those nodes rather than adopting them (their data, keys and members belong to a
cluster this state dir knows nothing of; kind refuses a cluster name in use the same way). /sys/fs/cgroup is never bind-mounted
(`--cgroupns=private` lets Docker mount a private cgroup tree): a bind mount lets the node's systemd remount
the host's cgroup tree read-only.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provision import ssh
from provision.errors import UserError
from provision.inventory import Connection
from provision.providers.docker_engine import NODE_IMAGE, docker, require_engine, require_image
from provision.topology import Node, Topology

LABEL = "provision.cluster"
STATE_LABEL = "provision.state-dir"  # the state dir that made the node (absolute)


# systemd and its services in each node hold about this many inotify instances (7 measured idle, plus containerd
# and kubelet); the host's per-user limit is shared by every node, and Debian's default (128) fits about 15 nodes.
INOTIFY_PER_NODE = 10
INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")


def check_inotify(new_nodes: int) -> None:
    """Refuse, before any node starts, to boot more nodes than the host's inotify limit lets systemd run in."""
    if not new_nodes:  # a re-run boots nothing: no need to count every process's file descriptors
        return
    try:
        limit = int(INOTIFY_LIMIT.read_text())
    except (OSError, ValueError):
        return
    in_use = 0
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            in_use += os.readlink(fd) == "anon_inode:inotify"
        except OSError:
            continue
    need = INOTIFY_PER_NODE * new_nodes
    if in_use + need > limit:
        raise UserError(f"{new_nodes} new node(s) need about {need} inotify instances (systemd runs in each) but "
                        f"fs.inotify.max_user_instances is {limit} with {in_use} in use: nodes would hang while "
                        f"booting; raise it first: sysctl -w fs.inotify.max_user_instances={max(1024, 2 * (in_use + need))}")


def refuse_nodes_of_another_state_dir(cluster: str, owners: dict[str, str], state_dir: Path) -> None:
    """Nodes of this cluster's name made from another state dir (or an earlier run whose state is gone) are not
    adopted: `up` would run against another cluster's etcd data, keys and members."""
    mine = str(state_dir.resolve())
    foreign = sorted(name for name, owner in owners.items() if owner != mine)
    if foreign:
        made_by = owners[foreign[0]] or "a state dir provision did not record"
        raise UserError(f"cluster {cluster} already has {len(foreign)} node(s) on this machine ({', '.join(foreign)}) "
                        f"made from another state dir ({made_by}): run `provision destroy` with that spec first, "
                        "or give this cluster another name")


class DockerProvider:
    def __init__(self, topo: Topology, state_dir: Path) -> None:
        self.topo = topo
        self.name = topo.cluster.name
        self.state_dir = state_dir
        self.network = f"provision-{self.name}"
        self.key = state_dir / "ssh" / "id_ed25519"
        self.known_hosts = state_dir / "known_hosts"

    # ------------------------------------------------------------ create

    def create(self) -> dict[str, Connection]:
        require_engine()
        require_image()
        listing = self._listing()
        refuse_nodes_of_another_state_dir(self.name, {name: owner for name, (_, owner) in listing.items()},
                                          self.state_dir)
        existing = {name: state for name, (state, _) in listing.items()}
        ssh.ensure_key(self.key)
        self._ensure_network()
        check_inotify(len([n for n in self.topo.nodes if n.name not in existing]))
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: self._ensure_node(n, existing.get(n.name)), self.topo.nodes))
        # A node that was running already and whose host key is pinned is ready: the SSH step checks it is
        # reachable (a re-run then makes no docker exec per node).
        pinned = ssh.pinned(self.known_hosts)
        booting = [n for n in self.topo.nodes
                   if existing.get(n.name) != "running" or ssh.known_host_name(n.address, 22) not in pinned]
        with ThreadPoolExecutor(max_workers=8) as pool:
            # many nodes boot at once on few cores: allow each a little longer the more there are
            timeout = 90 + 4 * len(booting)
            list(pool.map(lambda n: self._ready(n, timeout), booting))
        return self.connections()

    def connections(self) -> dict[str, Connection]:
        return {n.name: Connection(n.address, 22, "root", str(self.key)) for n in self.topo.nodes}

    def _ensure_network(self) -> None:
        proc = docker("network", "inspect", self.network, "--format",
                      "{{range .IPAM.Config}}{{.Subnet}}{{end}}", check=False)
        want = self.topo.node_cidr
        if proc.returncode == 0:
            have = proc.stdout.strip()
            if have != want:
                raise UserError(f"Docker network {self.network} exists with subnet {have}, the spec wants {want}; "
                                f"run `provision destroy` first or set networking.nodeCIDR: {have}")
            return
        assert want is not None and self.topo.gateway is not None
        proc = docker("network", "create", "--driver", "bridge", "--subnet", want, "--gateway", self.topo.gateway,
                      "--label", f"{LABEL}={self.name}", self.network, check=False)
        if proc.returncode != 0:
            reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown error"
            if "overlap" in reason.lower():
                raise UserError(f"node network {want} overlaps a network already on this machine ({reason}); "
                                "set networking.nodeCIDR to a free range")
            raise UserError(f"cannot create Docker network {self.network}: {reason}")

    def _listing(self) -> dict[str, tuple[str, str]]:
        """Container name -> (state, the state dir that made it) for this cluster's nodes, in one `docker ps`
        (the state dir is "" for a node made before nodes were so labelled)."""
        proc = docker("ps", "-a", "--filter", f"label={LABEL}={self.name}", "--format",
                      f'{{{{.Names}}}}\t{{{{.State}}}}\t{{{{.Label "{STATE_LABEL}"}}}}')
        out = {}
        for line in proc.stdout.splitlines():
            name, state, owner = (line.split("\t") + ["", ""])[:3]
            out[name] = (state, owner)
        return out

    def _containers(self) -> dict[str, str]:
        """Container name -> state for this cluster's nodes."""
        return {name: state for name, (state, _) in self._listing().items()}

    def _ensure_node(self, node: Node, state: str | None) -> None:
        if state == "running":
            return
        if state is not None:
            docker("start", node.name)
            return
        args = [
            "run", "-d", "--privileged", "--cgroupns=private",
            # back after a host reboot, as a machine would be; not restarted in a loop when it fails (kind's choice)
            "--restart=on-failure:1",
            "--name", node.name, "--hostname", node.name,
            "--network", self.network, "--ip", node.address,
            "--label", f"{LABEL}={self.name}", "--label", f"provision.node={node.name}",
            "--label", f"{STATE_LABEL}={self.state_dir.resolve()}",
            "--label", f"provision.roles={','.join(node.roles)}",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
            # overlayfs cannot hold containerd's or kubelet's state: give them volumes of their own
            "-v", "/var/lib/containerd", "-v", "/var/lib/kubelet",
        ]
        if Path("/lib/modules").is_dir():
            args += ["-v", "/lib/modules:/lib/modules:ro"]
        if Path("/dev/mapper").is_dir():  # device-mapper volumes (LVM, btrfs/zfs setups) for the kubelet's stats
            args += ["-v", "/dev/mapper:/dev/mapper"]
        proc = docker(*args, NODE_IMAGE, check=False)
        if proc.returncode != 0:
            reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown error"
            raise UserError(f"cannot start node {node.name}: {reason}")

    def _ready(self, node: Node, timeout: float = 90) -> None:
        """Wait for systemd and sshd, authorize the cluster key, pin the node's host key."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = docker("exec", node.name, "sh", "-c", "systemctl is-system-running; systemctl is-active ssh",
                          check=False, timeout=30)
            state, _, sshd = proc.stdout.strip().partition("\n")
            if state in ("running", "degraded") and sshd.strip() == "active":
                break
            time.sleep(0.5)
        else:
            raise UserError(f"node {node.name} did not finish booting within {timeout:.0f}s "
                            f"(systemd: {state or 'no answer'}); see `docker logs {node.name}`")
        public = self.key.with_suffix(".pub").read_text()
        docker("exec", "-i", node.name, "sh", "-c",
               "umask 077; mkdir -p /root/.ssh; cat > /root/.ssh/authorized_keys", input=public)
        host_key = docker("exec", node.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout
        ssh.pin_host_key(self.known_hosts, node.address, 22, host_key)

    # ------------------------------------------------------------ status / destroy

    def status(self) -> dict[str, str]:
        have = self._containers()
        out = {n.name: have.pop(n.name, "missing") for n in self.topo.nodes}
        out.update({name: f"{state} (not in the spec)" for name, state in have.items()})
        return out

    def destroy(self) -> None:
        names = list(self._containers())
        if names:
            docker("rm", "-f", "-v", *names, timeout=600)
        if docker("network", "inspect", self.network, check=False).returncode == 0:
            docker("network", "rm", self.network)

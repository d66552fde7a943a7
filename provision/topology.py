"""Topology: which machine does what.

Turns a resolved `Cluster` into `Node`s (name, address, roles) and the Ansible groups every role and
playbook targets: `etcd`, `control_plane`, `first_control_plane` (runs `kubeadm init`), `workers`,
`loadbalancer`, plus `k8s_cluster` (control planes and workers), `external_etcd` and `api_proxy`
(every Kubernetes node when the endpoint is a local haproxy).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass, field

from provision.spec import Cluster, default_node_cidr, vagrant_backend

# Address plan inside the node network (offsets from the network address), stable when nodes are added:
# adding a worker never renumbers a control plane.
GATEWAY_OFFSET = 1
VIP_OFFSET = 5
ROLE_OFFSETS = {"loadbalancer": 10, "etcd": 20, "control-plane": 30, "worker": 100}
NAME_PREFIX = {"loadbalancer": "lb", "etcd": "etcd", "control-plane": "cp", "worker": "w"}
ROLE_ORDER = ("loadbalancer", "etcd", "control-plane", "worker")


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    roles: tuple[str, ...]
    user: str = "root"
    port: int = 22
    key: str | None = None


@dataclass(frozen=True)
class Topology:
    cluster: Cluster
    nodes: tuple[Node, ...]
    groups: dict[str, list[str]] = field(default_factory=dict)
    endpoint_host: str = ""
    endpoint_port: int = 6443
    node_cidr: str | None = None
    gateway: str | None = None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def roles_of(self, name: str) -> list[str]:
        """Everything a node runs, including what kubeadm puts there (stacked etcd, workloads)."""
        n = self.node(name)
        spec = self.cluster.spec
        out = [role for role in ROLE_ORDER if role in n.roles]
        if "control-plane" in n.roles and spec.etcd.mode == "stacked":
            out.insert(out.index("control-plane"), "etcd (stacked)")
        if spec.topology == "all-in-one" and "control-plane" in n.roles:
            out.append("workloads")
        if spec.endpoint.type == "local-proxy" and ("control-plane" in n.roles or "worker" in n.roles):
            out.append("api-proxy")
        return out


def build(cluster: Cluster, init_node: str | None = None, exclude: Collection[str] = ()) -> Topology:
    """The spec's nodes and groups. `init_node` (from the state) is the control plane that holds the cluster's
    credentials: it stays `first_control_plane` whatever the spec's order. `exclude` leaves nodes out (the
    inventory `remove-node` renders once a node is gone)."""
    spec = cluster.spec
    nodes: list[Node] = []
    node_cidr: str | None = None
    gateway: str | None = None
    if spec.hosts is not None:
        for h in spec.hosts:
            roles = tuple(r for r in ROLE_ORDER if r in h.roles)
            nodes.append(Node(h.name, h.address, roles, h.user, h.port, h.key))
    else:
        counts = spec.nodes
        assert counts is not None
        node_cidr = spec.networking.node_cidr or default_node_cidr(spec.name, vagrant_backend(spec))
        net = ipaddress.IPv4Network(node_cidr)
        gateway = str(net.network_address + GATEWAY_OFFSET)
        per_role = {"loadbalancer": counts.load_balancers, "etcd": counts.etcd,
                    "control-plane": counts.control_planes, "worker": counts.workers}
        for role in ROLE_ORDER:
            for i in range(per_role[role]):
                address = str(net.network_address + ROLE_OFFSETS[role] + i)
                nodes.append(Node(f"{spec.name}-{NAME_PREFIX[role]}{i + 1}", address, (role,)))

    nodes = [n for n in nodes if n.name not in exclude]

    def having(role: str) -> list[str]:
        return [n.name for n in nodes if role in n.roles]

    control_plane = having("control-plane")
    workers = having("worker")
    external = spec.etcd.mode == "external"
    groups = {
        "etcd": having("etcd") if external else list(control_plane),
        "external_etcd": having("etcd") if external else [],
        "control_plane": control_plane,
        "first_control_plane": [init_node] if init_node in control_plane else control_plane[:1],
        "workers": workers,
        "loadbalancer": having("loadbalancer"),
        "k8s_cluster": control_plane + [w for w in workers if w not in control_plane],
    }
    groups["api_proxy"] = list(groups["k8s_cluster"]) if spec.endpoint.type == "local-proxy" else []

    ep = spec.endpoint
    if ep.type == "none":
        first = groups["first_control_plane"]
        host = nodes[[n.name for n in nodes].index(first[0])].address if first else ""
    elif ep.type == "vip":
        if ep.address:
            host = ep.address
        else:
            assert node_cidr is not None
            host = str(ipaddress.IPv4Network(node_cidr).network_address + VIP_OFFSET)
    elif ep.type == "local-proxy":
        host = "127.0.0.1"
    else:
        host = ep.address or ""
    port = ep.port
    if ep.type == "local-proxy" and port == 6443:
        port = 7443  # the proxy cannot share 6443 with the API server on control-plane nodes
    return Topology(cluster=cluster, nodes=tuple(nodes), groups=groups, endpoint_host=host,
                    endpoint_port=port, node_cidr=node_cidr, gateway=gateway)

"""Networking: the pod, service and node ranges (valid, apart, large enough) and the CNI."""

from __future__ import annotations

import ipaddress

from provision.spec.models import CNIS, LEGACY_CNIS, ClusterSpec, default_node_cidr, vagrant_backend
from provision.spec.problems import Problem, shown
from provision.spec.rules.base import DNS_LABEL, MACHINES, Add, Judged, rule

ADDRESSES_BEFORE_WORKERS = 100  # the address plan: control planes, etcd and load balancers below .100


def ranges(spec: ClusterSpec) -> dict[str, str]:
    given = (("networking.podCIDR", spec.networking.pod_cidr), ("networking.serviceCIDR", spec.networking.service_cidr),
             ("networking.nodeCIDR", spec.networking.node_cidr))
    return {field: value for field, value in given if value is not None}


def network_problem(value: str, field: str) -> Problem | None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return Problem(field, f"{shown(value)} is not a network in CIDR form",
                       "write it like 10.244.0.0/16 (host bits zero)")
    if not isinstance(net, ipaddress.IPv4Network):
        return Problem(field, "IPv6 is not supported yet", "use an IPv4 CIDR")
    return None


def networks(spec: ClusterSpec) -> dict[str, ipaddress.IPv4Network]:
    """The spec's ranges that are valid IPv4 networks, by field."""
    return {field: ipaddress.IPv4Network(value) for field, value in ranges(spec).items()
            if network_problem(value, field) is None}


def default_node_network(spec: ClusterSpec) -> ipaddress.IPv4Network | None:
    """The /24 the provider gives this cluster's machines when networking.nodeCIDR is not set."""
    if spec.provider.type == "static" or spec.networking.node_cidr is not None or not DNS_LABEL.match(spec.name):
        return None
    return ipaddress.IPv4Network(default_node_cidr(spec.name, vagrant_backend(spec)))


@rule("networking")
def refuse_a_malformed_network(j: Judged, add: Add) -> None:
    for field, value in ranges(j.spec).items():
        problem = network_problem(value, field)
        if problem is not None:
            add(problem)


@rule("networking")
def refuse_overlapping_networks(j: Judged, add: Add) -> None:
    nets = networks(j.spec)
    fields = list(nets)
    for i, a in enumerate(fields):
        for b in fields[i + 1:]:
            if nets[a].overlaps(nets[b]):
                add(Problem(b, f"{nets[b]} overlaps {a} {nets[a]}", "pick ranges that do not overlap"))


@rule("networking")
def refuse_pod_or_service_ranges_too_small(j: Judged, add: Add) -> None:
    nets = networks(j.spec)
    svc = nets.get("networking.serviceCIDR")
    if svc is not None and svc.prefixlen > 24:
        add(Problem("networking.serviceCIDR", f"{svc} is too small for cluster services", "use /24 or larger"))
    pod = nets.get("networking.podCIDR")
    if pod is not None and pod.prefixlen > 22:
        add(Problem("networking.podCIDR", f"{pod} leaves no room for per-node /24 pod ranges",
                    "use /22 or larger, e.g. 10.244.0.0/16"))


@rule("networking", "name", "provider")
def refuse_ranges_overlapping_the_default_node_network(j: Judged, add: Add) -> None:
    node_net = default_node_network(j.spec)
    if node_net is None:
        return
    for field, net in networks(j.spec).items():
        if net.overlaps(node_net):
            add(Problem(field, f"{net} overlaps this cluster's default node network {node_net}",
                        "pick another range, or set networking.nodeCIDR to one that does not overlap"))


@rule("networking", "name", *MACHINES)
def refuse_a_node_network_too_small_for_the_workers(j: Judged, add: Add) -> None:
    workers = j.counts["worker"]
    default = default_node_network(j.spec)
    if default is not None and ADDRESSES_BEFORE_WORKERS + workers > default.num_addresses - 2:
        add(Problem("nodes.workers", f"{workers} workers do not fit the default node network {default} "
                    f"(at most {default.num_addresses - 2 - ADDRESSES_BEFORE_WORKERS})",
                    "set networking.nodeCIDR to a larger network, e.g. a /16"))
    given = networks(j.spec).get("networking.nodeCIDR")
    if given is not None and j.spec.provider.type != "static" \
            and given.num_addresses - 2 < ADDRESSES_BEFORE_WORKERS + workers:
        add(Problem("networking.nodeCIDR", f"{given} has room for {given.num_addresses - 2} addresses, "
                    f"{ADDRESSES_BEFORE_WORKERS + workers} are laid out", "use a larger network, e.g. a /24 or /16"))


@rule("networking", "name", *MACHINES)
def refuse_more_nodes_of_a_role_than_the_address_plan_holds(j: Judged, add: Add) -> None:
    node_net = default_node_network(j.spec) or networks(j.spec).get("networking.nodeCIDR")
    c = j.counts
    if node_net is not None and j.spec.provider.type != "static" \
            and (c["control-plane"] > 70 or c["etcd"] > 9 or c["loadbalancer"] > 9):
        add(Problem(j.nodes_field, "too many nodes of one role for the address plan",
                    "at most 9 etcd, 9 load balancers and 70 control planes"))


@rule("networking", "hosts")
def refuse_hosts_inside_the_cluster_ranges(j: Judged, add: Add) -> None:
    nets = networks(j.spec)
    for i, h in enumerate(j.spec.hosts or []):
        try:
            ip = ipaddress.ip_address(h.address)
        except ValueError:
            continue
        for field, net in nets.items():
            if field != "networking.nodeCIDR" and ip in net:
                add(Problem(f"hosts[{i}].address", f"{ip} lies inside {field} {net}",
                            f"move {field} to a range the machines do not use"))


@rule("networking")
def refuse_an_unknown_or_unacknowledged_legacy_cni(j: Judged, add: Add) -> None:
    net = j.spec.networking
    if net.cni not in CNIS:
        add(Problem("networking.cni", f"{shown(net.cni)} is not a known CNI", f"use one of: {', '.join(CNIS)}"))
    elif net.cni in LEGACY_CNIS and not net.allow_legacy_cni:
        add(Problem("networking.cni", "weave is legacy: Weaveworks shut down and only the community fork "
                    "(rajch/weave) is maintained", "set networking.allowLegacyCNI: true to use it anyway, "
                    "or pick calico, flannel or cilium"))

"""The API endpoint: a load-balanced address for several control planes, and what each endpoint type needs."""

from __future__ import annotations

import ipaddress

from provision.spec.problems import Problem, shown
from provision.spec.rules.base import MACHINES, Add, Judged, is_address, rule


@rule("endpoint", "topology", *MACHINES)
def refuse_several_control_planes_without_an_endpoint(j: Judged, add: Add) -> None:
    cps = j.counts["control-plane"]
    if cps > 1 and j.spec.endpoint.type == "none" and j.spec.topology in ("multi-master", "ha"):
        add(Problem("endpoint.type", f"{cps} control planes need a load-balanced API endpoint",
                    "set endpoint.type to vip, local-proxy or external"))


@rule("endpoint")
def refuse_an_endpoint_address_that_does_not_fit_its_type(j: Judged, add: Add) -> None:
    ep = j.spec.endpoint
    if ep.type == "external" and not ep.address:
        add(Problem("endpoint.address", "an external endpoint needs its address",
                    "set endpoint.address to the load balancer's IP or DNS name"))
    if ep.address is not None and not is_address(ep.address):
        add(Problem("endpoint.address", f"{shown(ep.address)} is not an IP address or host name",
                    "write an address such as 192.0.2.100"))
    if ep.type == "local-proxy" and ep.address:
        add(Problem("endpoint.address", "local-proxy listens on every node's loopback and takes no address",
                    "remove endpoint.address"))


@rule("endpoint", *MACHINES)
def refuse_a_vip_without_load_balancers_or_an_ipv4_address(j: Judged, add: Add) -> None:
    ep = j.spec.endpoint
    if ep.type != "vip":
        return
    if j.counts["loadbalancer"] == 0:
        add(Problem(j.count_field("loadBalancers"), "a vip endpoint needs load-balancer nodes (haproxy + keepalived)",
                    "set 2 load balancers, or endpoint.type: local-proxy"))
    if j.spec.provider.type == "static" and not ep.address:
        add(Problem("endpoint.address", "a vip on existing hosts needs a free address on their network",
                    "set endpoint.address to an unused IP in the hosts' subnet"))
    if ep.address is not None:
        try:
            ipaddress.IPv4Address(ep.address)
        except ValueError:
            add(Problem("endpoint.address", "a vip must be an IPv4 address", "write an IP such as 192.0.2.100"))


@rule("endpoint", *MACHINES)
def refuse_load_balancers_without_a_vip(j: Judged, add: Add) -> None:
    ep = j.spec.endpoint
    if ep.type != "vip" and j.counts["loadbalancer"]:
        add(Problem(j.count_field("loadBalancers"),
                    f"load-balancer nodes are only used by endpoint.type vip (it is {ep.type})",
                    "remove them, or set endpoint.type: vip"))

"""The provider and its machines: counts for providers that create machines, a list for existing hosts."""

from __future__ import annotations

import ipaddress

from provision.spec.models import API_SERVER_PORT
from provision.spec.problems import Problem, shown
from provision.spec.rules.base import DNS_LABEL, MACHINES, POSIX_USER, Add, Judged, is_address, rule
from provision.spec.rules.networking import default_node_network, network_problem, networks


@rule(*MACHINES)
def refuse_machines_the_provider_cannot_use(j: Judged, add: Add) -> None:
    """Without a machine list that fits the provider, every rule that counts nodes would only mislead."""
    spec, provider = j.spec, j.spec.provider.type
    if provider == "static":
        if spec.hosts is None:
            add(Problem("hosts", "the static provider needs the list of existing machines",
                        "add 'hosts:' with name, address and roles for each machine"))
        if spec.nodes is not None:
            add(Problem("nodes", "counts are for providers that create machines",
                        "remove 'nodes:' and list the machines under 'hosts:'"))
    elif spec.hosts is not None:
        add(Problem("hosts", f"the {provider} provider creates its own machines",
                    "remove 'hosts:' and set counts under 'nodes:', or use provider.type: static"))
    if spec.provider.vagrant is not None and provider != "vagrant":
        add(Problem("provider.vagrant", f"settings for vagrant, but provider.type is {provider}",
                    "remove the block or set provider.type: vagrant"))
    if spec.provider.static is not None and provider != "static":
        add(Problem("provider.static", f"settings for static hosts, but provider.type is {provider}",
                    "remove the block or set provider.type: static"))


@rule("provider")
def refuse_an_unusable_bastion(j: Judged, add: Add) -> None:
    bastion = j.spec.provider.static.bastion if j.spec.provider.static else None
    if bastion is None:
        return
    if not is_address(bastion.address):
        add(Problem("provider.static.bastion.address", f"{shown(bastion.address)} is not an IP address or "
                    "host name", "write an address such as 192.0.2.1 or a DNS name"))
    if not POSIX_USER.match(bastion.user):
        add(Problem("provider.static.bastion.user", f"{shown(bastion.user)} is not a valid user name",
                    "use a POSIX user name such as 'debian'"))


@rule("hosts")
def refuse_an_invalid_host_entry(j: Judged, add: Add) -> None:
    for i, h in enumerate(j.spec.hosts or []):
        if not DNS_LABEL.match(h.name):
            add(Problem(f"hosts[{i}].name", f"{shown(h.name)} is not a valid node name",
                        "use lowercase letters, digits and '-' (at most 63), e.g. 'cp1'"))
        if not is_address(h.address):
            add(Problem(f"hosts[{i}].address", f"{shown(h.address)} is not an IP address or host name",
                        "write an address such as 192.0.2.10 or a DNS name"))
        if len(set(h.roles)) != len(h.roles):
            add(Problem(f"hosts[{i}].roles", "a role is listed twice", "list each role once"))
        if not POSIX_USER.match(h.user):
            add(Problem(f"hosts[{i}].user", f"{shown(h.user)} is not a valid user name",
                        "use a POSIX user name such as 'debian'"))


@rule("hosts")
def refuse_two_hosts_with_one_name_or_address(j: Judged, add: Add) -> None:
    names: dict[str, int] = {}
    addrs: dict[str, int] = {}
    for i, h in enumerate(j.spec.hosts or []):
        if h.name in names:
            add(Problem(f"hosts[{i}].name", f"duplicate name {shown(h.name)} (also hosts[{names[h.name]}])",
                        "give every host its own name"))
        names.setdefault(h.name, i)
        key = f"{h.address}:{h.port}"
        if key in addrs:
            add(Problem(f"hosts[{i}].address", f"duplicate address {key} (also hosts[{addrs[key]}])",
                        "give every host its own address"))
        addrs.setdefault(key, i)


@rule("hosts", "endpoint")
def refuse_load_balancer_on_api_server_port(j: Judged, add: Add) -> None:
    """A host that is both a control plane and a load balancer: haproxy would listen on the API server's own port."""
    for i, host in enumerate(j.spec.hosts or []):
        if {"control-plane", "loadbalancer"} <= set(host.roles) and j.spec.endpoint.port == API_SERVER_PORT:
            add(Problem(f"hosts[{i}].roles", f"{host.name} is a control plane and a load balancer: haproxy "
                        f"would take port {API_SERVER_PORT}, where its API server listens",
                        "set endpoint.port to another port (e.g. 8443), or put the load balancer on its own host"))


@rule("provider")
def refuse_libvirt_settings_on_another_backend(j: Judged, add: Add) -> None:
    """driver, diskGiB and managementNetwork are vagrant-libvirt's: another backend would ignore them silently."""
    vagrant = j.spec.provider.vagrant
    if vagrant is None or vagrant.backend == "libvirt":
        return
    given = {"driver": "driver" in vagrant.model_fields_set, "diskGiB": vagrant.disk_gib is not None,
             "managementNetwork": vagrant.management_network is not None}
    for key, set_here in given.items():
        if set_here:
            add(Problem(f"provider.vagrant.{key}", f"a libvirt setting, but the backend is {vagrant.backend}",
                        f"remove {key}, or set provider.vagrant.backend: libvirt"))


@rule("provider", "networking")
def refuse_an_unusable_management_network(j: Judged, add: Add) -> None:
    """vagrant-libvirt makes (or reuses) the management network by name: one CIDR per name, apart from the nodes'."""
    vagrant = j.spec.provider.vagrant
    mgmt = vagrant.management_network if vagrant else None
    if mgmt is None:
        return
    if not DNS_LABEL.match(mgmt.name) or mgmt.name == "default":
        add(Problem("provider.vagrant.managementNetwork.name", f"{shown(mgmt.name)} cannot name the management "
                    "network", "use lowercase letters, digits and '-', not 'default' (the machine's own network)"))
    problem = network_problem(mgmt.cidr, "provider.vagrant.managementNetwork.cidr")
    if problem is not None:
        add(problem)
        return
    net = ipaddress.IPv4Network(mgmt.cidr)
    if not 16 <= net.prefixlen <= 29:
        add(Problem("provider.vagrant.managementNetwork.cidr", f"{net} is a /{net.prefixlen}",
                    "use a /16 to /29, e.g. 192.168.121.0/24"))
    nodes = networks(j.spec).get("networking.nodeCIDR") or default_node_network(j.spec)
    if nodes is not None and net.overlaps(nodes):
        add(Problem("provider.vagrant.managementNetwork.cidr", f"{net} overlaps the nodes' network {nodes}",
                    "pick a range apart from networking.nodeCIDR"))

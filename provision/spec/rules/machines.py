"""The provider and its machines: counts for providers that create machines, a list for existing hosts."""

from __future__ import annotations

from provision.spec.models import API_SERVER_PORT
from provision.spec.problems import Problem, shown
from provision.spec.rules.base import DNS_LABEL, MACHINES, POSIX_USER, Add, Judged, is_address, rule


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

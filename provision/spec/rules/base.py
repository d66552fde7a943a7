"""What every rule shares: the spec under judgement, the facts several rules need, and how a rule reports.

A rule is a small function named for what it refuses. It declares the spec's top-level sections it reads, so
that when some sections fail the schema the rules that read only the others still judge the spec.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

from provision.spec.models import NODE_ROLES, ClusterSpec, NodeCounts
from provision.spec.problems import Problem

Add = Callable[[Problem], None]

# Sections that say which machines run what: every rule that counts nodes by role reads all three.
MACHINES = ("provider", "nodes", "hosts")

# RFC 1123 label: what a hostname, a Kubernetes node name and a Docker container name all accept.
# Anchored with \Z, not $ (which also matches before a trailing newline); [0-9], not \d (any Unicode digit).
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
HOSTNAME = re.compile(r"^(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\Z")
VERSION = re.compile(r"^v?([0-9]+)\.([0-9]+)(\.([0-9]+))?\Z")
PATCH_VERSION = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+\Z")
POSIX_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\Z")
TEMPLATE_MARK = re.compile(r"\{[{%#]")


class Judged:
    """The spec, with the facts many rules ask about worked out once."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.counts = role_counts(spec)
        self.external = spec.etcd.mode == "external"
        self.nodes_field = "hosts" if spec.hosts is not None else "nodes"

    def count_field(self, key: str) -> str:
        """Where a role's count is written: nodes.<key> for counts, the hosts list for existing machines."""
        return f"nodes.{key}" if self.nodes_field == "nodes" else "hosts"


@dataclass(frozen=True)
class Rule:
    judge: Callable[[Judged, Add], None]
    reads: frozenset[str]

    @property
    def name(self) -> str:
        return self.judge.__name__

    def __call__(self, judged: Judged, add: Add) -> None:
        self.judge(judged, add)


def rule(*sections: str) -> Callable[[Callable[[Judged, Add], None]], Rule]:
    """Mark a function as a rule reading these top-level sections (as the spec spells them)."""
    def wrap(judge: Callable[[Judged, Add], None]) -> Rule:
        return Rule(judge, frozenset(sections))
    return wrap


def role_counts(spec: ClusterSpec) -> dict[str, int]:
    if spec.hosts is not None:
        return {r: sum(r in h.roles for h in spec.hosts) for r in NODE_ROLES}
    n = spec.nodes or NodeCounts()
    return {"control-plane": n.control_planes, "worker": n.workers, "etcd": n.etcd,
            "loadbalancer": n.load_balancers}


def is_address(value: str) -> bool:
    """An IP address of one machine, or a host name."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return bool(HOSTNAME.match(value)) and not value.replace(".", "").isdigit()
    if "%" in value:
        return False  # an IPv6 scope (fe80::1%eth0) may hold any text, spaces and '$(...)' included
    return not (ip.is_unspecified or ip.is_multicast or value == "255.255.255.255")

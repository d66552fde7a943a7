"""The Debian packages each node needs, by what the topology gives it.

os_prep installs a node's packages in ONE apt transaction at the start of `up` (its own, plus the ones later
roles need, handed to it as `os_prep_extra_packages`): a node then pays one round of `apt-get update`,
downloads and unpacks instead of one per step. The transaction keeps services stopped (policy-rc.d), so no
daemon starts on its package's defaults before its role has configured it. Each role still installs its own
package when it runs alone (molecule, or a day-2 playbook); in `up` it finds it installed.

Packages from pkgs.k8s.io (artifacts mode online) are not here: their apt source is kube_packages' own work.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from provision.paths import ROLES
from provision.topology import Topology

# What each role installs from the distribution when it runs alone (its tasks name the same packages).
CONTAINERD = ["containerd"]
HAPROXY = ["haproxy"]
KEEPALIVED = ["keepalived"]
ETCD = ["etcd-server", "etcd-client"]


def extra_packages(topo: Topology, node: str) -> list[str]:
    """The distribution packages the roles after os_prep will install on this node, in role order."""
    g = topo.groups
    cluster = topo.cluster
    out: list[str] = []
    if node in g["external_etcd"] and cluster.spec.etcd.source == "distro":
        out += ETCD
    if node in g["loadbalancer"] or node in g["api_proxy"]:
        out += HAPROXY
    if node in g["loadbalancer"]:
        out += KEEPALIVED
    if node in g["k8s_cluster"] and cluster.containerd_source == "distro":
        out += CONTAINERD
    return out


@cache
def os_prep_defaults() -> dict[str, Any]:
    """os_prep's documented defaults (roles/os_prep/defaults/main.yml)."""
    return dict(yaml.safe_load((ROLES / "os_prep" / "defaults" / "main.yml").read_text()))


def os_prep_packages() -> tuple[str, ...]:
    """os_prep's own packages with its default time sync daemon, as its defaults name them."""
    defaults = os_prep_defaults()
    daemons = yaml.safe_load((ROLES / "os_prep" / "vars" / "main.yml").read_text())["os_prep_time_sync_daemons"]
    return (*defaults["os_prep_packages"], daemons[defaults["os_prep_time_sync"]]["package"])


def os_prep_installs_recommends() -> bool:
    """Whether os_prep's transaction installs the packages' Recommends too (its default)."""
    return bool(os_prep_defaults()["os_prep_install_recommends"])


def node_packages(topo: Topology, node: str) -> list[str]:
    """Every distribution package os_prep installs on this node in `up` (bench/cluster.py's floor uses it)."""
    return [*os_prep_packages(), *extra_packages(topo, node)]

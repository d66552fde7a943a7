"""Inventory: render the topology into Ansible files with the Jinja templates under `templates/`.

Same spec, same bytes: nothing here reads the clock, the environment or the order of a set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

from provision import addon_files, images, packages, registry_auth, versions
from provision.paths import TEMPLATES
from provision.spec import Cluster
from provision.topology import Topology


@dataclass(frozen=True)
class Connection:
    """How Ansible reaches one node (the provider knows; the spec gives it for static hosts)."""

    host: str
    port: int = 22
    user: str = "root"
    key: str | None = None


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def default_connections(topo: Topology, key: str | None = None) -> dict[str, Connection]:
    """What the spec alone says: each node's own address, or the static host's user, port and key."""
    out = {}
    for n in topo.nodes:
        node_key = str(topo.cluster.path(n.key)) if n.key else key
        out[n.name] = Connection(n.address, n.port, n.user, node_key)
    return out


def jump_host(cluster: Cluster) -> Connection | None:
    """The bastion that static hosts are reached through, if the spec names one."""
    static = cluster.spec.provider.static
    if static is None or static.bastion is None:
        return None
    b = static.bastion
    return Connection(b.address, b.port, b.user, str(cluster.path(b.key)) if b.key else None)


def render(topo: Topology, connections: dict[str, Connection] | None = None) -> dict[str, str]:
    """Return {relative path: file text} for the inventory of this topology."""
    conns = connections or default_connections(topo)
    c = topo.cluster
    spec = c.spec
    nodes = [
        {
            "name": n.name,
            "address": n.address,
            "roles": n.roles,
            "ssh_host": conns[n.name].host,
            "ssh_port": conns[n.name].port,
            "ssh_user": conns[n.name].user,
            "ssh_key": conns[n.name].key,
            "extra_packages": packages.extra_packages(topo, n.name),
        }
        for n in topo.nodes
    ]
    artifacts_dir = str(c.path(spec.artifacts.dir)) if spec.artifacts.dir else None
    registry_mirror_ca = str(c.path(spec.artifacts.ca_file)) if spec.artifacts.ca_file else None
    art = spec.artifacts
    registry_mirror_auth = (registry_auth.mirror_auth(c.path(art.auth_file), art.registry)
                            if art.auth_file and art.registry else None)
    context = {
        "source": c.source,
        "cluster_name": c.name,
        "spec": spec,
        "nodes": nodes,
        # provision_converged: filled during a run by the survey step (playbooks/survey.yml), empty until then
        "groups": {**topo.groups, "provision_converged": []},
        "kubernetes_version": c.kubernetes_version,
        "kubernetes_minor": versions.kubernetes_minor(c.kubernetes_version),
        "etcd_version": c.etcd_version,
        "endpoint_host": topo.endpoint_host,
        "endpoint_port": topo.endpoint_port,
        "node_cidr": topo.node_cidr,
        "cni_version": versions.CNI_VERSIONS.get(spec.networking.cni),
        "cni_download_checksums": addon_files.download_checksums(spec.networking.cni),
        "pause_image": versions.pause_image(c.kubernetes_version),
        "containerd_source": c.containerd_source,
        "containerd_version": c.containerd_version,
        "containerd_floor": versions.containerd_floor(c.kubernetes_version),
        "containerd_sha256": versions.CONTAINERD_SHA256,
        "runc_version": versions.RUNC_VERSION,
        "runc_sha256": versions.RUNC_SHA256,
        "helm_version": versions.HELM_VERSION,
        "dashboard_version": versions.DASHBOARD_VERSIONS.get(spec.dashboard.type),
        "artifacts_dir": artifacts_dir,
        "registry_mirror_ca": registry_mirror_ca,
        "registry_mirror_auth": registry_mirror_auth,
        "kubeadm_images": [image.ref for image in images.kubeadm_images(c.kubernetes_version)],
        "etc_hosts_entries": [f"{n.address} {n.name}" for n in topo.nodes if n.address],
    }
    return {
        "inventory/hosts.yml": _ENV.get_template("inventory.yml.j2").render(context),
        "inventory/group_vars/all.yml": _ENV.get_template("group_vars/all.yml.j2").render(context),
    }


def write(files: dict[str, str], state_dir: Path) -> list[Path]:
    """Write rendered files under the state dir (0700), rewriting only what changed."""
    written = []
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    for rel, text in files.items():
        path = state_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_text() == text:
            continue
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        written.append(path)
    return written

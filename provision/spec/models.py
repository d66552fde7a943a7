"""The spec's schema: every section a person may write, its keys, types, ranges and defaults.

Types and ranges are judged here (pydantic, strict); what depends on several fields is judged by `rules`.
"""

from __future__ import annotations

import zlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from provision import versions

API_VERSION = "provision.dev/v1alpha1"
TOPOLOGIES = ("all-in-one", "single-master", "multi-master", "ha")
CNIS = ("calico", "flannel", "cilium", "weave")
LEGACY_CNIS = ("weave",)
NODE_ROLES = ("control-plane", "worker", "etcd", "loadbalancer")
API_SERVER_PORT = 6443  # where kubeadm's API servers listen (InitConfiguration's bindPort)



def _alias(name: str) -> str:
    return to_camel(name).replace("Cidr", "CIDR").replace("Mib", "MiB").replace("Gib", "GiB").replace("Cni", "CNI")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=_alias, populate_by_name=True, strict=True)


class KubernetesSpec(_Model):
    version: str = versions.DEFAULT_KUBERNETES_MINOR
    # kubeadm's preflight checks whose errors are warnings (its --ignore-preflight-errors), e.g. NumCPU on a
    # 1-CPU control plane; provision's own preflight follows NumCPU and Mem
    ignore_preflight_errors: list[str] = Field(default_factory=list)


class ManagementNetworkSpec(_Model):
    """libvirt only: the NAT network Vagrant reaches each VM on (vagrant-libvirt's own defaults; never the
    machine's `default` network)."""
    name: str = "vagrant-libvirt"
    cidr: str = "192.168.121.0/24"


class VagrantSpec(_Model):
    backend: Literal["libvirt", "virtualbox", "docker"] = "libvirt"
    box: str = "debian/bookworm64"
    # libvirt only: kvm (hardware virtualization) or qemu (software emulation, where /dev/kvm cannot run a guest)
    driver: Literal["kvm", "qemu"] = "kvm"
    cpus: int = Field(2, ge=1, le=64)
    memory_mib: int = Field(2048, ge=512, le=262144)
    disk_gib: int | None = Field(None, ge=4, le=4096)  # libvirt only: the root disk grown to this; None: the box's
    management_network: ManagementNetworkSpec | None = None  # libvirt only


class SSHTarget(_Model):
    address: str
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    key: str | None = None


class StaticSpec(_Model):
    bastion: SSHTarget | None = None


class ProviderSpec(_Model):
    type: Literal["docker", "vagrant", "static"] = "docker"
    vagrant: VagrantSpec | None = None
    static: StaticSpec | None = None


class NodeCounts(_Model):
    control_planes: int = Field(1, ge=0, le=99)
    workers: int = Field(0, ge=0, le=5000)
    etcd: int = Field(0, ge=0, le=99)
    load_balancers: int = Field(0, ge=0, le=9)


class HostSpec(_Model):
    name: str
    address: str
    roles: list[Literal["control-plane", "worker", "etcd", "loadbalancer"]] = Field(min_length=1)
    user: str = "root"
    port: int = Field(22, ge=1, le=65535)
    key: str | None = None


class EtcdSpec(_Model):
    mode: Literal["stacked", "external"] = "stacked"
    version: str | None = None
    source: Literal["release", "distro", "artifacts"] = "release"


class EndpointSpec(_Model):
    type: Literal["none", "vip", "local-proxy", "external"] = "none"
    address: str | None = None
    port: int = Field(6443, ge=1, le=65535)


class NetworkingSpec(_Model):
    node_cidr: str | None = None
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/12"
    cni: str = "calico"
    allow_legacy_cni: bool = False


class RuntimeSpec(_Model):
    name: Literal["containerd"] = "containerd"
    cgroup_driver: Literal["systemd"] = "systemd"
    # None: the upstream release (online) or the artifacts directory's copy of it (offline)
    source: Literal["distro", "release", "artifacts"] | None = None
    version: str | None = None
    # Run a containerd below the Kubernetes minor's floor anyway (labs and tests; plan warns).
    allow_unsupported_version: bool = False


class DashboardSpec(_Model):
    type: Literal["headlamp", "kubernetes-dashboard", "none"] = "headlamp"
    access: Literal["read-only", "admin"] = "read-only"


class ArtifactsSpec(_Model):
    mode: Literal["online", "offline"] = "online"
    dir: str | None = None
    # host:port of the site's registry mirror: offline nodes pull every image through it (containerd hosts.toml)
    # instead of importing the directory's archives; `provision artifacts push` fills it from the directory.
    registry: str | None = None
    ca_file: str | None = None  # the mirror's CA certificate (PEM), when it is not in the nodes' trust store
    # The mirror's credentials: a containers auth file (`skopeo login --authfile FILE <mirror>` writes it), never
    # the credentials themselves in the spec.
    auth_file: str | None = None


class ClusterSpec(_Model):
    api_version: Literal["provision.dev/v1alpha1"]
    kind: Literal["Cluster"]
    name: str
    topology: Literal["all-in-one", "single-master", "multi-master", "ha"]
    kubernetes: KubernetesSpec = KubernetesSpec()
    provider: ProviderSpec = ProviderSpec()
    nodes: NodeCounts | None = None
    hosts: list[HostSpec] | None = None
    etcd: EtcdSpec = EtcdSpec()
    endpoint: EndpointSpec = EndpointSpec()
    networking: NetworkingSpec = NetworkingSpec()
    container_runtime: RuntimeSpec = RuntimeSpec()
    dashboard: DashboardSpec = DashboardSpec()
    artifacts: ArtifactsSpec = ArtifactsSpec()


# ---------------------------------------------------------------- defaults derived from a spec


def default_node_cidr(name: str, vagrant_backend: str | None = None) -> str:
    """A /24 per cluster name, so two local clusters do not collide: 10.250.X.0/24. VirtualBox (6.1.28+) accepts
    host-only networks only inside 192.168.56.0/21 by default, so its clusters get one of those eight /24s."""
    if vagrant_backend == "virtualbox":
        return f"192.168.{56 + zlib.crc32(name.encode()) % 8}.0/24"
    return f"10.250.{zlib.crc32(name.encode()) % 250}.0/24"


def vagrant_backend(spec: ClusterSpec) -> str | None:
    if spec.provider.type != "vagrant":
        return None
    return spec.provider.vagrant.backend if spec.provider.vagrant else "libvirt"


"""The ordered steps of `provision up`, derived from the topology. `plan` prints them; `up` runs them."""

from __future__ import annotations

from dataclasses import dataclass

from provision.spec import ClusterSpec, VagrantSpec
from provision.topology import Topology


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    hosts: str  # an Ansible group or pattern; "local" for work on this machine
    detail: str = ""
    playbook: str | None = None  # under playbooks/
    idle: str = "nothing to run here"  # the outcome where there is no playbook to run


def vagrant_machines(spec: ClusterSpec) -> str:
    """Vagrant's provider, and for libvirt how the CPU runs: kvm, or qemu's emulation (3-30x slower)."""
    settings = spec.provider.vagrant or VagrantSpec()
    if settings.backend != "libvirt":
        return f"provider {settings.backend}"
    how = "hardware virtualization" if settings.driver == "kvm" else "emulated CPU, no KVM"
    return f"provider libvirt, driver {settings.driver} ({how})"


def steps_for(topo: Topology) -> list[Step]:
    spec = topo.cluster.spec
    g = topo.groups
    provider = spec.provider.type
    n = len(topo.nodes)
    out: list[Step] = []
    if provider == "docker":
        out.append(Step("machines", "create machines", "local",
                        f"{n} systemd container node(s) on Docker network {spec.name} ({topo.node_cidr})"))
    elif provider == "vagrant":
        out.append(Step("machines", "create machines", "local", f"vagrant up: {n} machine(s), {vagrant_machines(spec)}"))
    else:
        out.append(Step("machines", "check existing hosts", "local",
                        f"{n} host(s) over SSH; every unreachable host is named before any role runs"))
    out.append(Step("ssh", "wait for SSH and record host keys", "all", "host keys pinned in the state dir"))
    out.append(Step("preflight", "check OS, architecture, CPU and memory per role", "all", "", "preflight.yml"))
    out.append(Step("survey", "read every node's state in one round trip", "all",
                    "nodes where no role finds anything to do are left out of the steps below", "survey.yml"))
    out.append(Step("os", "prepare the OS", "all",
                    "swap off, overlay + br_netfilter, sysctls, kubeadm's packages, time sync, /etc/hosts",
                    "os.yml"))
    if g["external_etcd"]:
        out.append(Step("etcd", "external etcd with mTLS", "external_etcd",
                        f"{len(g['external_etcd'])} member(s), etcd {topo.cluster.etcd_version}", "etcd.yml"))
    ep = spec.endpoint.type
    if ep == "vip":
        out.append(Step("endpoint", "API endpoint: haproxy + keepalived", "loadbalancer",
                        f"VIP {topo.endpoint_host}:{topo.endpoint_port} -> control planes :6443", "endpoint.yml"))
    elif ep == "local-proxy":
        out.append(Step("endpoint", "API endpoint: local haproxy on every node", "api_proxy",
                        f"127.0.0.1:{topo.endpoint_port} -> control planes :6443", "endpoint.yml"))
    elif ep == "external":
        out.append(Step("endpoint", "API endpoint: external load balancer", "local",
                        f"{topo.endpoint_host}:{topo.endpoint_port} (managed outside provision)"))
    out.append(Step("containerd", "containerd (systemd cgroup driver)", "k8s_cluster",
                    f"source: {topo.cluster.containerd_source}, "
                    + (f"containerd {topo.cluster.containerd_version}" if topo.cluster.containerd_version
                       else "the distribution's package"), "containerd.yml"))
    out.append(Step("kubernetes", "kubeadm, kubelet, kubectl", "k8s_cluster",
                    f"{topo.cluster.kubernetes_version} from "
                    + ("pkgs.k8s.io" if spec.artifacts.mode == "online" else "the artifacts directory"),
                    "kubernetes.yml"))
    out.append(Step("init", "kubeadm init", "first_control_plane", ", ".join(g["first_control_plane"]),
                    "init.yml"))
    others = g["control_plane"][1:]
    if others:
        out.append(Step("join-control-planes", "join control planes, one at a time", "control_plane",
                        ", ".join(others), "join-control-planes.yml"))
    if g["workers"]:
        out.append(Step("join-workers", "join workers in parallel", "workers",
                        f"{len(g['workers'])} worker(s)", "join-workers.yml"))
    out.append(Step("cni", f"CNI: {spec.networking.cni}", "first_control_plane",
                    f"pod network {spec.networking.pod_cidr}", "cni.yml"))
    if spec.dashboard.type != "none":
        out.append(Step("dashboard", f"dashboard: {spec.dashboard.type}", "first_control_plane",
                        f"{spec.dashboard.access} service account", "dashboard.yml"))
    out.append(Step("verify", "verify nodes, system pods, DNS and service traffic", "local"))
    return out

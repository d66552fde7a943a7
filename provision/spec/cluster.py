"""The resolved cluster: a spec that passed every check, and what a person should be warned about."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provision import versions
from provision.spec.models import ClusterSpec
from provision.spec.rules import below_floor_text, containerd_below_floor, containerd_source, role_counts


@dataclass(frozen=True)
class Cluster:
    """A spec that passed every check, with the preset filled in."""

    spec: ClusterSpec
    base_dir: Path
    source: str = "<spec>"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kubernetes_version(self) -> str:
        return versions.resolve_kubernetes(self.spec.kubernetes.version)

    @property
    def containerd_source(self) -> str:
        return containerd_source(self.spec)

    @property
    def containerd_version(self) -> str | None:
        """The upstream version a release/artifacts install uses; None for the distribution's package."""
        if self.containerd_source == "distro":
            return None
        return (self.spec.container_runtime.version or versions.CONTAINERD_VERSION).removeprefix("v")

    @property
    def etcd_version(self) -> str:
        if self.spec.etcd.version:
            return self.spec.etcd.version.removeprefix("v")
        return versions.ETCD_FOR_KUBERNETES[versions.kubernetes_minor(self.kubernetes_version)]

    def path(self, value: str) -> Path:
        """A path from the spec, relative to the spec file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


def warnings_for(spec: ClusterSpec) -> list[str]:
    """Things that are allowed but that a person should know about."""
    out = []
    if spec.networking.cni == "weave":
        out.append("networking.cni: weave is legacy (Weaveworks shut down); using the community fork rajch/weave")
    if spec.dashboard.type == "kubernetes-dashboard":
        out.append("dashboard.type: kubernetes-dashboard was archived upstream in 2026-01; headlamp is its successor")
    if spec.dashboard.access == "admin" and spec.dashboard.type != "none":
        out.append("dashboard.access: admin gives the dashboard's service account cluster-admin")
    if spec.container_runtime.allow_unsupported_version and (found := containerd_below_floor(spec)):
        out.append(f"containerRuntime: {below_floor_text(found)}; allowUnsupportedVersion is set")
    if spec.endpoint.type == "vip" and role_counts(spec)["loadbalancer"] == 1:
        out.append("endpoint: one load-balancer node holds the VIP alone; add a second for failover")
    return out

"""Every pinned version in one place.

A spec may name a minor ("1.36") or an exact patch ("1.36.4"); a minor resolves to the patch pinned here.
"""

from __future__ import annotations

# Newest patch of each supported minor that this release of provision was built against.
KUBERNETES_PATCHES: dict[str, str] = {
    "1.35": "1.35.10",
    "1.36": "1.36.6",
    "1.37": "1.37.2",
}
DEFAULT_KUBERNETES_MINOR = "1.37"
DEFAULT_KUBERNETES_VERSION = KUBERNETES_PATCHES[DEFAULT_KUBERNETES_MINOR]
SUPPORTED_MINORS = tuple(KUBERNETES_PATCHES)

# etcd release kubeadm uses for each minor (external etcd defaults to the same).
ETCD_FOR_KUBERNETES: dict[str, str] = {
    "1.35": "3.6.5",
    "1.36": "3.6.5",
    "1.37": "3.6.5",
}

PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"

# Pinned add-ons (manifests/charts come from these versions online, or from the artifacts directory).
CNI_VERSIONS: dict[str, str] = {
    "calico": "v3.31.0",  # Tigera operator
    "flannel": "v0.27.4",
    "cilium": "1.18.3",
    "weave": "v2.8.10",  # community fork rajch/weave (legacy)
}
DASHBOARD_VERSIONS: dict[str, str] = {
    "headlamp": "0.38.0",
    "kubernetes-dashboard": "7.14.0",  # archived upstream; legacy
}


def resolve_kubernetes(version: str) -> str:
    """'1.36' -> '1.36.6'; '1.36.4' -> '1.36.4'. Callers validate the minor first."""
    parts = version.removeprefix("v").split(".")
    if len(parts) == 2:
        return KUBERNETES_PATCHES[".".join(parts)]
    return ".".join(parts)


def kubernetes_minor(version: str) -> str:
    return ".".join(version.removeprefix("v").split(".")[:2])


def version_key(version: str) -> tuple[int, ...]:
    """'1.36.6' -> (1, 36, 6), for comparing versions."""
    return tuple(int(p) for p in version.removeprefix("v").split("."))

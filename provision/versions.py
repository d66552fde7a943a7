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

# Where each pin below comes from (read 2026-11-30; the stored upstream data ends in late August 2026):
#   kubeadm's etcd and pause per minor: kubernetes/minikube pkg/minikube/constants/constants_kubeadm_images.go
#     @383c3aa4 (tracks `kubeadm config images list`): 1.35 etcd 3.6.6-0, pause 3.10.1; 1.36 etcd 3.6.8-0, pause
#     3.10.2; 1.37 (seen up to v1.37.0-rc.0) etcd 3.7.0-0, pause 3.10.2; kubespray's pause pins agree.
#   containerd, runc, CNI plugins and their sha256: kubespray roles/kubespray_defaults/vars/main/checksums.yml
#     @46dbdd39 (its defaults: containerd 2.3.4, runc 1.4.3, CNI plugins 1.9.1; kind's base image uses the same).
#   Calico v3.31.7, Cilium 1.20.1: kubespray roles/kubespray_defaults/defaults/main/download.yml @46dbdd39;
#   helm v3.21.4: helm/helm's newest v3 tag (2026-08-13);
#   flannel v0.28.9: flannel-io/flannel Documentation/kube-flannel.yml @cdf76059; Headlamp v0.45.0: its newest tag.
# The Kubernetes patches above are newer than that data (kubespray knew 1.35.8 and 1.36.4 in August).

# etcd release kubeadm uses for each minor (external etcd defaults to the same).
ETCD_FOR_KUBERNETES: dict[str, str] = {
    "1.35": "3.6.6",
    "1.36": "3.6.8",
    "1.37": "3.7.0",
}

# The sandbox image kubeadm expects for each minor (containerd's pinned sandbox image must be the same, or
# kubeadm's preflight warns and the kubelet's image GC may remove it).
PAUSE_FOR_KUBERNETES: dict[str, str] = {
    "1.35": "registry.k8s.io/pause:3.10.1",
    "1.36": "registry.k8s.io/pause:3.10.2",
    "1.37": "registry.k8s.io/pause:3.10.2",
}

# containerd from the upstream release (source release/artifacts), runc beside it, and the CNI plugins.
CONTAINERD_VERSION = "2.3.4"  # the 2.3 LTS line
CONTAINERD_SHA256: dict[str, dict[str, str]] = {
    "amd64": {"2.3.4": "9d68969855fbf676cdb8ed758e420fb048d61f984f61de3e53eddfebe484d168",
              "2.2.7": "91cd216ea26a1b8b512219d3f205375c967e7b7de4dae571bc3dd16bfacd34b5",
              "1.7.34": "640f989745020ea4897ad0a3d7d977863a7279d3f2e132792fc62c25a45bda50"},
    "arm64": {"2.3.4": "a985fbb7e18fc0362d31a055338f5d7b0e087a3e27f14c70d1c5965399a29f95",
              "2.2.7": "84eb0a161e20ad45465202fa2d6d93b3d9b74666c363e9908706d590a86e2618",
              "1.7.34": "824cbd16af3bdfc1b1836338350630ae1b6a58c7466636a4bed10549790090ab"},
}
RUNC_VERSION = "1.4.3"
RUNC_SHA256: dict[str, dict[str, str]] = {
    "amd64": {"1.4.3": "f6ae8efc0fa40079e1475e97cbe9d1bd3f106a28d6af78a11d9f1bd565515e60"},
    "arm64": {"1.4.3": "633301e2e32f8a5ad54031aab4901eb00308bec677dd15faa2751e8f9dab5ca4"},
}
CNI_PLUGINS_VERSION = "1.9.1"
# The oldest containerd of each release line that each Kubernetes minor supports (containerd RELEASES.md
# "Kubernetes support" @301026e5; 1.6 is end of life). A line newer than every listed one is supported too.
CONTAINERD_FLOOR: dict[str, dict[str, str]] = {
    "1.35": {"1.7": "1.7.28", "2.1": "2.1.5", "2.2": "2.2.0"},
    "1.36": {"2.2": "2.2.0"},
    "1.37": {"2.2": "2.2.0"},  # RELEASES.md has no 1.37 row yet: 1.36's floor
}
# containerd of the distribution packages on the machines provision makes itself (source: distro): the docker
# provider's node image and the default Vagrant box are Debian 12.
DEBIAN_12_CONTAINERD = "1.6.20"

# helm renders Cilium's and the legacy dashboard's charts (checked against get.helm.sh's .sha256sum at download).
HELM_VERSION = "v3.21.4"

# Pinned add-ons (manifests/charts come from these versions online, or from the artifacts directory).
CNI_VERSIONS: dict[str, str] = {
    "calico": "v3.31.7",  # Tigera operator
    "flannel": "v0.28.9",
    "cilium": "1.20.1",
    "weave": "v2.8.10",  # community fork rajch/weave (legacy)
}
DASHBOARD_VERSIONS: dict[str, str] = {
    "headlamp": "0.45.0",
    "kubernetes-dashboard": "7.14.0",  # archived upstream; legacy
}

# sha256 of the add-on manifests upstream publishes no checksum for (provision/addon_files.py), read from upstream's
# git at the pinned tags (raw.githubusercontent.com serves a blob's exact bytes): projectcalico/calico v3.31.7
# manifests/operator-crds.yaml and tigera-operator.yaml; flannel-io/flannel v0.28.9 Documentation/kube-flannel.yml
# (flannel's release asset of the same name is built by kustomize at release time, so the git file is pinned).
ADDON_SHA256: dict[str, str] = {
    "https://raw.githubusercontent.com/projectcalico/calico/v3.31.7/manifests/operator-crds.yaml":
        "380414d5756e9a1af29ddb1ad70cada07aa344ae7a2680ba7355248621f8adbf",
    "https://raw.githubusercontent.com/projectcalico/calico/v3.31.7/manifests/tigera-operator.yaml":
        "092c10b3d0cb73617aca51367ca59755348f4647e6d2e63fa4e5b81266203214",
    "https://raw.githubusercontent.com/flannel-io/flannel/v0.28.9/Documentation/kube-flannel.yml":
        "e875824be2f552b45711dbda91af81b17eb961d00025d914d9fef18fad8f09c0",
}

# ---------------------------------------------------------------- the images a cluster runs (provision/images.py)
# Read 2026-11-30 at the pinned upstream tags (stored data to late August 2026):
#   coredns per minor: kubernetes/minikube pkg/minikube/constants/constants_kubeadm_images.go @383c3aa4 (tracks
#     `kubeadm config images list`: 1.35 v1.13.1, 1.36 v1.14.2, 1.37 v1.14.6 as of v1.37.0-rc.0: re-check at GA).
#   Calico: projectcalico/calico v3.31.7 manifests/tigera-operator.yaml (operator v1.40.15); what the operator
#     deploys for our Installation and APIServer: tigera/operator v1.40.15 config/calico_versions.yml and
#     pkg/components/calico.go (registry quay.io; goldmane/whisker only with observability, not enabled here).
#   flannel: flannel-io/flannel v0.28.9 Documentation/kube-flannel.yml.
#   Cilium: the chart's defaults at 1.20.1 (agent, operator-generic, the cilium-envoy DaemonSet), tags from
#     kubespray c2089ae5; the chart pins digests too, not checked here: a copy by tag is resolved by digest.
#   weave: rajch/weave v2.8.10 reweave/Makefile (IMAGE_VERSION 2.8.10, REGISTRY_USER rajchaudhuri): inferred,
#     the release asset itself could not be read.
#   Headlamp: kubernetes-sigs/headlamp v0.45.0 charts/headlamp/values.yaml.
COREDNS_FOR_KUBERNETES: dict[str, str] = {
    "1.35": "v1.13.1",
    "1.36": "v1.14.2",
    "1.37": "v1.14.6",
}
CALICO_OPERATOR_VERSION = "v1.40.15"
CNI_IMAGES: dict[str, tuple[str, ...]] = {
    "calico": (f"quay.io/tigera/operator:{CALICO_OPERATOR_VERSION}",
               *(f"quay.io/calico/{c}:{CNI_VERSIONS['calico']}"
                 for c in ("node", "cni", "pod2daemon-flexvol", "kube-controllers", "typha", "csi",
                           "node-driver-registrar", "apiserver"))),
    "flannel": ("ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3",
                f"ghcr.io/flannel-io/flannel:{CNI_VERSIONS['flannel']}"),
    "cilium": (f"quay.io/cilium/cilium:v{CNI_VERSIONS['cilium']}",
               f"quay.io/cilium/operator-generic:v{CNI_VERSIONS['cilium']}",
               "quay.io/cilium/cilium-envoy:v1.37.5-1786810558-766ccfb37260a43e9d228837aa84ce3faf9f64e7"),
    "weave": (f"docker.io/rajchaudhuri/weave-kube:{CNI_VERSIONS['weave'].removeprefix('v')}",
              f"docker.io/rajchaudhuri/weave-npc:{CNI_VERSIONS['weave'].removeprefix('v')}"),
}
# The legacy kubernetes-dashboard chart's images are not listed (its 7.14.0 release could not be read).
DASHBOARD_IMAGES: dict[str, tuple[str, ...]] = {
    "headlamp": (f"ghcr.io/headlamp-k8s/headlamp:v{DASHBOARD_VERSIONS['headlamp']}",),
    "none": (),
}
# What `provision verify` starts: agnhost, Kubernetes' own e2e test image.
AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
VERIFY_IMAGES: tuple[str, ...] = (AGNHOST_IMAGE,)


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


def pause_image(kubernetes_version: str) -> str:
    return PAUSE_FOR_KUBERNETES[kubernetes_minor(kubernetes_version)]



def containerd_floor(kubernetes_version: str) -> dict[str, str]:
    return CONTAINERD_FLOOR[kubernetes_minor(kubernetes_version)]


def containerd_supported(containerd: str, kubernetes_version: str) -> bool:
    """At or above the floor of its release line, or on a line newer than every listed one."""
    floor = containerd_floor(kubernetes_version)
    have = version_key(containerd)
    line = ".".join(str(p) for p in have[:2])
    if line in floor:
        return have >= version_key(floor[line])
    return have[:2] > max(version_key(k) for k in floor)


def containerd_floor_text(kubernetes_version: str) -> str:
    """'1.7.28+, 2.1.5+ or 2.2.0+' for the minor."""
    items = [f"{v}+" for v in containerd_floor(kubernetes_version).values()]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"

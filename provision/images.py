"""The container images a cluster runs, listed from the pins in versions.py, and copied with skopeo.

`cluster_images()` is the one list: kubeadm's images for the Kubernetes version (with the pause image containerd
pins), the CNI's (Calico's operator and every image it deploys), the dashboard's and the ones `provision verify`
starts. `provision artifacts --list` prints it, so a site can mirror it with its own tools; `provision artifacts`
copies each image with skopeo (registry to OCI archive, one platform) into the artifacts directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision import versions
from provision.errors import UserError


@dataclass(frozen=True)
class Image:
    ref: str
    used_by: str  # what runs it: kubeadm, calico, flannel, cilium, weave, headlamp, verify


def kubeadm_images(kubernetes: str) -> list[Image]:
    minor = versions.kubernetes_minor(kubernetes)
    refs = [f"registry.k8s.io/{c}:v{kubernetes}"
            for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")]
    refs += [f"registry.k8s.io/coredns/coredns:{versions.COREDNS_FOR_KUBERNETES[minor]}",
             versions.pause_image(kubernetes), f"registry.k8s.io/etcd:{versions.ETCD_FOR_KUBERNETES[minor]}-0"]
    return [Image(ref, "kubeadm") for ref in refs]


def cluster_images(kubernetes: str, cni: str, dashboard: str) -> list[Image]:
    """Every image a cluster of this version, CNI and dashboard runs (for the pinned releases)."""
    images = kubeadm_images(kubernetes)
    images += [Image(ref, cni) for ref in versions.CNI_IMAGES.get(cni, ())]
    images += [Image(ref, dashboard) for ref in versions.DASHBOARD_IMAGES.get(dashboard, ())]
    images += [Image(ref, "verify") for ref in versions.VERIFY_IMAGES]
    return images


def unlisted(dashboard: str) -> list[str]:
    """Add-ons whose images provision does not know (they must be mirrored by hand for an air-gapped install)."""
    return [dashboard] if dashboard not in versions.DASHBOARD_IMAGES else []


def archive_name(ref: str) -> str:
    """images/<ref with / and : made safe>.tar, e.g. images/registry.k8s.io_pause_3.10.1.tar."""
    return "images/" + re.sub(r"[^A-Za-z0-9._-]", "_", ref) + ".tar"


def registry_of(ref: str) -> str:
    first = ref.split("/", 1)[0]
    return first if "/" in ref and ("." in first or ":" in first or first == "localhost") else "docker.io"


def require_skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        raise UserError("skopeo is not installed; it copies the images: apt-get install skopeo (Debian, Ubuntu) "
                        "or dnf install skopeo (Fedora, RHEL)")
    return path


def copy_to_archive(ref: str, dest: Path, arch: str = "amd64") -> None:
    """Copy `ref` (linux/`arch`) from its registry into an OCI archive at `dest` that names it in its index."""
    skopeo = require_skopeo()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    # registries.conf from CONTAINERS_REGISTRIES_CONF (mirrors, a site's rewrites): newer skopeo reads the variable
    # itself, Debian 12's 1.9 only its --registries-conf option
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    proc = subprocess.run([skopeo, *(["--registries-conf", conf] if conf else []), "copy", "--quiet", "--retry-times", "2", "--override-os", "linux",
                           "--override-arch", arch, f"docker://{ref}", f"oci-archive:{part}:{ref}"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        why = (proc.stderr.strip().splitlines() or ["skopeo failed"])[-1]
        raise UserError(f"cannot copy {ref} from {registry_of(ref)}: {why.removeprefix('time=')}")
    part.replace(dest)

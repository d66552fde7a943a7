"""The container images a cluster runs, listed from the pins in versions.py, and copied with skopeo.

`cluster_images()` is the one list: kubeadm's images for the Kubernetes version (with the pause image containerd
pins), the CNI's (Calico's operator and every image it deploys), the dashboard's and the ones `provision verify`
starts. `provision artifacts --list` prints it, so a site can mirror it with its own tools; `provision artifacts`
copies each image with skopeo (registry to OCI archive, one platform) into the artifacts directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
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


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    # registries.conf from CONTAINERS_REGISTRIES_CONF (mirrors, a site's rewrites): newer skopeo reads the variable
    # itself, Debian 12's 1.9 only its --registries-conf option
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    return subprocess.run([require_skopeo(), *(["--registries-conf", conf] if conf else []), *args],
                          capture_output=True, text=True, check=False)


def _why(proc: subprocess.CompletedProcess[str]) -> str:
    last = (proc.stderr.strip().splitlines() or ["skopeo failed"])[-1]
    message = re.sub(r'^time="[^"]*" level=\w+ msg=', "", last)
    return message.strip('"').replace('\\"', '"')


def copy_to_archive(ref: str, dest: Path, arch: str = "amd64") -> None:
    """Copy `ref` (linux/`arch`) from its registry into an OCI archive at `dest` that names it in its index."""
    require_skopeo()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    proc = _skopeo("copy", "--quiet", "--retry-times", "2", "--override-os", "linux", "--override-arch", arch,
                   f"docker://{ref}", f"oci-archive:{part}:{ref}")
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        raise UserError(f"cannot copy {ref} from {registry_of(ref)}: {_why(proc)}")
    part.replace(dest)


def archive_ref(archive: Path) -> str:
    """The image an archive holds, as its index names it (skopeo's or ctr's annotation)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        index = json.loads(member.read()) if member else {}
    for manifest in index.get("manifests", []):
        notes = manifest.get("annotations", {})
        for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
            if re.search(r"[/:]", notes.get(key, "")):
                return str(notes[key])
    raise UserError(f"{archive} names no image (no full reference in its index.json): copy it again with "
                    "`provision artifacts`")


def push_archive(archive: Path, registry: str, ca_file: Path | None = None, auth_file: Path | None = None) -> str:
    """Push an archive's image into the site's mirror under its upstream name (<registry>/registry.k8s.io/...),
    trusting `ca_file` and logging in with the containers auth file `auth_file` when given."""
    ref = archive_ref(archive)
    with tempfile.TemporaryDirectory() as certs:
        options: list[str] = []
        if ca_file is not None:
            shutil.copyfile(ca_file, Path(certs, "ca.crt"))  # skopeo's --dest-cert-dir reads *.crt as CAs
            options += ["--dest-cert-dir", certs]
        if auth_file is not None:
            options += ["--dest-authfile", str(auth_file)]
        proc = _skopeo("copy", "--quiet", "--retry-times", "2", *options, f"oci-archive:{archive}",
                       f"docker://{registry}/{ref}")
    if proc.returncode != 0:
        raise UserError(f"cannot push {ref} to {registry}: {_why(proc)}")
    return ref

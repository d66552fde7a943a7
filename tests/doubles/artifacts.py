"""Build an offline artifacts directory whose Kubernetes binaries are the TEST DOUBLES of this folder.

It has the layout of roles/kube_packages/README.md and a SHA256SUMS over every file, so the roles install the
doubles exactly as they would install real binaries. The CNI plugins and crictl are small STAND-INS too.

With etcd_image, it also carries kubeadm's etcd image (registry.k8s.io/etcd at the tag kubeadm uses for the
version) built here from Debian's etcd (trixie: 3.5, the newest Debian has; the image's tag says kubeadm's 3.6):
the kube_packages role imports it into containerd like any image of the directory, the kubeadm double takes its
etcdctl from there, and the kubelet double runs its etcd as the static pod kubeadm writes: a real stacked etcd.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

from provision import versions
from tests.cri import debian
from tests.doubles.addons import addon_files
from tests.molecule.mkimage import build as build_image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STANDIN_SCRIPT = "#!/bin/sh\n# STAND-IN for {name} (tests/doubles/artifacts.py): no real binary can be had here.\necho '{name} stand-in'\n"


def _double(name: str, version: str) -> bytes:
    etcd_tag = versions.ETCD_FOR_KUBERNETES[versions.kubernetes_minor(version)] + "-0"  # kubeadm's etcd image
    text = (HERE / name).read_text().replace("@VERSION@", version).replace("@ETCD_IMAGE_TAG@", etcd_tag)
    if name == "kubeadm":
        fake = base64.b64encode((HERE / "fake_apiserver.py").read_bytes()).decode()
        text = text.replace("@FAKE_APISERVER@", fake)
    return text.encode()


def _cni_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for plugin in ("loopback", "bridge", "host-local", "portmap"):
            data = STANDIN_SCRIPT.format(name=f"CNI plugin {plugin}").encode()
            info = tarfile.TarInfo(f"./{plugin}")
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def etcd_image_ref(version: str) -> str:
    return f"registry.k8s.io/etcd:{versions.ETCD_FOR_KUBERNETES[versions.kubernetes_minor(version)]}-0"


def etcd_image_archive(version: str) -> bytes:
    """kubeadm's etcd image for `version`, made of Debian's etcd and etcdctl where the real image has them
    (/usr/local/bin) plus the C library they link (cached per tag)."""
    ref = etcd_image_ref(version)
    out = debian.CACHE / "images" / f"etcd-{ref.rsplit(':', 1)[1]}.tar"
    with debian.cache_lock():
        if not out.is_file():
            server, client = debian.unpacked("trixie", "etcd-server"), debian.unpacked("trixie", "etcd-client")
            files = [(str(server / "usr/bin/etcd"), "/usr/local/bin/etcd"),
                     (str(client / "usr/bin/etcdctl"), "/usr/local/bin/etcdctl")]
            files += [(lib, lib) for lib in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2")]
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_suffix(".partial")
            build_image(partial, ref, files, ["etcd"])
            partial.rename(out)
        return out.read_bytes()


def build(dest: Path, version: str, real: dict[str, bytes] | None = None, etcd_image: bool = False) -> Path:
    """The directory for Kubernetes `version`; `real` adds real files (the CRI lane's containerd, runc, CNI plugins
    and images), and a real CNI plugins archive takes the stand-in's place; `etcd_image` adds kubeadm's etcd
    image (a real stacked etcd on the control planes)."""
    files: dict[str, bytes] = {
        "bin/kubeadm": _double("kubeadm", version),
        "bin/kubelet": _double("kubelet", version),
        "bin/kubectl": _double("kubectl", version),
        "bin/crictl": (HERE / "crictl").read_bytes(),
        "systemd/kubelet.service": (ROOT / "roles/kube_packages/files/kubelet.service").read_bytes(),
        "systemd/10-kubeadm.conf": (ROOT / "roles/kube_packages/files/10-kubeadm.conf").read_bytes(),
        "cni/cni-plugins-linux-amd64-v1.8.0.tgz": _cni_tarball(),
    }
    files.update(addon_files())  # stand-ins of the upstream CNI and dashboard manifests
    if real and any(rel.startswith("cni/") for rel in real):
        del files["cni/cni-plugins-linux-amd64-v1.8.0.tgz"]
    files.update(real or {})
    if etcd_image:
        files["images/etcd.tar"] = etcd_image_archive(version)
    for rel, data in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if rel.startswith("bin/"):
            path.chmod(0o755)
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in sorted(files.items()))
    (dest / "SHA256SUMS").write_text(sums)
    return dest

"""Build an offline artifacts directory whose Kubernetes binaries are the TEST DOUBLES of this folder.

It has the layout of roles/kube_packages/README.md and a SHA256SUMS over every file, so the roles install the
doubles exactly as they would install real binaries. The CNI plugins and crictl are small STAND-INS too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

from tests.doubles.addons import addon_files

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STANDIN_SCRIPT = "#!/bin/sh\n# STAND-IN for {name} (tests/doubles/artifacts.py): no real binary can be had here.\necho '{name} stand-in'\n"


def _double(name: str, version: str) -> bytes:
    text = (HERE / name).read_text().replace("@VERSION@", version)
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


def build(dest: Path, version: str, real: dict[str, bytes] | None = None) -> Path:
    """The directory for Kubernetes `version`; `real` adds real files (the CRI lane's containerd, runc, CNI plugins
    and images), and a real CNI plugins archive takes the stand-in's place."""
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
    for rel, data in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if rel.startswith("bin/"):
            path.chmod(0o755)
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in sorted(files.items()))
    (dest / "SHA256SUMS").write_text(sums)
    return dest

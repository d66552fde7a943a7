"""The CRI lane's offline artifacts: the doubles' Kubernetes binaries, plus real node parts from Debian.

- containerd from a Debian suite (trixie: 1.7, sid: 2.1), packed as upstream's release tarball
  (containerd/containerd-<version>-linux-amd64.tar.gz holding bin/containerd, bin/containerd-shim-runc-v2,
  bin/ctr), and bookworm's runc as containerd/runc.amd64 (newer Debian runc builds need a newer glibc than the
  bookworm node image has; containerd 1.7 and 2.x both run with runc 1.1);
- the CNI plugins from sid, which packages the pinned release (versions.CNI_PLUGINS_VERSION), as upstream's tgz;
- the pause image under the name the roles pin, and the busybox test image (images.py).

The roles install all of it through the same offline path a user's artifacts directory takes.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from provision import versions
from tests.cri import debian, images
from tests.doubles.artifacts import build as build_doubles

CONTAINERD_SUITES = {"1.7": "trixie", "2.1": "sid"}


def _tarball(files: dict[str, Path], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, path in sorted(files.items()):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def containerd_files(line: str) -> tuple[str, dict[str, bytes]]:
    """(version, files) of Debian's containerd of a release line, laid out as upstream's release."""
    root = debian.unpacked(CONTAINERD_SUITES[line], "containerd")
    version = debian.package_version(root)
    assert version.startswith(line + "."), f"Debian's {CONTAINERD_SUITES[line]} now has containerd {version}"
    binaries = {f"bin/{b}": root / "usr/bin" / b for b in ("containerd", "containerd-shim-runc-v2", "ctr")}
    runc = debian.unpacked("bookworm", "runc") / "usr/sbin/runc"
    return version, {f"containerd/containerd-{version}-linux-amd64.tar.gz": _tarball(binaries),
                     "containerd/runc.amd64": runc.read_bytes()}


def cni_plugins() -> dict[str, bytes]:
    root = debian.unpacked("sid", "containernetworking-plugins")
    version = debian.package_version(root)
    assert version == versions.CNI_PLUGINS_VERSION, f"sid's CNI plugins are {version}, the pin is different"
    plugins = {f"./{p.name}": p for p in sorted((root / "usr/lib/cni").iterdir())}
    return {f"cni/cni-plugins-linux-amd64-v{version}.tgz": _tarball(plugins)}


def build(dest: Path, kubernetes: str, containerd_line: str) -> str:
    """Fill `dest` for Kubernetes `kubernetes` with containerd of `containerd_line`; return containerd's version."""
    version, real = containerd_files(containerd_line)
    real.update(cni_plugins())
    work = dest.parent / f"{dest.name}-images"
    real["images/pause.tar"] = images.pause_archive(versions.pause_image(kubernetes), work / "pause.tar").read_bytes()
    real["images/busybox.tar"] = images.busybox_archive(work / "busybox.tar").read_bytes()
    build_doubles(dest, versions.resolve_kubernetes(kubernetes), real)
    return version

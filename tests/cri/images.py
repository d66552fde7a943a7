"""Small container images built here, as OCI archives `ctr images import` takes (no registry is reachable).

- the pause image, under the name the roles pin for the Kubernetes minor (versions.pause_image): our own pause
  program (pause.c), static, written by skopeo as `provision artifacts` writes images;
- a test image with Debian's busybox-static (sh, wget, httpd, nslookup, mount ...).

Each archive is an OCI image layout whose index names the image (io.containerd.image.name), the way
`ctr images export` writes one and the kube_packages role reads one (written by tests/molecule/mkimage.py).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from tests.cri import debian
from tests.molecule.mkimage import write_archive

HERE = Path(__file__).resolve().parent
BUSYBOX_IMAGE = "docker.io/provision-test/busybox:1"  # our own build, under a name no one publishes


def _member(tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o644,
            link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.mode = 0, 0, 0, mode
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    elif data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _layer(files: dict[str, bytes | str | None]) -> bytes:
    """An uncompressed layer: bytes are executables, str are symlinks, None are directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            if isinstance(content, str):
                _member(tar, name, link=content)
            else:
                _member(tar, name, content, mode=0o755)
    return buf.getvalue()


def pause_archive(image: str, dest: Path) -> Path:
    binary = debian.CACHE / "pause" / "pause"
    with debian.cache_lock():
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-static", "-Os", "-s", "-o", str(binary), str(HERE / "pause.c")], check=True)
        program = binary.read_bytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    built = dest.with_name("pause-built.tar")
    write_archive(built, image, _layer({"pause": program}), {"Entrypoint": ["/pause"], "User": "65535:65535"})
    # copied once more by skopeo, as `provision artifacts` copies images: the archive then names the image only in
    # org.opencontainers.image.ref.name, which the kube_packages role must read for containerd to find it
    subprocess.run(["skopeo", "copy", "--quiet", f"oci-archive:{built}", f"oci-archive:{dest}:{image}"], check=True)
    return dest


def busybox_archive(dest: Path) -> Path:
    root = debian.unpacked("bookworm", "busybox-static")
    busybox = (root / "bin" / "busybox").read_bytes()
    applets = subprocess.run([str(root / "bin" / "busybox"), "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    files: dict[str, bytes | str | None] = {"bin": None, "etc": None, "tmp": None, "mnt": None, "proc": None,
                                            "sys": None, "dev": None, "bin/busybox": busybox}
    files.update({f"bin/{a}": "busybox" for a in applets if a != "busybox"})
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_archive(dest, BUSYBOX_IMAGE, _layer(files), {"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    return dest

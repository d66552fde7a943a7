#!/usr/bin/env python3
"""Build a tiny OCI image archive (an `oci-layout` tarball) that `ctr images import` accepts, without a registry.

Used by the molecule scenarios, where no registry is reachable: the layer holds the files named on the command
line (copied from the machine this runs on), so a shell plus the libraries it needs makes a runnable image.

    mkimage.py OUT.tar NAME[:TAG] [--cmd '["/bin/sh", "-c", "echo hi"]'] [--file SRC[:DEST]]... [--ldd BIN[:DEST]]...

--ldd copies a binary and every library `ldd` lists for it (the libraries keep their paths).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import time
from pathlib import Path


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            libs.append(parts[2])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


def _layer(files: list[tuple[str, str]]) -> bytes:
    buf = io.BytesIO()
    seen_dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for src, dest in files:
            dest = dest.lstrip("/")
            parts = Path(dest).parts[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen_dirs:
                    seen_dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            data = Path(src).read_bytes()
            info = tarfile.TarInfo(dest)
            info.size = len(data)
            info.mode = Path(src).stat().st_mode & 0o777
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build(out: Path, name: str, files: list[tuple[str, str]], cmd: list[str]) -> None:
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    write_archive(out, name, _layer(files), {"Cmd": cmd, "Env": env})


def write_archive(out: Path, name: str, layer: bytes, image_config: dict[str, object]) -> None:
    """An OCI layout archive of one image called `name`: one uncompressed layer, `image_config` as its config."""
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    if "/" not in name:
        name = f"docker.io/library/{name}"
    config = {
        "architecture": "amd64", "os": "linux", "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }
    with tarfile.open(out, "w") as tar:
        layer_desc = _blob(tar, layer)
        config_desc = _blob(tar, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = _blob(tar, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name,
                                "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
            }],
        }
        for path, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                           ("index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("name")
    ap.add_argument("--file", action="append", default=[], help="SRC[:DEST] to put in the layer")
    ap.add_argument("--ldd", action="append", default=[], help="BINARY[:DEST] plus the libraries it needs")
    ap.add_argument("--cmd", type=json.loads, default=["/bin/sh"], help="the image's Cmd as a JSON list")
    args = ap.parse_args()
    files: list[tuple[str, str]] = []
    for spec in args.file:
        src, _, dest = spec.partition(":")
        files.append((src, dest or src))
    for spec in args.ldd:
        src, _, dest = spec.partition(":")
        files.append((src, dest or src))
        files.extend((lib, lib) for lib in _libraries(src))
    build(args.out, args.name, files, args.cmd)


if __name__ == "__main__":
    main()

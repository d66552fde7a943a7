"""A real OCI distribution registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.

`upstream()` starts one that stands in for the internet's registries: a registries.conf (CONTAINERS_REGISTRIES_CONF,
read by skopeo) sends registry.k8s.io, docker.io, quay.io and ghcr.io there, under a path per registry, so an
image keeps its real name. `push()` fills it with small images built here under those names.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.molecule.mkimage import write_archive

UPSTREAMS = ("registry.k8s.io", "docker.io", "quay.io", "ghcr.io")
BINARY = "/usr/bin/docker-registry"


@dataclass
class Upstream:
    address: str  # host:port
    registries_conf: Path
    work: Path

    def push(self, ref: str) -> None:
        """A one-file image named `ref` (registry.k8s.io/pause:3.10.1), as the upstream registry would serve it."""
        host, _, rest = ref.partition("/")
        archive = self.work / "push.tar"
        layer = _layer(f"{ref}\n".encode())
        write_archive(archive, ref, layer, {"Cmd": ["/ref"]})
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci-archive:{archive}",
                        f"docker://{self.address}/{host}/{rest}"], check=True, capture_output=True)

    def env(self) -> dict[str, str]:
        return {"CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}


def _layer(content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("ref")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def upstream(work: Path) -> Iterator[Upstream]:
    work.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{_free_port()}"
    config = work / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n"
                      f"http:\n  addr: {address}\n")
    conf = work / "registries.conf"
    conf.write_text("".join(f'[[registry]]\nprefix = "{h}"\nlocation = "{address}/{h}"\ninsecure = true\n\n'
                            for h in UPSTREAMS))
    log = (work / "registry.log").open("w")
    proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the registry did not start: {(work / 'registry.log').read_text()[-500:]}")
                time.sleep(0.2)
        yield Upstream(address, conf, work)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def available() -> str | None:
    """None when the registry and skopeo are installed, else what is missing."""
    missing = [p for p in (BINARY, "/usr/bin/skopeo") if not os.path.exists(p)]
    return f"{', '.join(missing)} not installed (apt-get install docker-registry skopeo)" if missing else None

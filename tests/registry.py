"""A real OCI distribution registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.

`upstream()` starts one that stands in for the internet's registries: a registries.conf (CONTAINERS_REGISTRIES_CONF,
read by skopeo) sends registry.k8s.io, docker.io, quay.io and ghcr.io there, under a path per registry, so an
image keeps its real name. `push()` fills it with small images built here under those names.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from tests.molecule.mkimage import write_archive

UPSTREAMS = ("registry.k8s.io", "docker.io", "quay.io", "ghcr.io")
BINARY = "/usr/bin/docker-registry"


@dataclass
class Upstream:
    address: str  # host:port
    registries_conf: Path
    work: Path
    user: tuple[str, str] | None = None  # the one account of a registry that wants credentials (htpasswd)

    def push(self, ref: str) -> None:
        """A one-file image named `ref` (registry.k8s.io/pause:3.10.1), as the upstream registry would serve it."""
        host, _, rest = ref.partition("/")
        archive = self.work / "push.tar"
        layer = _layer(f"{ref}\n".encode())
        write_archive(archive, ref, layer, {"Cmd": ["/ref"]})
        creds = ["--dest-creds", ":".join(self.user)] if self.user else []
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *creds, f"oci-archive:{archive}",
                        f"docker://{self.address}/{host}/{rest}"], check=True, capture_output=True)

    def auth_file(self, path: Path, password: str | None = None) -> Path:
        """A containers auth file for this registry (with another password when given)."""
        assert self.user is not None
        return write_auth_file(path, self.address, (self.user[0], password or self.user[1]))


def write_auth_file(path: Path, address: str, user: tuple[str, str]) -> Path:
    """A containers auth file, as `skopeo login --authfile PATH ADDRESS` writes it (0600)."""
    token = base64.b64encode(":".join(user).encode()).decode()
    path.write_text(json.dumps({"auths": {address: {"auth": token}}}))
    path.chmod(0o600)
    return path

    def env(self) -> dict[str, str]:
        return {"CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}


def _layer(content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("ref")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(work: Path, name: str) -> Path:
    """A CA certificate and key (work/<name>.crt, .key), as a site's own CA."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", f"/CN={name}", "-keyout", str(work / f"{name}.key"),
                    "-out", str(work / f"{name}.crt")], check=True, capture_output=True)
    return work / f"{name}.crt"


def _server_cert(work: Path, ca: Path, ip: str) -> tuple[Path, Path]:
    key, csr, crt = work / "server.key", work / "server.csr", work / "server.crt"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=mirror", "-keyout", str(key), "-out", str(csr)], check=True, capture_output=True)
    ext = work / "san.ext"
    ext.write_text(f"subjectAltName=IP:{ip}\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca.with_suffix(".key")),
                    "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt)],
                   check=True, capture_output=True)
    return crt, key


@contextmanager
def upstream(work: Path, ip: str = "127.0.0.1", ca: Path | None = None, port: int | None = None,
             user: tuple[str, str] | None = None) -> Iterator[Upstream]:
    """A registry on ip (TLS with a certificate from `ca` when given, as a site's mirror; else plain HTTP), wanting
    `user`'s credentials when given (distribution's htpasswd auth: bcrypt, TLS only)."""
    work.mkdir(parents=True, exist_ok=True)
    address = f"{ip}:{port or free_port()}"
    config = work / "registry.yml"
    tls = ""
    if ca is not None:
        crt, key = _server_cert(work, ca, ip)
        tls = f"  tls:\n    certificate: {crt}\n    key: {key}\n"
    auth = ""
    if user is not None:
        assert ca is not None, "distribution refuses htpasswd auth without TLS"
        # distribution checks the bcrypt hash on every request: at the default cost (12) that is 0.23 CPU-s each,
        # minutes of a CI run; cost 4 (bcrypt's least) checks the same password as strictly
        hashed = bcrypt.hashpw(user[1].encode(), bcrypt.gensalt(rounds=4, prefix=b"2a")).decode()
        (work / "htpasswd").write_text(f"{user[0]}:{hashed}\n")
        auth = f"auth:\n  htpasswd:\n    realm: provision-test\n    path: {work / 'htpasswd'}\n"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n"
                      f"http:\n  addr: {address}\n{tls}{auth}")
    conf = work / "registries.conf"
    conf.write_text("".join(f'[[registry]]\nprefix = "{h}"\nlocation = "{address}/{h}"\ninsecure = true\n\n'
                            for h in UPSTREAMS))
    log = (work / "registry.log").open("w")
    proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        scheme, context = ("https", ssl.create_default_context(cafile=str(ca))) if ca else ("http", None)
        while True:
            try:
                with urllib.request.urlopen(f"{scheme}://{address}/v2/", timeout=2, context=context):
                    break
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and user is not None:  # up, and wanting credentials
                    break
                raise
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the registry did not start: {(work / 'registry.log').read_text()[-500:]}")
                time.sleep(0.2)
        yield Upstream(address, conf, work, user)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def available() -> str | None:
    """None when the registry and skopeo are installed, else what is missing."""
    missing = [p for p in (BINARY, "/usr/bin/skopeo") if not os.path.exists(p)]
    return f"{', '.join(missing)} not installed (apt-get install docker-registry skopeo)" if missing else None

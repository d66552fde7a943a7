"""`provision artifacts`: the offline artifacts directory, assembled on a machine that reaches the internet.

An offline cluster (`artifacts: {mode: offline, dir: ...}`) installs Kubernetes, containerd and etcd from this
directory instead of the internet. The layout (also in roles/kube_packages/README.md):

    SHA256SUMS                                   sha256sum format, paths relative to the directory
    bin/kubeadm bin/kubelet bin/kubectl          dl.k8s.io release binaries
    bin/crictl                                   from cri-tools' release tarball
    systemd/kubelet.service systemd/10-kubeadm.conf   roles/kube_packages/files
    cni/cni-plugins-linux-<arch>-v<version>.tgz  containernetworking/plugins release
    images/<image>.tar                           OCI image archives copied by skopeo, naming their image
                                                 (org.opencontainers.image.ref.name; provision/images.py lists them)
    containerd/containerd-<version>-linux-<arch>.tar.gz  containerd/runc.<arch>
    etcd/etcd-v<version>-linux-<arch>.tar.gz

Every download comes from a pinned upstream URL and is checked against the checksum upstream publishes beside
it; images are copied with skopeo, which checks every blob against its digest. SHA256SUMS is written last, over everything in the directory.
`verify_dir` re-checks a copy (on the offline side) and returns one line per problem.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from provision import addon_files, images, registry_auth, versions
from provision.cli_common import load, say, spec_arg
from provision.errors import UserError
from provision.paths import ROLES

SUMS = "SHA256SUMS"

# Pinned upstream releases the directory carries besides Kubernetes itself (etcd follows the spec).
CONTAINERD_VERSION = versions.CONTAINERD_VERSION
RUNC_VERSION = versions.RUNC_VERSION
CNI_PLUGINS_VERSION = versions.CNI_PLUGINS_VERSION

ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
K8S_BINARIES = ("kubeadm", "kubelet", "kubectl")
UNIT_FILES = ("kubelet.service", "10-kubeadm.conf")
# What every offline install reads (role kube_packages); containerd/ and etcd/ only matter for their sources.
REQUIRED = ("bin/kubeadm", "bin/kubelet", "bin/kubectl", "bin/crictl", "systemd/kubelet.service",
            "systemd/10-kubeadm.conf")
REQUIRED_PATTERNS = (("cni/cni-plugins-linux-*.tgz", r"cni/cni-plugins-linux-[^/]+\.tgz"),
                     ("images/*.tar", r"images/[^/]+\.tar"))

SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
HEX64 = re.compile(r"\b[0-9a-fA-F]{64}\b")
CHUNK = 1 << 20



# ---------------------------------------------------------------- fetching


class Response(Protocol):
    """What the opener returns: urllib's response (or a test's stand-in)."""

    headers: Any

    def read(self, amt: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


Opener = Callable[[urllib.request.Request], Response]


def urlopen(request: urllib.request.Request) -> Response:
    response: Response = urllib.request.urlopen(request, timeout=120)
    return response


def _read_all(opener: Opener, url: str, headers: dict[str, str] | None = None) -> bytes:
    response = opener(urllib.request.Request(url, headers=headers or {}))
    try:
        return response.read()
    finally:
        response.close()


def expected_sha256(text: str, name: str, source: str) -> str:
    """The sha256 for `name` in an upstream checksum file: a bare hash, or sha256sum lines naming files."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for parts in lines:
        if len(parts) >= 2 and HEX64.fullmatch(parts[0]):
            listed = parts[1].lstrip("*").removeprefix("./")
            if listed == name or listed.rsplit("/", 1)[-1] == name:
                return parts[0].lower()
    hashes = HEX64.findall(text)
    if len(hashes) == 1 and all(len(parts) <= 2 for parts in lines):
        return str(hashes[0]).lower()
    raise UserError(f"{source} lists no sha256 for {name}; check the pinned URL (upstream may have moved it)")


def download(opener: Opener, url: str, dest: Path, sha256: str | None, source: str = "upstream publishes") -> None:
    """Fetch `url` into `dest` (via a .part file), refusing it unless its sha256 is `sha256` (None: keep it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        response = opener(urllib.request.Request(url))
        try:
            with part.open("wb") as out:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        finally:
            response.close()
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise UserError(f"download of {url} failed: {exc}; check this machine's internet access and retry") from None
    if sha256 is not None and digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise UserError(f"{url}: sha256 is {digest.hexdigest()}, {source} {sha256}; "
                        "the download is corrupt or was tampered with — retry, and do not use it")
    part.replace(dest)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- what goes in


@dataclass(frozen=True)
class Release:
    """One upstream file: where it lands, where it comes from, and where upstream publishes its sha256."""

    path: str  # relative to the artifacts directory
    url: str
    sums_url: str
    sums_name: str  # the file's name inside the checksum file


@dataclass(frozen=True)
class Plan:
    kubernetes: str
    arch: str
    releases: list[Release]
    crictl: Release  # a tarball: only its `crictl` lands, as bin/crictl


def plan_for(kubernetes: str, etcd: str, containerd: str | None = None, arch: str = "amd64") -> Plan:
    """Every pinned upstream URL for one Kubernetes version (and etcd/containerd versions), for one arch."""
    minor = versions.kubernetes_minor(kubernetes)
    containerd = (containerd or CONTAINERD_VERSION).removeprefix("v")
    k8s = f"https://dl.k8s.io/release/v{kubernetes}/bin/linux/{arch}"
    gh = "https://github.com"
    releases = [Release(f"bin/{b}", f"{k8s}/{b}", f"{k8s}/{b}.sha256", b) for b in K8S_BINARIES]
    cni = f"cni-plugins-linux-{arch}-v{CNI_PLUGINS_VERSION}.tgz"
    cni_base = f"{gh}/containernetworking/plugins/releases/download/v{CNI_PLUGINS_VERSION}"
    releases.append(Release(f"cni/{cni}", f"{cni_base}/{cni}", f"{cni_base}/{cni}.sha256", cni))
    ctd = f"containerd-{containerd}-linux-{arch}.tar.gz"
    ctd_base = f"{gh}/containerd/containerd/releases/download/v{containerd}"
    releases.append(Release(f"containerd/{ctd}", f"{ctd_base}/{ctd}", f"{ctd_base}/{ctd}.sha256sum", ctd))
    runc_base = f"{gh}/opencontainers/runc/releases/download/v{RUNC_VERSION}"
    releases.append(Release(f"containerd/runc.{arch}", f"{runc_base}/runc.{arch}", f"{runc_base}/runc.sha256sum",
                            f"runc.{arch}"))
    etcd_name = f"etcd-v{etcd}-linux-{arch}.tar.gz"
    etcd_base = f"{gh}/etcd-io/etcd/releases/download/v{etcd}"
    releases.append(Release(f"etcd/{etcd_name}", f"{etcd_base}/{etcd_name}", f"{etcd_base}/SHA256SUMS", etcd_name))
    crictl_name = f"crictl-v{minor}.0-linux-{arch}.tar.gz"
    crictl_base = f"{gh}/kubernetes-sigs/cri-tools/releases/download/v{minor}.0"
    crictl = Release("bin/crictl", f"{crictl_base}/{crictl_name}", f"{crictl_base}/{crictl_name}.sha256",
                     crictl_name)
    return Plan(kubernetes, arch, releases, crictl)


def _files(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != SUMS and not rel.endswith(".part"):
            yield rel


def write_sums(root: Path) -> Path:
    """Write SHA256SUMS over every file under `root` (sorted, sha256sum format, paths relative)."""
    lines = [f"{file_sha256(root / rel)}  {rel}\n" for rel in _files(root)]
    target = root / SUMS
    target.write_text("".join(lines))
    return target


def read_sums(root: Path) -> tuple[dict[str, str], list[str]]:
    """SHA256SUMS as {path: sha256}, plus one problem per line that cannot be used."""
    listed: dict[str, str] = {}
    problems: list[str] = []
    for n, line in enumerate((root / SUMS).read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = SUMS_LINE.match(line)
        if not m:
            problems.append(f"{SUMS} line {n}: not '<sha256>  <path>' (sha256sum format)")
            continue
        rel = m.group(2).removeprefix("./")
        parts = Path(rel).parts
        if rel.startswith("/") or ".." in parts:
            problems.append(f"{SUMS} line {n}: {rel!r} must be a path inside the directory, relative to it")
            continue
        if rel in listed:
            problems.append(f"{SUMS} line {n}: {rel} is listed twice")
            continue
        listed[rel] = m.group(1).lower()
    return listed, problems


def verify_dir(path: str | Path) -> list[str]:
    """Check an artifacts directory against its SHA256SUMS: one line per problem, [] when it is usable."""
    root = Path(path)
    fix = f"build it with `provision artifacts -f <spec> -o {root}` on a machine with internet access"
    if not root.is_dir():
        return [f"{root} is not a directory; {fix}"]
    if not (root / SUMS).is_file():
        return [f"{root / SUMS} is missing; {fix}"]
    listed, problems = read_sums(root)
    for rel, expected in listed.items():
        file = root / rel
        if not file.is_file():
            problems.append(f"{rel}: listed in {SUMS} but missing; copy it again or {fix}")
            continue
        actual = file_sha256(file)
        if actual != expected:
            problems.append(f"{rel}: sha256 is {actual}, {SUMS} expects {expected}; the file is corrupt or was "
                            "replaced — download it again (`provision artifacts`), never just edit SHA256SUMS")
    for rel in _files(root):
        if rel not in listed:
            problems.append(f"{rel}: not listed in {SUMS}; add its line or remove the file")
    for rel in REQUIRED:
        if rel not in listed:
            problems.append(f"{rel}: required by an offline install but not in {SUMS}; {fix}")
    for shown, pattern in REQUIRED_PATTERNS:
        if not any(re.fullmatch(pattern, rel) for rel in listed):
            problems.append(f"{shown}: required by an offline install but not in {SUMS}; {fix}")
    return problems


# ---------------------------------------------------------------- assembling


def _have(dest: Path, sha256: str) -> bool:
    return dest.is_file() and file_sha256(dest) == sha256


def fetch_release(opener: Opener, rel: Release, root: Path, say: Callable[[str], None]) -> None:
    sha = expected_sha256(_read_all(opener, rel.sums_url).decode(errors="replace"), rel.sums_name, rel.sums_url)
    dest = root / rel.path
    if _have(dest, sha):
        say(f"  have {rel.path}")
        return
    say(f"  get  {rel.path}  <- {rel.url}")
    download(opener, rel.url, dest, sha)


def fetch_from_tarball(opener: Opener, rel: Release, member: str, root: Path, say: Callable[[str], None]) -> None:
    """Download a release tarball (checked against upstream's sums) and keep only its file `member`, as rel.path."""
    sha = expected_sha256(_read_all(opener, rel.sums_url).decode(errors="replace"), rel.sums_name, rel.sums_url)
    say(f"  get  {rel.path}  <- {rel.url}")
    with tempfile.TemporaryDirectory() as tmp:
        tarball = Path(tmp, rel.sums_name)
        download(opener, rel.url, tarball, sha)
        with tarfile.open(tarball) as tar:
            found = next((m for m in tar.getmembers() if m.isfile() and m.name.lstrip("./") == member), None)
            source = tar.extractfile(found) if found else None
            if source is None:
                raise UserError(f"{rel.url} holds no {member}")
            dest = root / rel.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            with source, dest.open("wb") as out:
                shutil.copyfileobj(source, out)
    dest.chmod(0o755)


def fetch_addon_file(opener: Opener, item: addon_files.AddonFile, root: Path, say: Callable[[str], None]) -> None:
    """One manifest or chart; a file upstream publishes no checksum for is kept as downloaded, with a warning."""
    dest = root / item.path
    sha = item.checksum.expected(lambda url: _read_all(opener, url))
    if sha is not None and _have(dest, sha):
        say(f"  have {item.path}")
        return
    if sha is None and dest.is_file():
        say(f"  have {item.path}  (unchecked: upstream publishes no checksum; sha256 {file_sha256(dest)})")
        return
    say(f"  get  {item.path}  <- {item.url}")
    download(opener, item.url, dest, sha, item.checksum.said)
    if sha is None:
        say(f"warning: {item.path}: upstream publishes no checksum for it; kept as downloaded, sha256 "
            f"{file_sha256(dest)} (compare it with a copy fetched elsewhere before trusting it)")


def assemble(kubernetes: str, etcd: str, out: Path, say: Callable[[str], None], containerd: str | None = None,
             arch: str = "amd64", opener: Opener = urlopen, cni: str = "calico", dashboard: str = "headlamp") -> list[str]:
    """Fill `out` with everything an offline install needs and write SHA256SUMS; return the images copied."""
    plan = plan_for(kubernetes, etcd, containerd, arch)
    wanted = images.cluster_images(kubernetes, cni, dashboard)
    for addon in images.unlisted(dashboard):
        say(f"warning: provision does not know {addon}'s images; copy them into the directory yourself")
    images.require_skopeo()  # before any download: a missing tool is one line, not a half-filled directory
    out.mkdir(parents=True, exist_ok=True)
    say(f"assembling {out} for Kubernetes {kubernetes} ({arch})")
    for rel in plan.releases:
        fetch_release(opener, rel, out, say)
    for binary in K8S_BINARIES:
        (out / "bin" / binary).chmod(0o755)
    fetch_from_tarball(opener, plan.crictl, "crictl", out, say)
    for item in addon_files.cni_files(cni) + addon_files.dashboard_files(dashboard):
        fetch_addon_file(opener, item, out, say)
    helm = addon_files.helm_release(cni, dashboard, arch)
    if helm is not None:
        fetch_from_tarball(opener, Release("bin/helm", helm.url, helm.sums_url, helm.name), helm.member, out, say)
    for name in UNIT_FILES:
        target = out / "systemd" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROLES / "kube_packages" / "files" / name, target)
    for image in wanted:
        dest = out / images.archive_name(image.ref)
        if dest.is_file():
            say(f"  have {images.archive_name(image.ref)}")
            continue
        say(f"  copy {image.ref}  ({image.used_by})")
        images.copy_to_archive(image.ref, dest, arch)
    write_sums(out)
    problems = verify_dir(out)
    if problems:
        raise UserError("the assembled directory does not verify: " + "; ".join(problems))
    say(f"wrote {out / SUMS}: {len(read_sums(out)[0])} files")
    return [image.ref for image in wanted]


# ---------------------------------------------------------------- command line


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `provision artifacts` to the CLI."""
    p = subparsers.add_parser(
        "artifacts", help="assemble (or --verify) the offline artifacts directory",
        description="Download everything an offline cluster installs (Kubernetes binaries, kubelet unit, CNI "
                    "plugins, containerd, runc, etcd) from pinned upstream URLs into one directory, checked "
                    "against upstream checksums, copy every image the cluster runs (kubeadm's, the CNI's, the "
                    "dashboard's, verify's) with skopeo, and write its SHA256SUMS. Run it where the internet is "
                    "reachable; copy the directory to the offline side and set "
                    "`artifacts: {mode: offline, dir: DIR}` in the spec. --list prints the images only.")
    spec_arg(p)
    p.add_argument("-o", "--output", metavar="DIR",
                   help="directory to fill (default: the spec's artifacts.dir, else ./artifacts)")
    p.add_argument("--verify", action="store_true",
                   help="only check DIR against its SHA256SUMS (no network); exit 1 on any problem")
    p.add_argument("--arch", choices=sorted(set(ARCHES.values())), default="amd64",
                   help="node CPU architecture (default: amd64)")
    p.add_argument("--list", action="store_true",
                   help="print every image the spec's cluster runs, one per line, and stop (no network)")
    p.set_defaults(func=cmd_artifacts)
    actions = p.add_subparsers(dest="artifacts_command", metavar="ACTION")
    push = actions.add_parser(
        "push", help="load the directory's images into the spec's registry mirror",
        description="Check the artifacts directory against its SHA256SUMS, then copy each image archive into the "
                    "registry mirror (artifacts.registry, trusting artifacts.caFile, logged in with artifacts.authFile) "
                    "under its upstream name: "
                    "registry.k8s.io/pause:3.10.1 becomes <mirror>/registry.k8s.io/pause:3.10.1, where the nodes' "
                    "containerd looks for it.")
    spec_arg(push)
    push.add_argument("-d", "--dir", metavar="DIR", help="the artifacts directory (default: the spec's artifacts.dir)")
    push.set_defaults(func=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    art = cluster.spec.artifacts
    if not art.registry:
        raise UserError(f"{args.file} sets no artifacts.registry: name the mirror to push to (host:port)", code=2)
    source = Path(args.dir) if args.dir else cluster.path(art.dir) if art.dir else None
    if source is None:
        raise UserError(f"{args.file} sets no artifacts.dir and no --dir was given: which directory?", code=2)
    problems = verify_dir(source)
    if problems:
        raise UserError(f"{source} does not verify, nothing pushed: {problems[0]}")
    ca = cluster.path(art.ca_file) if art.ca_file else None
    if ca is not None and not ca.is_file():
        raise UserError(f"artifacts.caFile {ca} is not a file: give the mirror's CA certificate (PEM)", code=2)
    auth = cluster.path(art.auth_file) if art.auth_file else None
    if auth is not None:
        registry_auth.mirror_auth(auth, art.registry)  # one line now rather than skopeo's at the first push
    archives = sorted(rel for rel in read_sums(source)[0] if rel.startswith("images/"))
    for rel in archives:
        say(f"  push {images.push_archive(source / rel, art.registry, ca, auth)}")
    say(f"pushed {len(archives)} image(s) to {art.registry}")
    return 0


def cmd_artifacts(args: argparse.Namespace) -> int:
    cluster = None
    if not (args.verify and args.output):
        cluster = load(args.file)
    if args.list:
        assert cluster is not None
        spec = cluster.spec
        for image in images.cluster_images(cluster.kubernetes_version, spec.networking.cni, spec.dashboard.type):
            sys.stdout.write(f"{image.ref}\n")
        for addon in images.unlisted(spec.dashboard.type):
            say(f"warning: provision does not know {addon}'s images; they are not in this list")
        return 0
    if args.output:
        out = Path(args.output)
    elif cluster is not None and cluster.spec.artifacts.dir:
        out = cluster.path(cluster.spec.artifacts.dir)
    else:
        out = Path("artifacts")
    if args.verify:
        problems = verify_dir(out)
        for line in problems:
            say(f"error: {line}")
        if not problems:
            say(f"{out}: {len(read_sums(out)[0])} files match {SUMS}")
        return 1 if problems else 0
    assert cluster is not None
    assemble(cluster.kubernetes_version, cluster.etcd_version, out, say,
             containerd=cluster.spec.container_runtime.version, arch=args.arch, cni=cluster.spec.networking.cni,
             dashboard=cluster.spec.dashboard.type)
    return 0


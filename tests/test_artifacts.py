"""`provision artifacts`: layout, upstream checksum checks, image archives and SHA256SUMS — without the internet
(downloads from a fake opener, images from a real registry on 127.0.0.1: tests/registry.py).

Every URL is served by a fake opener from small local bytes; nothing here touches the internet.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
import yaml

from provision import addon_files, artifacts, images, spec, versions
from provision.errors import UserError
from tests import registry


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeResponse:
    def __init__(self, data: bytes, content_type: str = "") -> None:
        self._body = io.BytesIO(data)
        self.headers = Message()
        if content_type:
            self.headers["Content-Type"] = content_type

    def read(self, amt: int = -1, /) -> bytes:
        return self._body.read(amt)

    def close(self) -> None:
        pass


class FakeWeb:
    """URL -> (bytes, content type). Records every request; 404 for anything unknown."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[bytes, str]] = {}
        self.requests: list[urllib.request.Request] = []
        self.token_required: dict[str, str] = {}  # host -> token the registry wants

    def add(self, url: str, data: bytes, content_type: str = "") -> None:
        self.pages[url] = (data, content_type)

    def __call__(self, request: urllib.request.Request) -> FakeResponse:
        self.requests.append(request)
        url = request.full_url
        host = urllib.request.urlparse(url).netloc
        want = self.token_required.get(host)
        auth = request.get_header("Authorization") or request.unredirected_hdrs.get("Authorization")
        if want and url.startswith(f"https://{host}/v2/") and auth != f"Bearer {want}":
            headers = Message()
            headers["WWW-Authenticate"] = f'Bearer realm="https://auth.example/token",service="{host}",scope="pull"'
            raise urllib.error.HTTPError(url, 401, "Unauthorized", headers, None)
        if url not in self.pages:
            raise urllib.error.HTTPError(url, 404, "Not Found", Message(), None)
        data, content_type = self.pages[url]
        return FakeResponse(data, content_type)


def _tar_bytes(files: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tgz_bytes(files: dict[str, bytes]) -> bytes:
    return _tar_bytes(files, "w:gz")


# ---------------------------------------------------------------- the plan


def test_plan_pins_upstream_urls_from_the_versions() -> None:
    plan = artifacts.plan_for("1.37.2", "3.6.5")
    urls = {r.path: r.url for r in plan.releases}
    assert urls["bin/kubeadm"] == "https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubeadm"
    assert urls["bin/kubelet"] == "https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet"
    sums = {r.path: r.sums_url for r in plan.releases}
    assert sums["bin/kubectl"] == "https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubectl.sha256"
    ctd = f"containerd/containerd-{artifacts.CONTAINERD_VERSION}-linux-amd64.tar.gz"
    assert urls[ctd] == (f"https://github.com/containerd/containerd/releases/download/v{artifacts.CONTAINERD_VERSION}"
                         f"/containerd-{artifacts.CONTAINERD_VERSION}-linux-amd64.tar.gz")
    assert urls["containerd/runc.amd64"].endswith(f"/v{artifacts.RUNC_VERSION}/runc.amd64")
    # the etcd role reads exactly this name
    assert urls["etcd/etcd-v3.6.5-linux-amd64.tar.gz"] == (
        "https://github.com/etcd-io/etcd/releases/download/v3.6.5/etcd-v3.6.5-linux-amd64.tar.gz")
    assert f"cni/cni-plugins-linux-amd64-v{artifacts.CNI_PLUGINS_VERSION}.tgz" in urls
    assert plan.crictl.url.endswith("/v1.37.0/crictl-v1.37.0-linux-amd64.tar.gz")


def test_plan_follows_the_spec_containerd_version_and_arch() -> None:
    plan = artifacts.plan_for("1.36.6", "3.6.5", containerd="v2.1.4", arch="arm64")
    paths = {r.path for r in plan.releases}
    assert "containerd/containerd-2.1.4-linux-arm64.tar.gz" in paths
    assert "containerd/runc.arm64" in paths
    assert "etcd/etcd-v3.6.5-linux-arm64.tar.gz" in paths


def test_the_directory_carries_the_pinned_containerd_and_runc() -> None:
    paths = {r.path: r.url for r in artifacts.plan_for("1.37.2", "3.7.0").releases}
    assert f"containerd/containerd-{versions.CONTAINERD_VERSION}-linux-amd64.tar.gz" in paths
    assert f"/v{versions.RUNC_VERSION}/runc.amd64" in paths["containerd/runc.amd64"]


def test_image_file_names_are_flat_and_safe() -> None:
    assert images.archive_name("registry.k8s.io/pause:3.10.1") == "images/registry.k8s.io_pause_3.10.1.tar"
    assert images.archive_name("registry.k8s.io/coredns/coredns:v1.12.1") == (
        "images/registry.k8s.io_coredns_coredns_v1.12.1.tar")


# ---------------------------------------------------------------- upstream checksums


def test_expected_sha256_reads_bare_hashes_and_sha256sum_files() -> None:
    h1, h2 = "a" * 64, "b" * 64
    assert artifacts.expected_sha256(f"{h1}\n", "kubeadm", "u") == h1
    assert artifacts.expected_sha256(f"{h1}  crictl.tar.gz\n", "crictl.tar.gz", "u") == h1
    text = f"{h1}  runc.arm64\n{h2}  runc.amd64\n"
    assert artifacts.expected_sha256(text, "runc.amd64", "u") == h2
    assert artifacts.expected_sha256(f"{h2} *./etcd-v3.6.5-linux-amd64.tar.gz\n", "etcd-v3.6.5-linux-amd64.tar.gz",
                                     "u") == h2
    with pytest.raises(UserError, match="lists no sha256 for runc.s390x"):
        artifacts.expected_sha256(text, "runc.s390x", "u")


def test_download_keeps_a_file_only_when_its_checksum_matches(tmp_path: Path) -> None:
    web = FakeWeb()
    web.add("https://example.test/kubeadm", b"binary")
    dest = tmp_path / "bin" / "kubeadm"
    artifacts.download(web, "https://example.test/kubeadm", dest, sha(b"binary"))
    assert dest.read_bytes() == b"binary"

    other = tmp_path / "bin" / "kubectl"
    with pytest.raises(UserError, match=f"sha256 is {sha(b'binary')}, upstream publishes {'0' * 64}"):
        artifacts.download(web, "https://example.test/kubeadm", other, "0" * 64)
    assert not other.exists()
    assert not list(tmp_path.rglob("*.part"))


def test_download_failure_says_what_failed(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="download of https://example.test/missing failed"):
        artifacts.download(FakeWeb(), "https://example.test/missing", tmp_path / "x", "0" * 64)


# ---------------------------------------------------------------- SHA256SUMS and verify_dir


def make_dir(root: Path) -> Path:
    files = {
        "bin/kubeadm": b"kubeadm", "bin/kubelet": b"kubelet", "bin/kubectl": b"kubectl", "bin/crictl": b"crictl",
        "systemd/kubelet.service": b"[Unit]\n", "systemd/10-kubeadm.conf": b"[Service]\n",
        "cni/cni-plugins-linux-amd64-v1.8.0.tgz": b"cni", "images/registry.k8s.io_pause_3.10.1.tar": b"image",
        "containerd/runc.amd64": b"runc", "etcd/etcd-v3.6.5-linux-amd64.tar.gz": b"etcd",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    artifacts.write_sums(root)
    return root


def test_write_sums_is_sha256sum_format_with_relative_sorted_paths(tmp_path: Path) -> None:
    root = make_dir(tmp_path)
    lines = (root / "SHA256SUMS").read_text().splitlines()
    paths = [line.split("  ", 1)[1] for line in lines]
    assert paths == sorted(paths)
    assert f"{sha(b'kubeadm')}  bin/kubeadm" in lines
    assert "SHA256SUMS" not in paths
    assert all(not p.startswith("/") for p in paths)
    assert artifacts.verify_dir(root) == []


def test_verify_names_the_corrupt_file_with_both_checksums(tmp_path: Path) -> None:
    root = make_dir(tmp_path)
    (root / "bin/kubeadm").write_bytes(b"tampered")
    (problem,) = artifacts.verify_dir(root)
    assert problem.startswith("bin/kubeadm: ")
    assert f"sha256 is {sha(b'tampered')}, SHA256SUMS expects {sha(b'kubeadm')}" in problem
    assert "provision artifacts" in problem


def test_verify_reports_missing_unlisted_and_required_files(tmp_path: Path) -> None:
    root = make_dir(tmp_path)
    (root / "etcd/etcd-v3.6.5-linux-amd64.tar.gz").unlink()
    (root / "bin/extra").write_bytes(b"?")
    sums = root / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if "bin/crictl" not in line))
    problems = artifacts.verify_dir(root)
    assert any(p.startswith("etcd/etcd-v3.6.5-linux-amd64.tar.gz: listed in SHA256SUMS but missing") for p in problems)
    assert any(p.startswith("bin/extra: not listed in SHA256SUMS") for p in problems)
    assert any(p.startswith("bin/crictl: not listed in SHA256SUMS") for p in problems)
    assert any(p.startswith("bin/crictl: required by an offline install") for p in problems)


def test_verify_requires_images_and_cni_plugins(tmp_path: Path) -> None:
    root = make_dir(tmp_path)
    (root / "images/registry.k8s.io_pause_3.10.1.tar").unlink()
    (root / "cni/cni-plugins-linux-amd64-v1.8.0.tgz").unlink()
    artifacts.write_sums(root)
    problems = artifacts.verify_dir(root)
    assert any(p.startswith("images/*.tar: required") for p in problems)
    assert any(p.startswith("cni/cni-plugins-linux-*.tgz: required") for p in problems)


def test_verify_rejects_bad_lines_and_paths_outside_the_directory(tmp_path: Path) -> None:
    root = make_dir(tmp_path)
    with (root / "SHA256SUMS").open("a") as f:
        f.write("not a checksum line\n")
        f.write(f"{'0' * 64}  /etc/passwd\n")
        f.write(f"{'0' * 64}  ../outside\n")
        f.write(f"{sha(b'kubeadm')}  ./bin/kubeadm\n")
    problems = artifacts.verify_dir(root)
    assert any("not '<sha256>  <path>'" in p for p in problems)
    assert any("'/etc/passwd' must be a path inside the directory" in p for p in problems)
    assert any("'../outside' must be a path inside the directory" in p for p in problems)
    assert any("bin/kubeadm is listed twice" in p for p in problems)


def test_verify_without_sums_or_directory(tmp_path: Path) -> None:
    assert artifacts.verify_dir(tmp_path / "nope")[0].endswith("on a machine with internet access")
    (problem,) = artifacts.verify_dir(tmp_path)
    assert "SHA256SUMS is missing" in problem
    assert "provision artifacts -f <spec> -o" in problem


# ---------------------------------------------------------------- the whole directory


def serve_release(web: FakeWeb, kubernetes: str, etcd: str, cni: str = "calico", dashboard: str = "headlamp",
                  monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """Serve every pinned URL with small stand-ins (with a monkeypatch, the add-on pins follow the stand-ins)."""
    plan = artifacts.plan_for(kubernetes, etcd)
    for rel in plan.releases:
        name = rel.sums_name
        data = f"stand-in {name}".encode()
        web.add(rel.url, data)
        other = "f" * 64
        web.add(rel.sums_url, (f"{sha(data)}\n" if rel.sums_url.endswith(".sha256") and "cni" not in name
                               else f"{other}  decoy\n{sha(data)}  {name}\n").encode())
    crictl = _tgz_bytes({"crictl": b"crictl stand-in"})
    web.add(plan.crictl.url, crictl)
    web.add(plan.crictl.sums_url, f"{sha(crictl)}  {plan.crictl.sums_name}\n".encode())
    serve_addons(web, cni, dashboard, monkeypatch)


def serve_addons(web: FakeWeb, cni: str, dashboard: str, monkeypatch: pytest.MonkeyPatch | None) -> None:
    """The add-on files as upstream serves them: pinned manifests, a chart with its repository index, unchecked files,
    and helm's release tarball with its .sha256sum."""
    for item in addon_files.cni_files(cni) + addon_files.dashboard_files(dashboard):
        data = f"stand-in {item.path}".encode()
        web.add(item.url, data)
        if isinstance(item.checksum, addon_files.Pinned) and monkeypatch is not None:
            monkeypatch.setitem(versions.ADDON_SHA256, item.url, sha(data))
        if isinstance(item.checksum, addon_files.HelmIndex):
            index = {"apiVersion": "v1", "entries": {item.checksum.chart: [
                {"version": "0.0.1", "digest": "0" * 64},
                {"version": item.checksum.version, "digest": sha(data)}]}}
            web.add(item.checksum.index_url, yaml.safe_dump(index).encode())
    helm = addon_files.helm_release(cni, dashboard, "amd64")
    if helm is not None:
        tarball = _tgz_bytes({helm.member: b"helm stand-in", "linux-amd64/README.md": b"readme"})
        web.add(helm.url, tarball)
        web.add(helm.sums_url, f"{sha(tarball)}  {helm.name}\n".encode())


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registry.Upstream]:
    """The images' registries: one real distribution registry holding every image the cluster runs."""
    why = registry.available()
    if why:
        pytest.skip(why)
    with registry.upstream(tmp_path_factory.mktemp("registry")) as reg:
        for image in images.cluster_images("1.37.2", "calico", "headlamp"):
            reg.push(image.ref)
        yield reg


def test_assemble_fills_a_directory_that_verifies(tmp_path: Path, upstream: registry.Upstream,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(upstream.registries_conf))
    web = FakeWeb()
    serve_release(web, "1.37.2", "3.6.5", monkeypatch=monkeypatch)
    out = tmp_path / "artifacts"
    lines: list[str] = []
    copied = artifacts.assemble("1.37.2", "3.6.5", out, lines.append, opener=web)

    assert artifacts.verify_dir(out) == []
    assert copied == [i.ref for i in images.cluster_images("1.37.2", "calico", "headlamp")]
    listed = artifacts.read_sums(out)[0]
    for rel in artifacts.REQUIRED:
        assert rel in listed
    assert all(images.archive_name(ref) in listed for ref in copied)
    assert (out / "bin/crictl").read_bytes() == b"crictl stand-in"
    assert (out / "bin/kubectl").stat().st_mode & 0o755 == 0o755
    assert (out / "systemd/10-kubeadm.conf").read_bytes() == (
        artifacts.ROLES / "kube_packages/files/10-kubeadm.conf").read_bytes()
    assert all(r.full_url.startswith("https://") for r in web.requests)
    assert {"manifests/calico/operator-crds.yaml", "manifests/calico/tigera-operator.yaml"} <= set(listed)
    assert "bin/helm" not in listed  # no chart to render for calico and headlamp

    # a second run downloads and copies nothing it already has
    before = len(web.requests)
    again: list[str] = []
    artifacts.assemble("1.37.2", "3.6.5", out, again.append, opener=web)
    fetched = [r.full_url for r in web.requests[before:]]
    assert not any(u.startswith("https://dl.k8s.io") and not u.endswith(".sha256") for u in fetched)
    assert not any(line.startswith("  copy ") for line in again)


def test_assemble_refuses_a_download_that_does_not_match_upstream(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    web = FakeWeb()
    serve_release(web, "1.37.2", "3.6.5", monkeypatch=monkeypatch)
    # the refusal comes before any image is copied: this test needs no skopeo, only assemble's check for it passed
    monkeypatch.setattr(images, "require_skopeo", lambda: "/usr/bin/skopeo")
    web.add("https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet", b"tampered")
    with pytest.raises(UserError, match="kubelet: sha256 is .* upstream publishes"):
        artifacts.assemble("1.37.2", "3.6.5", tmp_path / "a", lambda _: None, opener=web)
    assert not (tmp_path / "a" / "bin" / "kubelet").exists()
    assert not (tmp_path / "a" / "SHA256SUMS").exists()


def test_every_pinned_add_on_file_has_its_sha256_and_no_pin_is_left_over() -> None:
    """A release bump without its manifests' new sha256 fails here, not at a user's download."""
    pinned = [f.url for cni in versions.CNI_VERSIONS for f in addon_files.cni_files(cni)
              if isinstance(f.checksum, addon_files.Pinned)]
    assert sorted(pinned) == sorted(versions.ADDON_SHA256)


def test_a_pinned_manifest_that_changed_upstream_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web = FakeWeb()
    serve_addons(web, "flannel", "none", monkeypatch)
    (item,) = addon_files.cni_files("flannel")
    web.add(item.url, b"changed under the same tag")
    with pytest.raises(UserError, match=r"kube-flannel.yml: sha256 is [0-9a-f]{64}, provision/versions.py pins"):
        artifacts.fetch_addon_file(web, item, tmp_path, lambda _: None)
    assert not (tmp_path / item.path).exists()


def test_charts_are_checked_against_their_repository_index_and_helm_comes_from_its_tarball(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web = FakeWeb()
    serve_addons(web, "cilium", "kubernetes-dashboard", monkeypatch)
    lines: list[str] = []
    for item in addon_files.cni_files("cilium") + addon_files.dashboard_files("kubernetes-dashboard"):
        artifacts.fetch_addon_file(web, item, tmp_path, lines.append)
    helm = addon_files.helm_release("cilium", "none", "amd64")
    assert helm is not None
    artifacts.fetch_from_tarball(web, artifacts.Release("bin/helm", helm.url, helm.sums_url, helm.name), helm.member,
                                 tmp_path, lines.append)
    assert (tmp_path / "bin/helm").read_bytes() == b"helm stand-in"
    assert (tmp_path / "manifests/cilium/cilium-1.20.1.tgz").is_file()
    chart = tmp_path / "manifests/kubernetes-dashboard/kubernetes-dashboard-7.14.0.tgz"
    warning = [line for line in lines if line.startswith("warning: manifests/kubernetes-dashboard/")]
    assert warning and artifacts.file_sha256(chart) in warning[0], lines

    (cilium,) = addon_files.cni_files("cilium")
    (tmp_path / cilium.path).unlink()
    web.add(cilium.url, b"tampered")
    with pytest.raises(UserError, match="sha256 is .*, its Helm repository's index.yaml lists"):
        artifacts.fetch_addon_file(web, cilium, tmp_path, lines.append)
    assert isinstance(cilium.checksum, addon_files.HelmIndex)
    web.add(cilium.checksum.index_url, b"apiVersion: v1\nentries: {cilium: [{version: 1.19.0, digest: abc}]}\n")
    with pytest.raises(UserError, match="index.yaml lists no digest for cilium 1.20.1"):
        artifacts.fetch_addon_file(web, cilium, tmp_path, lines.append)


def test_only_charts_bring_helm() -> None:
    assert addon_files.helm_release("calico", "headlamp", "amd64") is None
    assert addon_files.helm_release("flannel", "kubernetes-dashboard", "arm64") is not None


# ---------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="provision")
    artifacts.register(p.add_subparsers(dest="command"))
    return p


def test_register_adds_the_artifacts_command() -> None:
    args = parser().parse_args(["artifacts", "-f", "c.yaml", "-o", "dir", "--verify"])
    assert (args.command, args.file, args.output, args.verify, args.arch) == ("artifacts", "c.yaml", "dir", True,
                                                                              "amd64")
    assert args.func is artifacts.cmd_artifacts


def test_verify_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_dir(tmp_path / "a")
    args = parser().parse_args(["artifacts", "-o", str(root), "--verify"])
    assert args.func(args) == 0
    assert "files match SHA256SUMS" in capsys.readouterr().err
    (root / "bin/kubelet").write_bytes(b"tampered")
    assert args.func(args) == 1
    assert "error: bin/kubelet: sha256 is" in capsys.readouterr().err


def test_verify_command_uses_the_spec_artifacts_dir(tmp_path: Path) -> None:
    make_dir(tmp_path / "offline")
    spec_file = tmp_path / "cluster.yaml"
    spec_file.write_text("apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: air-gapped\ntopology: all-in-one\n"
                         "artifacts: {mode: offline, dir: ./offline}\n")
    spec.load_spec(spec_file)  # the sample itself is valid
    args = parser().parse_args(["artifacts", "-f", str(spec_file), "--verify"])
    assert args.func(args) == 0

"""Every image a cluster runs, listed from the pins, and copied with skopeo from a real registry.

The "internet's" registries are one Debian `docker-registry` (distribution 2.8) on 127.0.0.1, reached under the
images' real names through skopeo's registries.conf (tests/registry.py); nothing leaves this machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from provision import images, versions
from provision.errors import UserError
from provision.paths import ROLES
from tests import registry

SPEC = """\
apiVersion: provision.dev/v1alpha1
kind: Cluster
name: demo
topology: single-master
kubernetes: {{version: "1.36"}}
networking: {{cni: {cni}}}
dashboard: {{type: {dashboard}}}
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registry.Upstream]:
    why = registry.available()
    if why:
        pytest.skip(why)
    with registry.upstream(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def listed(tmp_path: Path, cni: str, dashboard: str = "headlamp") -> list[str]:
    spec = tmp_path / f"{cni}.yaml"
    spec.write_text(SPEC.format(cni=cni, dashboard=dashboard))
    proc = subprocess.run([sys.executable, "-m", "provision", "artifacts", "-f", str(spec), "--list"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


def test_the_list_holds_every_image_of_the_chosen_cluster(tmp_path: Path) -> None:
    calico = listed(tmp_path, "calico")
    kubeadm = [i.ref for i in images.kubeadm_images("1.36.6")]
    assert calico[:len(kubeadm)] == kubeadm
    assert "registry.k8s.io/kube-apiserver:v1.36.6" in calico and versions.pause_image("1.36") in calico
    assert f"registry.k8s.io/etcd:{versions.ETCD_FOR_KUBERNETES['1.36']}-0" in calico
    assert any(ref.startswith("quay.io/tigera/operator:") for ref in calico)
    assert any("/calico/node:" in ref for ref in calico) and any("headlamp" in ref for ref in calico)
    assert set(versions.VERIFY_IMAGES) <= set(calico)
    flannel = listed(tmp_path, "flannel", "none")
    assert not any("calico" in ref or "tigera" in ref or "headlamp" in ref for ref in flannel)
    assert any("/flannel:" in ref for ref in flannel)
    assert len(set(calico)) == len(calico), "an image is listed twice"


def test_copy_from_a_registry_writes_an_archive_that_names_the_image(upstream: registry.Upstream, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(upstream.registries_conf))
    ref = versions.pause_image("1.37")
    upstream.push(ref)
    dest = tmp_path / images.archive_name(ref)
    images.copy_to_archive(ref, dest)
    with tarfile.open(dest) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        names = {m.name for m in tar.getmembers()}
    (manifest,) = index["manifests"]
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == ref  # what ctr import names it
    assert f"blobs/sha256/{manifest['digest'].split(':')[1]}" in names
    served = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                                        f"docker://{upstream.address}/{ref}"], capture_output=True, text=True,
                                       check=True).stdout)
    assert served["Digest"] == manifest["digest"]  # the registry's own image, unchanged
    assert not dest.with_name(dest.name + ".part").exists()


def test_an_image_missing_upstream_is_one_line_naming_it_and_its_registry(upstream: registry.Upstream,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(upstream.registries_conf))
    ref = "quay.io/tigera/operator:v0.0.0-missing"
    with pytest.raises(UserError) as err:
        images.copy_to_archive(ref, tmp_path / "missing.tar")
    message = str(err.value)
    assert message.startswith(f"cannot copy {ref} from quay.io: ") and "\n" not in message, message
    assert not list(tmp_path.iterdir()), "nothing is left behind"


def test_without_skopeo_one_line_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda _: None)
    with pytest.raises(UserError, match="skopeo is not installed; .*apt-get install skopeo"):
        images.copy_to_archive("registry.k8s.io/pause:3.10.1", tmp_path / "p.tar")


# ---------------------------------------------------------------- a site's registry mirror


def mirror_spec(out: Path, address: str, ca: Path, auth: Path | None = None) -> str:
    login = f", authFile: {auth}" if auth else ""
    return (SPEC.format(cni="calico", dashboard="headlamp")
            + f"artifacts: {{mode: offline, dir: {out}, registry: '{address}', caFile: {ca}{login}}}\n")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, upstream: registry.Upstream) -> Iterator[registry.Upstream]:
    """A TLS mirror with a certificate from the site's own CA, wanting credentials."""
    work = tmp_path_factory.mktemp("mirror")
    ca = registry.make_ca(work, "site-ca")
    with registry.upstream(work, ca=ca, user=("site", "mirror-password")) as reg:
        yield reg


def artifacts_with(tmp_path: Path, upstream: registry.Upstream, refs: list[str]) -> Path:
    """An artifacts directory that verifies, holding these images copied from the upstream registry."""
    from provision import artifacts
    from tests.doubles.artifacts import build

    out = build(tmp_path / "artifacts", "1.36.6")
    for ref in refs:
        upstream.push(ref)
        images.copy_to_archive(ref, out / images.archive_name(ref))
    artifacts.write_sums(out)
    return out


def push(spec: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision", "artifacts", "push", "-f", str(spec)],
                          capture_output=True, text=True, check=False)


def one_error(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == code and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def test_push_fills_the_mirror_under_upstream_names_and_a_wrong_ca_or_login_is_one_line(
        tmp_path: Path, upstream: registry.Upstream, mirror: registry.Upstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(upstream.registries_conf))
    refs = [versions.pause_image("1.36"), f"quay.io/tigera/operator:{versions.CALICO_OPERATOR_VERSION}"]
    out = artifacts_with(tmp_path, upstream, refs)
    monkeypatch.delenv("CONTAINERS_REGISTRIES_CONF")
    ca = mirror.work / "site-ca.crt"
    auth = mirror.auth_file(tmp_path / "auth.json")
    spec = tmp_path / "c.yaml"
    first = min(refs, key=images.archive_name)  # pushed in the directory's order

    spec.write_text(mirror_spec(out, mirror.address, registry.make_ca(tmp_path, "other-ca"), auth))
    error = one_error(push(spec))
    assert f"cannot push {first} to {mirror.address}: " in error and "certificate" in error, error

    spec.write_text(mirror_spec(out, mirror.address, ca))  # no credentials
    error = one_error(push(spec))
    assert f"cannot push {first} to {mirror.address}: " in error and "authentication required" in error, error
    spec.write_text(mirror_spec(out, mirror.address, ca, mirror.auth_file(tmp_path / "bad.json", "wrong")))
    assert "authentication required" in one_error(push(spec))
    (tmp_path / "other.json").write_text('{"auths": {"elsewhere:5000": {"auth": "dTpw"}}}')
    spec.write_text(mirror_spec(out, mirror.address, ca, tmp_path / "other.json"))
    error = one_error(push(spec), code=2)
    assert f"holds no credentials for {mirror.address}" in error and "skopeo login --authfile" in error, error

    spec.write_text(mirror_spec(out, mirror.address, ca, auth))
    proc = push(spec)
    assert proc.returncode == 0, proc.stderr
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(ca.read_bytes())
    for ref in refs:
        served = subprocess.run(["skopeo", "inspect", "--cert-dir", str(certs), "--authfile", str(auth),
                                 f"docker://{mirror.address}/{ref}"], capture_output=True, text=True, check=False)
        assert served.returncode == 0, served.stderr  # <mirror>/registry.k8s.io/pause:3.10.2, as containerd asks


def test_push_without_a_mirror_in_the_spec_is_bad_input(tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    spec.write_text(SPEC.format(cni="calico", dashboard="none") + "artifacts: {mode: offline, dir: nowhere}\n")
    proc = push(spec)
    assert proc.returncode == 2 and "sets no artifacts.registry" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("verb", ["plan", "up"])
def test_an_auth_file_without_the_mirrors_credentials_is_one_line_before_any_machine(verb: str,
                                                                                    tmp_path: Path) -> None:
    spec = tmp_path / "c.yaml"
    base = SPEC.format(cni="calico", dashboard="none").replace("name: demo", "name: pt-authfile")
    (tmp_path / "auth.json").write_text('{"auths": {"mirror.example:5000": {"auth": "bm9jb2xvbg=="}}}')  # "nocolon"
    cases = {"missing.json": "does not exist", "auth.json": "holds no credentials for mirror.example:5000"}
    try:
        for name, said in cases.items():
            spec.write_text(base + f"artifacts: {{mode: offline, dir: {tmp_path}, registry: 'mirror.example:5000', "
                                   f"authFile: {name}}}\n")
            proc = subprocess.run([sys.executable, "-m", "provision", verb, "-f", str(spec)], capture_output=True,
                                  text=True, check=False)
            assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        made = subprocess.run(["docker", "ps", "-aq", "--filter", "name=pt-authfile"], capture_output=True,
                              text=True, check=False)
        assert made.stdout.strip() == "", "a machine was made before the auth file was read"
    finally:
        if verb == "up":
            subprocess.run([sys.executable, "-m", "provision", "destroy", "-f", str(spec)],
                           capture_output=True, check=False)


def test_the_mirror_covers_every_registry_any_cluster_pulls_from() -> None:
    """containerd writes a hosts.toml only for these: an image from another registry would skip the mirror."""
    defaults = yaml.safe_load((ROLES / "containerd/defaults/main.yml").read_text())
    covered = set(defaults["containerd_registry_mirror_upstreams"])
    for cni in versions.CNI_VERSIONS:
        for dashboard in ("headlamp", "none"):
            refs = [i.ref for i in images.cluster_images("1.37.2", cni, dashboard)]
            assert {images.registry_of(r) for r in refs} <= covered, (cni, dashboard)

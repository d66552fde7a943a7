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

from provision import images, versions
from provision.errors import UserError
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

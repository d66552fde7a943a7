"""The upstream files the cni and dashboard roles apply, where they come from, and how each download is checked.

The roles download the same URLs themselves online (their defaults; tests/test_addons.py holds the two in step);
offline they read these files from the artifacts directory, under `manifests/<network or dashboard>/<name>`, and
helm (for the charts) as `bin/helm`. Upstream publishes checksums for some of them and not others, so each file
says how its download is checked:

    Pinned     a sha256 pinned in provision/versions.py ADDON_SHA256, read from upstream's git at the tag
               (raw.githubusercontent.com serves a blob's exact bytes): Calico's and flannel's manifests
    HelmIndex  the digest the chart repository's index.yaml publishes for that chart version: Cilium
    Unchecked  nothing upstream publishes could be read here: the file is kept as downloaded, its sha256 recorded in
               SHA256SUMS and printed with a warning (weave's fork, the archived kubernetes-dashboard chart)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import yaml

from provision import versions
from provision.errors import UserError

# Reads a URL's body (artifacts.py passes its opener, so tests serve these without the internet).
Read = Callable[[str], bytes]


@dataclass(frozen=True)
class Pinned:
    sha256: str
    said = "provision/versions.py pins"

    def expected(self, read: Read) -> str | None:
        return self.sha256


@dataclass(frozen=True)
class HelmIndex:
    """A chart whose repository's index.yaml lists its digest (the sha256 of the .tgz, as `helm repo index` writes)."""

    index_url: str
    chart: str
    version: str
    said = "its Helm repository's index.yaml lists"

    def expected(self, read: Read) -> str | None:
        try:
            entries = yaml.safe_load(read(self.index_url)).get("entries", {})
        except (yaml.YAMLError, AttributeError):
            raise UserError(f"{self.index_url} is not a Helm repository index; check the pinned URL") from None
        for entry in entries.get(self.chart, []):
            if str(entry.get("version")) == self.version and entry.get("digest"):
                return str(entry["digest"]).lower()
        raise UserError(f"{self.index_url} lists no digest for {self.chart} {self.version}; the pin may be newer "
                        "than the repository, or the chart was removed")


@dataclass(frozen=True)
class Unchecked:
    said = ""

    def expected(self, read: Read) -> str | None:
        return None


Checksum = Pinned | HelmIndex | Unchecked


@dataclass(frozen=True)
class AddonFile:
    path: str  # in the artifacts directory
    url: str
    checksum: Checksum


@dataclass(frozen=True)
class HelmRelease:
    """helm's release tarball (get.helm.sh publishes a .sha256sum beside it); only `helm` lands, as bin/helm."""

    url: str
    sums_url: str
    name: str
    member: str


HELM_NEEDED_BY = {"cilium", "kubernetes-dashboard"}  # the add-ons shipped only as charts


def _pinned(url: str) -> Pinned:
    return Pinned(versions.ADDON_SHA256[url])


def cni_files(cni: str) -> list[AddonFile]:
    """The files role cni applies for `cni` at its pinned release."""
    tag = versions.CNI_VERSIONS[cni]
    if cni == "calico":
        base = f"https://raw.githubusercontent.com/projectcalico/calico/{tag}/manifests"
        return [AddonFile(f"manifests/calico/{name}", f"{base}/{name}", _pinned(f"{base}/{name}"))
                for name in ("operator-crds.yaml", "tigera-operator.yaml")]
    if cni == "flannel":
        url = f"https://raw.githubusercontent.com/flannel-io/flannel/{tag}/Documentation/kube-flannel.yml"
        return [AddonFile("manifests/flannel/kube-flannel.yml", url, _pinned(url))]
    if cni == "cilium":
        number = tag.removeprefix("v")
        return [AddonFile(f"manifests/cilium/cilium-{number}.tgz", f"https://helm.cilium.io/cilium-{number}.tgz",
                          HelmIndex("https://helm.cilium.io/index.yaml", "cilium", number))]
    if cni == "weave":
        name = "weave-daemonset-k8s-1.11.yaml"
        return [AddonFile(f"manifests/weave/{name}", f"https://github.com/rajch/weave/releases/download/{tag}/{name}",
                          Unchecked())]
    raise UserError(f"no add-on files are known for cni {cni!r}")


def dashboard_files(dashboard: str) -> list[AddonFile]:
    """The files role dashboard applies (Headlamp's manifests are the role's own templates: nothing to fetch)."""
    if dashboard != "kubernetes-dashboard":
        return []
    release = versions.DASHBOARD_VERSIONS[dashboard]
    name = f"kubernetes-dashboard-{release}.tgz"
    url = f"https://github.com/kubernetes-retired/dashboard/releases/download/kubernetes-dashboard-{release}/{name}"
    return [AddonFile(f"manifests/kubernetes-dashboard/{name}", url, Unchecked())]


def helm_release(cni: str, dashboard: str, arch: str) -> HelmRelease | None:
    """helm, when the cluster renders a chart; else None."""
    if not {cni, dashboard} & HELM_NEEDED_BY:
        return None
    name = f"helm-{versions.HELM_VERSION}-linux-{arch}.tar.gz"
    return HelmRelease(f"https://get.helm.sh/{name}", f"https://get.helm.sh/{name}.sha256sum", name,
                       f"linux-{arch}/helm")


def download_checksums(cni: str) -> dict[str, str]:
    """role cni's `cni_download_checksums` (file name -> "sha256:<hex>") for the pinned files, for online installs."""
    return {f.path.rsplit("/", 1)[-1]: f"sha256:{f.checksum.sha256}" for f in cni_files(cni)
            if isinstance(f.checksum, Pinned)}

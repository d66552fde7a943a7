"""Versions and the container runtime: a supported Kubernetes minor, and a containerd that can run it."""

from __future__ import annotations

import re

from provision import versions
from provision.spec.models import ClusterSpec, VagrantSpec
from provision.spec.problems import Problem, shown
from provision.spec.rules.base import PATCH_VERSION, VERSION, Add, Judged, rule

PREFLIGHT_CHECK = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}\Z")


@rule("kubernetes")
def refuse_an_unsupported_kubernetes_version(j: Judged, add: Add) -> None:
    version = j.spec.kubernetes.version
    m = VERSION.match(version)
    if not m:
        add(Problem("kubernetes.version", f"{shown(version)} is not a version",
                    f"write a minor such as \"{versions.DEFAULT_KUBERNETES_MINOR}\" or a patch such as "
                    f"\"{versions.DEFAULT_KUBERNETES_VERSION}\""))
    elif f"{m.group(1)}.{m.group(2)}" not in versions.SUPPORTED_MINORS:
        add(Problem("kubernetes.version", f"{version} is not supported",
                    f"use one of {', '.join(versions.SUPPORTED_MINORS)}"))


@rule("kubernetes")
def refuse_a_malformed_preflight_check_name(j: Judged, add: Add) -> None:
    """kubeadm matches check names case-insensitively and refuses `all` beside single checks
    (cmd/kubeadm/app/apis/kubeadm/validation: ValidateIgnorePreflightErrors)."""
    names = j.spec.kubernetes.ignore_preflight_errors
    for i, name in enumerate(names):
        if not PREFLIGHT_CHECK.match(name):
            add(Problem(f"kubernetes.ignorePreflightErrors[{i}]", f"{shown(name)} is not a kubeadm check name",
                        "use names kubeadm prints in [ERROR Name], e.g. NumCPU or Mem"))
    if "all" in {n.lower() for n in names} and len(names) > 1:
        add(Problem("kubernetes.ignorePreflightErrors", "'all' beside single checks",
                    "write either all, or the checks one by one"))


@rule("containerRuntime")
def refuse_a_malformed_containerd_version(j: Judged, add: Add) -> None:
    version = j.spec.container_runtime.version
    if version is not None and not PATCH_VERSION.match(version):
        add(Problem("containerRuntime.version", f"{shown(version)} is not a version", "write it like \"2.1.4\""))


@rule("containerRuntime", "kubernetes", "provider", "artifacts")
def refuse_containerd_below_the_floor(j: Judged, add: Add) -> None:
    """containerd 1.6 is end of life; each Kubernetes minor needs a floor per containerd release line."""
    spec = j.spec
    found = None if spec.container_runtime.allow_unsupported_version else containerd_below_floor(spec)
    if found is None:
        return
    if spec.container_runtime.version:
        add(Problem("containerRuntime.version", below_floor_text(found), "set containerRuntime.version to a "
                    f"supported release, or remove it for {versions.CONTAINERD_VERSION}"))
    else:
        add(Problem("containerRuntime.source", below_floor_text(found),
                    f"remove containerRuntime.source to install containerd {versions.CONTAINERD_VERSION} from upstream"))


# ---------------------------------------------------------------- which containerd the nodes will run


def containerd_source(spec: ClusterSpec) -> str:
    if spec.container_runtime.source:
        return spec.container_runtime.source
    return "artifacts" if spec.artifacts.mode == "offline" else "release"


def expected_containerd(spec: ClusterSpec) -> tuple[str, str] | None:
    """(version, where it comes from) of the containerd the nodes will run, where plan can know it."""
    if containerd_source(spec) != "distro":
        return spec.container_runtime.version or versions.CONTAINERD_VERSION, "the upstream release"
    box = spec.provider.vagrant.box if spec.provider.vagrant else None
    if spec.provider.type == "docker" or (spec.provider.type == "vagrant" and box == VagrantSpec().box):
        return versions.DEBIAN_12_CONTAINERD, "Debian 12's package"
    return None  # existing hosts or another box: the containerd role checks the package before installing


def containerd_below_floor(spec: ClusterSpec) -> tuple[str, str, str] | None:
    """(version, where it comes from, Kubernetes version) when the nodes' containerd is below the minor's floor."""
    expected = expected_containerd(spec)
    if expected is None:
        return None
    version, origin = expected
    if not PATCH_VERSION.match(version) or not VERSION.match(spec.kubernetes.version) \
            or versions.kubernetes_minor(spec.kubernetes.version) not in versions.SUPPORTED_MINORS:
        return None  # reported by the version rules
    kubernetes = versions.resolve_kubernetes(spec.kubernetes.version)
    version = version.removeprefix("v")
    return None if versions.containerd_supported(version, kubernetes) else (version, origin, kubernetes)


def below_floor_text(found: tuple[str, str, str]) -> str:
    version, origin, kubernetes = found
    return (f"containerd {version} ({origin}) is below what Kubernetes {versions.kubernetes_minor(kubernetes)} "
            f"supports ({versions.containerd_floor_text(kubernetes)})")

"""Shared fixtures: real systemd container nodes, brought up once per session and always torn down.

The README test command installs and starts the Docker engine and builds the node image first, and sets
PROVISION_REQUIRE_NODES=1: then a missing engine fails the node tests instead of skipping them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision import lifecycle, spec, topology
from provision.providers import docker_engine

ROOT = Path(__file__).resolve().parent.parent


def nodes_available() -> str | None:
    """None when real nodes can run here, else why not."""
    if docker_engine.docker_binary() is None:
        return "Docker is not installed"
    if not docker_engine.engine_running():
        return "the Docker engine is not running"
    if not docker_engine.image_exists():
        return f"the node image {docker_engine.NODE_IMAGE} is not built (provision image build)"
    return None


@pytest.fixture(scope="session")
def need_nodes() -> None:
    why = nodes_available()
    if why is not None:
        if os.environ.get("PROVISION_REQUIRE_NODES"):
            pytest.fail(f"real nodes are required here but {why}")
        pytest.skip(why)


def docker_out(*args: str) -> str:
    binary = docker_engine.docker_binary() or "docker"
    return subprocess.run([binary, *args], capture_output=True, text=True, check=True).stdout


@dataclass
class LiveCluster:
    cluster: spec.Cluster
    topo: topology.Topology
    state_dir: Path
    spec_path: Path


# The only containerd the test nodes can get is Debian 12's 1.6.20, below every supported Kubernetes minor's floor
# (versions.CONTAINERD_FLOOR; no upstream release can be downloaded here): the test specs say so out loud.
NODE_CONTAINERD = "containerRuntime: {source: distro, allowUnsupportedVersion: true}\n"


def make_spec(tmp: Path, name: str, topology_name: str = "single-master", extra: str = "") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: {name}\n"
                     f"topology: {topology_name}\n{NODE_CONTAINERD}{extra}")
    return path


@contextmanager
def running(tmp: Path, name: str, topology_name: str, extra: str, only: list[str]) -> Iterator[LiveCluster]:
    """A cluster brought up with `up --only` the given steps, always destroyed afterwards."""
    path = make_spec(tmp, name, topology_name, extra)
    cluster = spec.load_spec(path)
    state = tmp / "state"
    try:
        report = lifecycle.up(cluster, state, lambda _: None, only=only)
        assert all(r.ok for r in report.runs), [f.line() for r in report.runs for f in r.failures]
        yield LiveCluster(cluster, topology.build(cluster), state, path)
    finally:
        lifecycle.destroy(cluster, state, lambda _: None)


@pytest.fixture(scope="session")
def shared_cluster(need_nodes: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    """A 3-node single-master cluster (machines, SSH, preflight) shared by tests that only read from it."""
    with running(tmp_path_factory.mktemp("shared"), "pt-shared", "single-master",
                 "nodes: {controlPlanes: 1, workers: 2}\n", ["machines", "ssh", "preflight"]) as live:
        yield live


@pytest.fixture(scope="session")
def ha_etcd(need_nodes: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    """3 external etcd members (Debian's etcd, mTLS), 3 idle control planes and the vip endpoint on 2 load
    balancers, shared by test_etcd_endpoint (quorum, failover) and then test_etcd_backup (restore, member removal,
    which change the cluster: that module runs last, LAST below)."""
    with running(tmp_path_factory.mktemp("ha"), "pt-ha", "ha",
                 "nodes: {controlPlanes: 3, workers: 0, etcd: 3, loadBalancers: 2}\n"
                 "etcd: {mode: external, source: distro}\n", ["machines", "ssh", "etcd", "endpoint"]) as live:
        yield live


# The longest modules start first (tests/run.sh keeps this order: --no-loadscope-reorder), so neither worker is
# left alone with one at the end; test_bootstrap's samples, each its own cluster, spread over both (SPREAD)
FIRST = ("tests/test_roles.py", "tests/test_bootstrap.py", "tests/test_stacked_etcd.py", "tests/test_cri.py",
         "tests/test_day2.py")


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


# Modules that change a cluster another module reads run after it (their xdist group keeps this order)
LAST = ("tests/test_etcd_backup.py",)


def _start_order(item: pytest.Item) -> int:
    module = _module(item)
    return FIRST.index(module) if module in FIRST else len(FIRST) + (module in LAST)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """pytest-xdist's groups (tests/run.sh runs two workers with --dist loadgroup): a module's tests stay on one
    worker, so its module-scoped cluster is made once, and so do the modules that read one of the session's
    clusters (SESSION_CLUSTERS: their nodes' names are fixed)."""
    items.sort(key=_start_order)
    shared = {fixture: {_module(item) for item in items if fixture in getattr(item, "fixturenames", ())}
              for fixture in SESSION_CLUSTERS}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item, shared)))


SESSION_CLUSTERS = ("shared_cluster", "ha_etcd")  # the session's clusters: each one's modules share a worker


def _group(item: pytest.Item, shared: dict[str, set[str]]) -> str:
    """A session cluster's modules together; a test of a module that says its tests make their own clusters
    (SPREAD = True) alone; any other module's tests together."""
    for fixture, modules in shared.items():
        if _module(item) in modules:
            return fixture
    if getattr(getattr(item, "module", None), "SPREAD", False):
        return item.nodeid
    return _module(item)

"""Malformed specs: exit code 2, one line naming the field, never a traceback, no host touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BASE = """\
apiVersion: provision.dev/v1alpha1
kind: Cluster
name: demo
topology: single-master
"""

STATIC_HOSTS = """\
provider: {type: static}
hosts:
  - {name: cp1, address: 192.0.2.10, roles: [control-plane]}
  - {name: w1, address: 192.0.2.20, roles: [worker]}
"""

# (id, spec text, the field the one error line must name)
CASES: list[tuple[str, str, str]] = [
    ("empty-file", "", "(document)"),
    ("not-a-mapping", "- a\n- b\n", "(document)"),
    ("malformed-yaml", BASE + "nodes:\n  workers: [1,\n", "(document)"),
    ("tab-indent", BASE + "nodes:\n\tworkers: 2\n", "(document)"),
    ("missing-kind", BASE.replace("kind: Cluster\n", ""), "kind"),
    ("wrong-kind", BASE.replace("kind: Cluster", "kind: Pod"), "kind"),
    ("wrong-api-version", BASE.replace("v1alpha1", "v9"), "apiVersion"),
    ("missing-name", BASE.replace("name: demo\n", ""), "name"),
    ("bad-name", BASE.replace("name: demo", "name: Demo_Cluster"), "name"),
    ("name-injection", BASE.replace("name: demo", "name: 'x; rm -rf /'"), "name"),
    ("unknown-topology", BASE.replace("single-master", "triple-master"), "topology"),
    ("unknown-top-key", BASE + "colour: blue\n", "colour"),
    ("unknown-nested-key", BASE + "networking:\n  podCidr: 10.244.0.0/16\n", "networking.podCidr"),
    ("version-float", BASE + "kubernetes:\n  version: 1.37\n", "kubernetes.version"),
    ("version-old", BASE + "kubernetes:\n  version: \"1.31\"\n", "kubernetes.version"),
    ("version-garbage", BASE + "kubernetes:\n  version: latest\n", "kubernetes.version"),
    ("workers-string", BASE + "nodes:\n  workers: two\n", "nodes.workers"),
    ("workers-negative", BASE + "nodes:\n  workers: -1\n", "nodes.workers"),
    ("workers-bool", BASE + "nodes:\n  workers: true\n", "nodes.workers"),
    ("even-etcd", BASE.replace("single-master", "ha") + "nodes:\n  etcd: 4\n", "nodes.etcd"),
    ("zero-etcd-external", BASE.replace("single-master", "ha") + "nodes:\n  etcd: 0\n", "nodes.etcd"),
    ("multi-cp-no-endpoint", BASE.replace("single-master", "multi-master") + "endpoint:\n  type: none\n",
     "endpoint.type"),
    ("pod-service-overlap", BASE + "networking:\n  podCIDR: 10.96.0.0/16\n", "networking.serviceCIDR"),
    ("node-pod-overlap", BASE + "networking:\n  nodeCIDR: 10.244.3.0/24\n", "networking.nodeCIDR"),
    ("cidr-garbage", BASE + "networking:\n  podCIDR: 10.244.0.0/33\n", "networking.podCIDR"),
    ("cidr-host-bits", BASE + "networking:\n  serviceCIDR: 10.96.0.1/12\n", "networking.serviceCIDR"),
    ("unknown-cni", BASE + "networking:\n  cni: weeve\n", "networking.cni"),
    ("weave-unacknowledged", BASE + "networking:\n  cni: weave\n", "networking.cni"),
    ("unknown-dashboard", BASE + "dashboard:\n  type: octant\n", "dashboard.type"),
    ("offline-no-dir", BASE + "artifacts:\n  mode: offline\n", "artifacts.dir"),
    ("duplicate-host-name", BASE + STATIC_HOSTS + "  - {name: w1, address: 192.0.2.21, roles: [worker]}\n",
     "hosts[2].name"),
    ("duplicate-host-address", BASE + STATIC_HOSTS + "  - {name: w2, address: 192.0.2.20, roles: [worker]}\n",
     "hosts[2].address"),
    ("host-bad-role", BASE + STATIC_HOSTS.replace("[worker]", "[minion]"), "hosts[1].roles[0]"),
    ("host-no-roles", BASE + STATIC_HOSTS.replace("[worker]", "[]"), "hosts[1].roles"),
    ("host-bad-address", BASE + STATIC_HOSTS.replace("192.0.2.20", "not an address!"), "hosts[1].address"),
    ("host-port-range", BASE + STATIC_HOSTS.replace("roles: [worker]}", "roles: [worker], port: 70000}"),
     "hosts[1].port"),
    ("host-in-pod-cidr", BASE + STATIC_HOSTS.replace("192.0.2.20", "10.244.1.5"), "hosts[1].address"),
    ("static-without-hosts", BASE + "provider: {type: static}\n", "hosts"),
    ("hosts-with-docker", BASE + STATIC_HOSTS.replace("provider: {type: static}\n", ""), "hosts"),
    ("unknown-provider", BASE + "provider: {type: openstack}\n", "provider.type"),
    ("all-in-one-workers", BASE.replace("single-master", "all-in-one") + "nodes:\n  workers: 2\n", "nodes"),
    ("single-master-two-cps", BASE + "nodes:\n  controlPlanes: 2\n", "nodes"),
    ("ha-two-cps", BASE.replace("single-master", "ha") + "nodes:\n  controlPlanes: 2\n", "nodes"),
    ("external-endpoint-no-address",
     BASE.replace("single-master", "ha") + "endpoint: {type: external}\n", "endpoint.address"),
    ("nodes-is-list", BASE + "nodes: [1, 2]\n", "nodes"),
    ("vip-not-ip", BASE.replace("single-master", "ha") + "endpoint: {type: vip, address: lb.example.com}\n",
     "endpoint.address"),
    # a registry mirror: offline mode only, host:port only, a CA file only with a mirror
    ("registry-online", BASE + "artifacts: {registry: mirror.example:5000}\n", "artifacts.registry"),
    ("registry-url", BASE + "artifacts: {mode: offline, dir: a, registry: 'https://mirror.example/v2'}\n",
     "artifacts.registry"),
    ("ca-without-registry", BASE + "artifacts: {mode: offline, dir: a, caFile: ca.pem}\n", "artifacts.caFile"),
    ("auth-without-registry", BASE + "artifacts: {mode: offline, dir: a, authFile: auth.json}\n",
     "artifacts.authFile"),
    ("preflight-all-and-one", BASE + "kubernetes: {ignorePreflightErrors: [all, NumCPU]}\n",
     "kubernetes.ignorePreflightErrors"),
    ("preflight-not-a-name", BASE + "kubernetes: {ignorePreflightErrors: ['Num CPU']}\n",
     "kubernetes.ignorePreflightErrors[0]"),
    # vagrant-libvirt's settings: a driver it knows, on libvirt only; a management network of its own
    ("vagrant-driver-unknown", BASE + "provider: {type: vagrant, vagrant: {driver: xen}}\n", "provider.vagrant.driver"),
    ("vagrant-driver-virtualbox", BASE + "provider: {type: vagrant, vagrant: {backend: virtualbox, driver: qemu}}\n",
     "provider.vagrant.driver"),
    ("vagrant-disk-too-small", BASE + "provider: {type: vagrant, vagrant: {diskGiB: 1}}\n", "provider.vagrant.diskGiB"),
    ("vagrant-mgmt-default", BASE + "provider: {type: vagrant, vagrant: {managementNetwork: {name: default}}}\n",
     "provider.vagrant.managementNetwork.name"),
    ("vagrant-mgmt-overlaps-nodes", BASE + "networking: {nodeCIDR: 192.168.121.0/25}\n"
     "provider: {type: vagrant, vagrant: {managementNetwork: {cidr: 192.168.121.0/24}}}\n",
     "provider.vagrant.managementNetwork.cidr"),
    # containerd below the Kubernetes minor's floor (containerd RELEASES.md): Debian 12's package on docker nodes,
    # an old upstream release
    ("containerd-distro-below-floor", BASE + "containerRuntime: {source: distro}\n", "containerRuntime.source"),
    ("containerd-release-below-floor", BASE + "kubernetes: {version: \"1.35\"}\ncontainerRuntime: {version: 2.1.4}\n",
     "containerRuntime.version"),
    # haproxy on a control plane would take the API server's port 6443 (kubeadm's preflight: port in use)
    ("lb-on-api-server-port", BASE.replace("single-master", "ha")
     + "endpoint: {type: vip, address: 192.0.2.100}\netcd: {mode: stacked}\nprovider: {type: static}\nhosts:\n"
     "  - {name: cp1, address: 192.0.2.10, roles: [control-plane, loadbalancer]}\n"
     "  - {name: cp2, address: 192.0.2.11, roles: [control-plane]}\n"
     "  - {name: cp3, address: 192.0.2.12, roles: [control-plane]}\n"
     "  - {name: lb2, address: 192.0.2.13, roles: [loadbalancer]}\n", "hosts[0].roles"),
]


@pytest.mark.parametrize("case_id,text,field", CASES, ids=[c[0] for c in CASES])
def test_malformed_spec_is_one_clear_line(tmp_path: Path, case_id: str, text: str, field: str) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text(text)
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-m", "provision", "plan", "-f", str(spec)], check=False,
                          capture_output=True,
                          text=True, env={"PROVISION_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert f" {field}: " in line, f"expected the field {field!r} in: {line}"
    assert str(spec) in line  # where
    assert "; " in line  # how to fix it follows the problem
    assert not state.exists(), "a rejected spec must not create state"


def test_case_count() -> None:
    assert len(CASES) >= 30


def test_unreadable_and_missing_file(tmp_path: Path) -> None:
    from provision.cli import main

    assert main(["plan", "-f", str(tmp_path / "nope.yaml")]) == 2
    d = tmp_path / "dir.yaml"
    d.mkdir()
    assert main(["plan", "-f", str(d)]) == 2


def test_malformed_yaml_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from provision.cli import main

    spec = tmp_path / "c.yaml"
    spec.write_text(BASE + "nodes:\n  workers: 2\n   bad: indent\n")
    assert main(["plan", "-f", str(spec)]) == 2
    line = capsys.readouterr().err.strip()
    assert f"{spec}:7:" in line, line


def test_field_errors_carry_their_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from provision.cli import main

    spec = tmp_path / "c.yaml"
    spec.write_text(BASE + "networking:\n  cni: weeve\n")
    assert main(["plan", "-f", str(spec)]) == 2
    assert f"{spec}:6: networking.cni:" in capsys.readouterr().err


def test_every_problem_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from provision.cli import main

    spec = tmp_path / "c.yaml"
    spec.write_text(BASE + "networking:\n  cni: weeve\n  podCIDR: 10.96.0.0/16\n")
    assert main(["plan", "-f", str(spec)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and any("networking.cni" in e for e in errors)


def test_weave_acknowledged_is_accepted_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from provision.cli import main

    spec = tmp_path / "c.yaml"
    spec.write_text(BASE + "networking:\n  cni: weave\n  allowLegacyCNI: true\n")
    assert main(["plan", "-f", str(spec)]) == 0
    assert "weave is legacy" in capsys.readouterr().err


def test_schema_errors_do_not_hide_the_rules_of_other_sections(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in one section (the schema) and a refused value in another (a rule) come out in one run; the rules
    reading the broken section stay silent rather than judge its defaults."""
    from provision.cli import main

    spec = tmp_path / "c.yaml"
    spec.write_text(BASE + "nodes:\n  workers: two\n  etcd: 2\nnetworking:\n  cni: weeve\n"
                    "dashboard: {type: none, access: admin}\n")
    assert main(["plan", "-f", str(spec)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert [e.split(": ")[2] for e in errors] == ["nodes.workers", "networking.cni", "dashboard.access"], errors
    assert f"{spec}:9: networking.cni:" in errors[1]  # rule problems keep their lines

    spec.write_text(BASE.replace("single-master", "haa") + "nodes:\n  etcd: 3\nnetworking:\n  cni: weeve\n")
    assert main(["plan", "-f", str(spec)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert [e.split(": ")[2] for e in errors] == ["topology", "networking.cni"], errors  # no verdict on etcd

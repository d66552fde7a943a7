"""Machines on real systemd container nodes: `provision up` / `status` / `destroy`, SSH, static hosts.

Everything here talks to real sshd and systemd in Docker nodes made by the tests themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision import runner, ssh
from provision.inventory import Connection
from tests.conftest import LiveCluster, docker_out, make_spec

pytestmark = pytest.mark.nodes


def provision(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False, timeout=600)


def test_up_reaches_three_nodes_and_destroy_leaves_nothing(need_nodes: None, tmp_path: Path) -> None:
    spec_path = make_spec(tmp_path, "pt-up3", extra="nodes: {controlPlanes: 1, workers: 2}\n")
    env = {"PROVISION_STATE_DIR": str(tmp_path / "state")}
    try:
        steps = ["--only", "machines", "--only", "ssh", "--only", "preflight"]  # the machines issue's part of up
        up = provision("up", "-f", str(spec_path), *steps, env=env)
        assert up.returncode == 0, up.stderr
        assert "SSH reaches all 3 node(s)" in up.stderr
        state = tmp_path / "state" / "pt-up3"
        assert (state / "inventory" / "hosts.yml").exists()
        assert oct(state.stat().st_mode & 0o777) == "0o700"
        assert oct((state / "ssh" / "id_ed25519").stat().st_mode & 0o777) == "0o600"

        # Ansible itself reaches every node over SSH, with the pinned host keys: with no cached facts, preflight
        # gathers on each (its checks are one task on the first host, reading every host's facts)
        nodes = ["pt-up3-cp1", "pt-up3-w1", "pt-up3-w2"]
        runner.forget_facts(state, nodes)
        result = runner.run_playbook(state, "preflight.yml", 3)
        assert result.ok and sorted(result.tasks) == nodes, result.tasks

        # each node is a systemd machine with its own name
        for node in ("pt-up3-cp1", "pt-up3-w1"):
            assert docker_out("exec", node, "hostname").strip() == node
            assert docker_out("exec", node, "ps", "-p", "1", "-o", "comm=").strip() == "systemd"

        status = provision("status", "-f", str(spec_path), env=env)
        assert status.returncode == 0 and status.stdout.count("running") == 3, status.stdout

        # Facts stay cached in the state dir between runs; a machine made anew (new host key) has its facts
        # gathered again, the others are not gathered again.
        def facts_mtime(node: str) -> float:
            found = [p for p in runner.facts_dir(state).iterdir() if p.name.endswith(node)]
            assert len(found) == 1, f"cached facts of {node}: {found}"
            return found[0].stat().st_mtime

        kept, remade = facts_mtime("pt-up3-cp1"), facts_mtime("pt-up3-w2")
        docker_out("rm", "-f", "pt-up3-w2")
        again = provision("up", "-f", str(spec_path), *steps, env=env)  # re-running is safe
        assert again.returncode == 0, again.stderr
        assert "0 change(s)" in again.stdout
        assert facts_mtime("pt-up3-cp1") == kept
        assert facts_mtime("pt-up3-w2") > remade
    finally:
        down = provision("destroy", "-f", str(spec_path), env=env)
    assert down.returncode == 0, down.stderr
    assert docker_out("ps", "-a", "-q", "--filter", "label=provision.cluster=pt-up3").strip() == ""
    assert "provision-pt-up3" not in docker_out("network", "ls", "--format", "{{.Name}}")
    assert not (tmp_path / "state" / "pt-up3").exists()


def test_no_docker_is_one_clear_line(tmp_path: Path) -> None:
    spec_path = make_spec(tmp_path, "pt-nodocker")
    proc = provision("up", "-f", str(spec_path),
                     env={"PROVISION_DOCKER": "/nonexistent/docker", "PROVISION_STATE_DIR": str(tmp_path)})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: Docker is not installed"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_engine_not_running_is_one_clear_line(tmp_path: Path) -> None:
    if not Path("/usr/bin/docker").exists():
        pytest.skip("needs Debian's docker client")
    spec_path = make_spec(tmp_path, "pt-noengine")
    proc = provision("up", "-f", str(spec_path),
                     env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock", "PROVISION_STATE_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the Docker engine is not running"), proc.stderr


def static_spec(tmp: Path, name: str, hosts: list[tuple[str, str, str, int]], extra: str = "") -> Path:
    lines = "".join(f"  - {{name: {n}, address: {a}, roles: [{r}], port: {p}, key: {tmp}/key}}\n"
                    for n, a, r, p in hosts)
    return make_spec(tmp, name, extra=f"provider:\n  type: static\n{extra}hosts:\n{lines}")


def test_static_hosts_over_real_ssh(shared_cluster: LiveCluster, tmp_path: Path) -> None:
    """Existing hosts: the docker nodes reached as if they were bare metal, with host keys pinned on first use."""
    key = shared_cluster.state_dir / "ssh" / "id_ed25519"
    (tmp_path / "key").write_bytes(key.read_bytes())
    os.chmod(tmp_path / "key", 0o600)
    nodes = shared_cluster.topo.nodes
    path = static_spec(tmp_path, "pt-static", [(n.name, n.address, "worker" if "worker" in n.roles else
                                                "control-plane", 22) for n in nodes])
    env = {"PROVISION_STATE_DIR": str(tmp_path / "state")}
    proc = provision("up", "-f", str(path), "--only", "machines", "--only", "ssh", "--only", "preflight", env=env)
    assert proc.returncode == 0, proc.stderr
    pinned = (tmp_path / "state" / "pt-static" / "known_hosts").read_text()
    for n in nodes:
        assert n.address in pinned
    # a host whose key changed afterwards is refused
    kh = tmp_path / "state" / "pt-static" / "known_hosts"
    other = docker_out("exec", nodes[1].name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    ssh.pin_host_key(kh, nodes[0].address, 22, other)
    proc = provision("up", "-f", str(path), "--only", "ssh", env=env)
    assert proc.returncode == 1
    assert f"{nodes[0].name}: host key changed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_and_wrong_key_are_named(shared_cluster: LiveCluster, tmp_path: Path) -> None:
    wrong = ssh.ensure_key(tmp_path / "key")  # a key no node authorizes
    cp = shared_cluster.topo.nodes[0]
    path = static_spec(tmp_path, "pt-bad", [("good-but-wrong-key", cp.address, "control-plane", 22),
                                            ("closed-port", "127.0.0.1", "worker", 9)])
    proc = provision("up", "-f", str(path), "--only", "ssh", env={"PROVISION_STATE_DIR": str(tmp_path / "s")})
    assert proc.returncode == 1
    err = proc.stderr
    assert "2 of 2 host(s) unreachable over SSH, nothing was changed" in err
    assert f"good-but-wrong-key: root@{cp.address}:22 refused the key {wrong}" in err
    assert "closed-port: cannot connect to 127.0.0.1:9" in err
    assert "Traceback" not in err


def test_bastion_jump(shared_cluster: LiveCluster, tmp_path: Path) -> None:
    """A worker reached only through a bastion: its address is a name only Docker's DNS inside the node network
    resolves, so neither paramiko nor Ansible can reach it from here except through the bastion."""
    key = shared_cluster.state_dir / "ssh" / "id_ed25519"
    (tmp_path / "key").write_bytes(key.read_bytes())
    os.chmod(tmp_path / "key", 0o600)
    cp, w1, _w2 = shared_cluster.topo.nodes
    extra = f"  static:\n    bastion: {{address: {cp.address}, key: {tmp_path}/key}}\n"
    path = static_spec(tmp_path, "pt-jump", [("jcp", cp.address, "control-plane", 22),
                                             ("jw1", w1.name, "worker", 22)], extra=extra)
    env = {"PROVISION_STATE_DIR": str(tmp_path / "state")}
    proc = provision("up", "-f", str(path), "--only", "machines", "--only", "ssh", "--only", "preflight", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "SSH reaches all 2 node(s)" in proc.stderr
    assert w1.name in (tmp_path / "state" / "pt-jump" / "known_hosts").read_text()
    direct = ssh.check_one("jw1", Connection(w1.name, 22, "root", str(tmp_path / "key")),
                           tmp_path / "state" / "pt-jump" / "known_hosts", accept_new=False, timeout=5)
    assert not direct.ok  # not reachable without the bastion


def test_inventory_uses_pinned_keys(shared_cluster: LiveCluster) -> None:
    hosts = (shared_cluster.state_dir / "inventory" / "hosts.yml").read_text()
    env = runner.environment(shared_cluster.state_dir, 3)
    assert "StrictHostKeyChecking=yes" in env["ANSIBLE_SSH_ARGS"]
    proc = subprocess.run(["ansible-inventory", "-i", str(shared_cluster.state_dir / "inventory" / "hosts.yml"),
                           "--list"], capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    for n in shared_cluster.topo.nodes:
        hv = data["_meta"]["hostvars"][n.name]
        assert hv["ansible_host"] == n.address and hv["ansible_user"] == "root"
        assert n.name in hosts


def test_too_many_nodes_for_the_inotify_limit_is_one_clear_line(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from provision.errors import UserError
    from provision.providers import docker

    limit = tmp_path / "max_user_instances"
    monkeypatch.setattr(docker, "INOTIFY_LIMIT", limit)
    limit.write_text("128\n")
    with pytest.raises(UserError, match=r"30 new node\(s\) need about 300 inotify .* sysctl -w fs\.inotify\."
                                        r"max_user_instances=\d+"):
        docker.check_inotify(30)
    limit.write_text("1000000\n")
    docker.check_inotify(30)  # room enough: no error


def test_a_distribution_containerd_below_the_floor_is_refused_before_any_install(shared_cluster: LiveCluster,
                                                                               tmp_path: Path) -> None:
    """Existing hosts with containerRuntime.source distro: plan cannot know the package's version, so the os step
    reads apt's candidate (Debian 12's 1.6.20, below 1.37's floor) and refuses before its one apt transaction
    would install containerd with the node's other packages (provision/packages.py). Then preflight, after that
    step filled the fact cache with fewer facts than it reads, gathers the rest (`up --skip preflight`, then `up`)."""
    key = shared_cluster.state_dir / "ssh" / "id_ed25519"
    (tmp_path / "key").write_bytes(key.read_bytes())
    os.chmod(tmp_path / "key", 0o600)
    node = shared_cluster.topo.nodes[-1]
    path = tmp_path / "pt-floor.yaml"
    path.write_text("apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: pt-floor\ntopology: all-in-one\n"
                    "kubernetes: {version: \"1.37\"}\ncontainerRuntime: {source: distro}\n"
                    "provider:\n  type: static\nhosts:\n"
                    f"  - {{name: {node.name}, address: {node.address}, roles: [control-plane], key: {tmp_path}/key}}\n")
    env = {"PROVISION_STATE_DIR": str(tmp_path / "state")}
    proc = provision("up", "-f", str(path), "--only", "machines", "--only", "ssh", "--only", "os", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "below what Kubernetes 1.37 supports" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    installed = docker_out("exec", node.name, "sh", "-c",
                           "dpkg-query -W -f='${Package} ${db:Status-Status}\\n' containerd conntrack 2>/dev/null; true")
    assert "installed" not in installed, installed
    # the fact cache now holds only what the OS step gathers (no CPUs, no memory): preflight gathers the rest
    proc = provision("up", "-f", str(path), "--only", "preflight", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_up_from_another_state_dir_refuses_the_clusters_nodes(shared_cluster: LiveCluster, tmp_path: Path) -> None:
    """The same spec from a fresh state dir must not adopt nodes it did not make (a killed run's nodes, with their
    etcd data, once turned a CI run's fresh cluster into a half-joined one)."""
    nodes = sorted(n.name for n in shared_cluster.topo.nodes)
    started = docker_out("inspect", "-f", "{{.State.StartedAt}}", *nodes)
    other = tmp_path / "other-state"
    proc = provision("up", "-f", str(shared_cluster.spec_path), "--state-dir", str(other), "--only", "machines")
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"already has 3 node(s) on this machine ({', '.join(nodes)})" in errors[0], errors
    assert f"made from another state dir ({shared_cluster.state_dir.resolve()})" in errors[0], errors
    assert not (other / "ssh").exists()  # refused before a key or a network was made
    assert docker_out("inspect", "-f", "{{.State.StartedAt}}", *nodes) == started

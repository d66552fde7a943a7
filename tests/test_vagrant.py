"""Provider `vagrant`: the machine list, the repo's Vagrantfile (validated for every backend) and two real nodes
booted through Vagrant's docker provider, reached over SSH with pinned host keys, then destroyed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision import inventory, paths, runner, spec, ssh, topology
from provision.cli import main
from provision.errors import UserError
from provision.providers import for_topology
from provision.providers.docker_engine import NODE_IMAGE
from provision.providers.vagrant import (
    VagrantProvider,
    _first_paragraph,
    _split_ssh_config,
    kvm_problem,
    render_machines,
)

DOCKER = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")
VAGRANT = shutil.which("vagrant")


def write_spec(tmp_path: Path, name: str, backend: str, workers: int = 1, node_cidr: str | None = None,
               extra: str = "") -> Path:
    net = f"\nnetworking: {{nodeCIDR: {node_cidr}}}" if node_cidr else ""
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""\
apiVersion: provision.dev/v1alpha1
kind: Cluster
name: {name}
topology: single-master
provider:
  type: vagrant
  vagrant: {{backend: {backend}, cpus: 2, memoryMiB: 2048{extra}}}
nodes: {{controlPlanes: 1, workers: {workers}}}{net}
""")
    return path


def load(path: Path) -> topology.Topology:
    return topology.build(spec.load_spec(path))


# ---------------------------------------------------------------- without Vagrant


def test_plan_with_provider_vagrant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, "vplan", "libvirt", workers=2)
    assert main(["plan", "-f", str(path), "--render-to", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "provider vagrant" in text
    assert "vagrant up" in text and "3 machine(s)" in text and "provider libvirt, driver kvm" in text
    assert "vplan-cp1" in text and "vplan-w2" in text
    assert (tmp_path / "out" / "inventory" / "hosts.yml").is_file()
    emulated = write_spec(tmp_path, "vqemu", "libvirt", extra=", driver: qemu")
    assert main(["plan", "-f", str(emulated)]) == 0
    assert "provider libvirt, driver qemu (emulated CPU, no KVM)" in capsys.readouterr().out


def test_the_vm_box_build_names_what_is_missing_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its tools the build stops before anything runs, naming the packages; the cache key follows the
    recipe and Vagrant's key."""
    from provision.providers import vm_box

    monkeypatch.setattr(vm_box.shutil, "which", lambda tool: None if tool in ("mmdebstrap", "qemu-img") else tool)
    monkeypatch.setattr(vm_box.os, "geteuid", lambda: 0)
    with pytest.raises(UserError, match=r"^building the VM box needs mmdebstrap, qemu-utils.*: apt-get install "
                                        r"mmdebstrap qemu-utils"):
        vm_box.build_box(lambda line: None)
    assert vm_box.recipe_digest("ssh-ed25519 A") != vm_box.recipe_digest("ssh-ed25519 B")


def test_kvm_is_refused_where_it_cannot_run_a_guest(tmp_path: Path) -> None:
    """/dev/kvm is not enough: without the CPU's vmx or svm a guest hangs at boot (this project's CI machine)."""
    dev, cpuinfo = tmp_path / "kvm", tmp_path / "cpuinfo"
    assert "is missing" in (kvm_problem(str(dev), str(cpuinfo)) or "")
    dev.write_text("")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 hypervisor\n")
    assert "neither vmx nor svm" in (kvm_problem(str(dev), str(cpuinfo)) or "")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx sse2\n")
    assert kvm_problem(str(dev), str(cpuinfo)) is None


def test_a_socket_left_by_a_dead_daemon_is_not_a_running_libvirt(tmp_path: Path) -> None:
    """The CI machine once had /run/libvirt/libvirt-sock without a libvirtd behind it: the file proves nothing."""
    import socket as socketlib

    from provision.providers import vm_box

    path = tmp_path / "libvirt-sock"
    listening = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    listening.bind(str(path))
    listening.listen(1)
    assert vm_box.answers(path)
    listening.close()  # the file stays, nobody accepts
    assert path.exists() and not vm_box.answers(path)
    assert not vm_box.answers(tmp_path / "absent")


def test_for_topology_picks_the_vagrant_provider(tmp_path: Path) -> None:
    topo = load(write_spec(tmp_path, "vpick", "docker"))
    assert isinstance(for_topology(topo, tmp_path / "state"), VagrantProvider)


def test_machine_list_is_complete_and_deterministic(tmp_path: Path) -> None:
    topo = load(write_spec(tmp_path, "vlist", "virtualbox", workers=2, node_cidr="192.168.56.0/24"))
    key = tmp_path / "ssh" / "id_ed25519"
    text = render_machines(topo, key)
    assert text == render_machines(topo, key)
    data = json.loads(text)
    assert data["cluster"] == "vlist" and data["backend"] == "virtualbox"
    assert data["box"] == "debian/bookworm64" and data["node_image"] == NODE_IMAGE
    assert data["network"] == {"name": "provision-vlist", "cidr": "192.168.56.0/24", "prefix": 24,
                               "netmask": "255.255.255.0"}
    assert data["ssh"] == {"public_key": str(key) + ".pub", "private_key": str(key)}
    assert [(n["name"], n["address"], n["roles"]) for n in data["nodes"]] == [
        (n.name, n.address, list(n.roles)) for n in topo.nodes]
    assert all(n["cpus"] == 2 and n["memory"] == 2048 and n["retired"] is False for n in data["nodes"])
    retired = json.loads(render_machines(topo, key, ["vlist-w9"]))["nodes"][-1]
    assert retired == {"name": "vlist-w9", "roles": [], "address": None, "cpus": 2, "memory": 2048,
                       "retired": True}
    assert data["libvirt"] == {"driver": "kvm", "disk_gib": None,
                               "management_network": {"name": "vagrant-libvirt", "cidr": "192.168.121.0/24"}}
    emulated = load(write_spec(tmp_path, "vemu", "libvirt", extra=", driver: qemu, diskGiB: 30, "
                               "managementNetwork: {name: vemu-mgmt, cidr: 192.168.131.0/24}"))
    assert json.loads(render_machines(emulated, key))["libvirt"] == {
        "driver": "qemu", "disk_gib": 30, "management_network": {"name": "vemu-mgmt", "cidr": "192.168.131.0/24"}}


def test_ssh_config_of_several_machines_splits_per_host() -> None:
    text = ("Host a-cp1\n  HostName 127.0.0.1\n  User root\n  Port 2200\n\n"
            "Host a-w1\n  HostName 127.0.0.1\n  Port 2222\n")
    blocks = _split_ssh_config(text)
    assert list(blocks) == ["a-cp1", "a-w1"]
    assert "Port 2222" in blocks["a-w1"] and "2200" not in blocks["a-w1"]


def test_vagrant_errors_become_one_line() -> None:
    text = ("The provider 'libvirt' could not be found, but was requested to\nback the machine 'x'.\n\n"
            "The set of available providers are listed below.\n")
    assert _first_paragraph(text) == ("The provider 'libvirt' could not be found, but was requested to "
                                      "back the machine 'x'.")


def test_missing_vagrant_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    provider = VagrantProvider(load(write_spec(tmp_path, "vnone", "docker")), tmp_path / "state")
    with pytest.raises(UserError, match=r"^vagrant is not installed: apt-get install vagrant"):
        provider.create()
    assert provider.status() == {"vnone-cp1": "missing", "vnone-w1": "missing"}  # nothing made: no Vagrant needed
    provider.destroy()  # nothing to remove


def test_unusable_backend_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if VAGRANT is None:
        pytest.skip("vagrant is not installed (apt-get install vagrant)")
    # keep vagrant, drop everything VirtualBox could be found by
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not Path(p, "VBoxManage").exists()))
    provider = VagrantProvider(load(write_spec(tmp_path, "vvbox", "virtualbox")), tmp_path / "state")
    with pytest.raises(UserError, match=r"^VirtualBox is not installed"):
        provider.create()


# ---------------------------------------------------------------- vagrant validate, every backend


def _fake_virtualbox(bin_dir: Path) -> None:
    """VirtualBox cannot run here: a VBoxManage that only answers `--version` lets Vagrant load the VirtualBox
    provider and validate its settings (vb.cpus, vb.memory...) instead of skipping them (--ignore-provider)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "VBoxManage"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 7.0.14r161095 && exit 0\nexit 1\n")
    fake.chmod(0o755)


@pytest.mark.parametrize("backend", ["libvirt", "virtualbox", "docker"])
def test_vagrantfile_validates(backend: str, tmp_path: Path) -> None:
    if VAGRANT is None:
        pytest.skip("vagrant is not installed (apt-get install vagrant)")
    if backend == "libvirt" and "vagrant-libvirt" not in subprocess.run(
            ["vagrant", "plugin", "list"], capture_output=True, text=True, check=False).stdout:
        pytest.skip("Vagrant's libvirt provider is not installed (apt-get install vagrant-libvirt)")
    libvirt = ", driver: qemu, diskGiB: 30, managementNetwork: {name: vlibv-mgmt, cidr: 192.168.131.0/24}"
    topo = load(write_spec(tmp_path, f"v{backend[:4]}", backend, workers=2, node_cidr="192.168.56.0/24",
                           extra=libvirt if backend == "libvirt" else ""))
    provider = VagrantProvider(topo, tmp_path / "state")
    ssh.ensure_key(provider.key)
    provider.render()
    env = provider._env()
    if backend == "virtualbox":
        _fake_virtualbox(tmp_path / "bin")
        env["PATH"] = os.pathsep.join([str(tmp_path / "bin"), env["PATH"]])
    proc = subprocess.run(["vagrant", "validate"], cwd=provider.workdir, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    assert env["VAGRANT_VAGRANTFILE"] == str(paths.VAGRANTFILE)

    # and a typo in the settings of that backend is caught (so the validation above really looked at them)
    bad = tmp_path / "Vagrantfile"
    field = {"libvirt": "lv.memory", "virtualbox": "vb.memory", "docker": "d.has_ssh"}[backend]
    bad.write_text(paths.VAGRANTFILE.read_text().replace(f"{field} =", f"{field}z ="))
    proc = subprocess.run(["vagrant", "validate"], cwd=provider.workdir, env={**env, "VAGRANT_VAGRANTFILE": str(bad)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "shouldn't exist" in proc.stdout + proc.stderr


def test_vagrantfile_refuses_to_run_without_a_machine_list(tmp_path: Path) -> None:
    if VAGRANT is None:
        pytest.skip("vagrant is not installed (apt-get install vagrant)")
    env = {**os.environ, "VAGRANT_VAGRANTFILE": str(paths.VAGRANTFILE), "VAGRANT_CHECKPOINT_DISABLE": "1",
           "VAGRANT_DOTFILE_PATH": str(tmp_path / ".vagrant")}
    env.pop("PROVISION_MACHINES", None)
    proc = subprocess.run(["vagrant", "validate"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0 and "PROVISION_MACHINES" in proc.stderr


# ---------------------------------------------------------------- real nodes: Vagrant's docker provider


def _why_no_docker_nodes() -> str | None:
    if VAGRANT is None:
        return "vagrant is not installed (apt-get install vagrant)"
    if DOCKER is None:
        return "docker is not installed (apt-get install docker.io)"
    if subprocess.run([DOCKER, "info"], capture_output=True, timeout=30, check=False).returncode != 0:
        return "the Docker engine is not running"
    if subprocess.run([DOCKER, "image", "inspect", NODE_IMAGE], capture_output=True, timeout=30,
                      check=False).returncode != 0:
        return f"the node image {NODE_IMAGE} is missing (provision image build)"
    return None


def _containers(prefix: str) -> list[str]:
    assert DOCKER is not None
    proc = subprocess.run([DOCKER, "ps", "-a", "--filter", f"name=^{prefix}-", "--format", "{{.Names}}"],
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.split()


@pytest.fixture
def docker_cluster(tmp_path: Path) -> Iterator[tuple[VagrantProvider, topology.Topology]]:
    reason = _why_no_docker_nodes()
    if reason:
        pytest.skip(reason)
    name = f"vgt{os.getpid() % 100000}"
    # a node network of its own, away from the 10.250.x.0/24 ranges the docker provider picks by default
    cidr = f"10.249.{os.getpid() % 250}.0/24"
    topo = load(write_spec(tmp_path, name, "docker", workers=1, node_cidr=cidr))
    provider = VagrantProvider(topo, tmp_path / "state")
    yield provider, topo
    # always tear down, even when the test failed half-way
    try:
        provider.destroy()
    finally:
        left = _containers(name)
        if left:
            assert DOCKER is not None
            subprocess.run([DOCKER, "rm", "-f", "-v", *left], capture_output=True, timeout=120, check=False)


@pytest.mark.nodes
def test_two_nodes_through_vagrant_docker(docker_cluster: tuple[VagrantProvider, topology.Topology],
                                          tmp_path: Path) -> None:
    provider, topo = docker_cluster
    names = [n.name for n in topo.nodes]
    assert len(names) == 2
    timings: dict[str, float] = {}

    t0 = time.monotonic()
    conns = provider.create()
    timings["create"] = time.monotonic() - t0
    assert sorted(conns) == sorted(names)
    for c in conns.values():
        assert c.user == "root" and c.key == str(provider.key) and c.host and c.port > 0

    t0 = time.monotonic()
    assert provider.status() == {n: "running" for n in names}
    timings["status"] = time.monotonic() - t0

    # SSH reaches both nodes, and only through the host keys pinned at creation
    pinned = provider.known_hosts.read_text()
    for c in conns.values():
        assert ssh.known_host_name(c.host, c.port) + " ssh-ed25519 " in pinned
    results = ssh.check_all(conns, provider.known_hosts, accept_new=False)
    assert all(r.ok for r in results), results

    # each node has its name and its fixed address from the topology's address plan
    assert DOCKER is not None
    for n in topo.nodes:
        out = subprocess.run([DOCKER, "exec", n.name, "sh", "-c", "hostname; ip -4 -o addr"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        assert out.splitlines()[0] == n.name and f" {n.address}/24 " in out

    # Ansible itself gets in with the rendered inventory and the runner's SSH settings (pinned keys only)
    inventory.write(inventory.render(topo, conns), provider.state_dir)
    env = {**os.environ, **runner.environment(provider.state_dir, len(names))}
    env["ANSIBLE_SSH_ARGS"] = env["ANSIBLE_SSH_ARGS"].replace("ControlPersist=120s", "ControlPersist=no")
    t0 = time.monotonic()
    proc = subprocess.run(["ansible", "all", "-i", str(provider.state_dir / "inventory" / "hosts.yml"),
                           "-m", "ansible.builtin.ping", "-o"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    timings["ansible ping"] = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == 2

    # re-running create changes nothing; a node dropped from the spec is not deleted behind your back (like the
    # docker provider): status shows it, a plain `vagrant up` leaves it alone, destroy removes it
    name = topo.cluster.name
    smaller = topology.build(spec.load_text(
        write_spec(tmp_path, name, "docker", workers=1, node_cidr=topo.node_cidr).read_text()
        .replace("topology: single-master", "topology: all-in-one").replace("workers: 1", "workers: 0")))
    shrunk = VagrantProvider(smaller, provider.state_dir)
    t0 = time.monotonic()
    assert shrunk.create() == {f"{name}-cp1": conns[f"{name}-cp1"]}
    timings["create again"] = time.monotonic() - t0
    assert shrunk.status() == {f"{name}-cp1": "running", f"{name}-w1": "running (not in the spec)"}

    t0 = time.monotonic()
    shrunk.destroy()
    timings["destroy"] = time.monotonic() - t0
    assert _containers(name) == []
    assert provider.status() == {n: "missing" for n in names}
    print("vagrant docker timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))

"""One real VM (issue #16): provider vagrant, backend libvirt, QEMU's emulation (driver qemu: no usable KVM here),
from the box `provision image build --vm` makes, 1 vCPU. `provision up` runs every step the doubles allow
(machines, SSH, preflight, OS prep, containerd and the packages from the CRI lane's artifacts: real containerd,
runc and CNI plugins; init with the kubeadm/kubelet doubles), a second `up` changes nothing, `destroy` leaves no
domain or network. On the VM, what container nodes cannot show: kernel modules loaded by modprobe, sysctls taken
by the VM's own kernel, swap really turned off, cgroup v2 with a kubelet configuration that does not ask for
cgroup v1, and containerd running a pod under the systemd cgroup driver, driven over its CRI as the kubelet does.

Only this machine's own VM is contacted: its address comes from Vagrant, its host key was pinned on first boot.
The lane runs where libvirt and the box are ready (`provision image build --vm --install-engine`); with
PROVISION_REQUIRE_VMS set (the test command sets it once the lane is part of CI) it fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from provision.providers import vm_box
from tests.cri import artifacts as cri_artifacts
from tests.cri.client import SOCKET, Cri

NAME = "pt-vm"
NODE = f"{NAME}-cp1"
KUBERNETES = "1.37"


def vm_missing() -> str | None:
    if shutil.which("vagrant") is None:
        return "vagrant is not installed"
    if not vm_box.libvirt_running():
        return "libvirtd is not running (provision image build --vm --install-engine)"
    if not vm_box.box_listed():
        return f"the box {vm_box.BOX} is not built (provision image build --vm)"
    return None


@dataclass
class VM:
    spec: Path
    state: Path
    tmp: Path

    def provision(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "provision", *args, "-f", str(self.spec), "--state-dir",
                               str(self.state)], capture_output=True, text=True, check=False, timeout=3600)

    def ssh_command(self) -> list[str]:
        hosts = (self.state / "inventory" / "hosts.yml").read_text()
        address = re.search(rf'"{NODE}":\s*\n\s*ansible_host: "([^"]+)"', hosts)
        assert address, hosts
        return ["ssh", "-i", str(self.state / "ssh" / "id_ed25519"), "-o", f"UserKnownHostsFile={self.state}/known_hosts",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{address.group(1)}"]

    def sh(self, script: str, stdin: bytes | None = None) -> str:
        proc = subprocess.run([*self.ssh_command(), script], input=stdin, capture_output=True, check=False,
                              timeout=600)
        assert proc.returncode == 0, f"{script}: {(proc.stderr or proc.stdout).decode(errors='replace').strip()}"
        return proc.stdout.decode(errors="replace")

    def put_yaml_module(self) -> None:
        """PyYAML's pure-Python modules from this machine into the guest's site-packages, for the kubeadm and kubelet
        TEST DOUBLES (the docker node image has Debian's python3-yaml; a real kubeadm needs nothing of the kind).
        Copied rather than installed: the guest's apt-get would refresh its package lists a second time, which
        costs the emulated guest minutes (os_prep refreshes them anyway)."""
        source = Path(yaml.__file__).parent
        archive = subprocess.run(["tar", "-C", str(source.parent), "--exclude=__pycache__", "--exclude=*.so", "-cf", "-",
                                  source.name], capture_output=True, check=True).stdout
        self.sh("site=$(python3 -c 'import site; print(site.getsitepackages()[0])') && mkdir -p \"$site\" && "
                "tar -C \"$site\" -xf - && python3 -c 'import yaml; yaml.safe_load(\"a: 1\")'", stdin=archive)


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True,
                          check=False).stdout


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VM]:
    why = vm_missing()
    if why:
        if os.environ.get("PROVISION_REQUIRE_VMS"):
            pytest.fail(f"a real VM is required here but {why}")
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("vm")
    containerd = cri_artifacts.build(tmp / "artifacts", KUBERNETES, "2.1")
    spec = tmp / "vm.yaml"
    spec.write_text(
        f"apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: {NAME}\ntopology: all-in-one\n"
        "provider:\n  type: vagrant\n"
        f"  vagrant: {{backend: libvirt, driver: qemu, box: {vm_box.BOX}, cpus: 1, memoryMiB: 2048}}\n"
        f"kubernetes: {{version: \"{KUBERNETES}\", ignorePreflightErrors: [NumCPU]}}\n"  # kubeadm wants 2 CPUs
        f"containerRuntime: {{version: {containerd}, allowUnsupportedVersion: true}}\n"
        f"dashboard: {{type: none}}\nartifacts: {{mode: offline, dir: {tmp / 'artifacts'}}}\n")
    machine = VM(spec, tmp / "state", tmp)
    try:
        yield machine
    finally:
        machine.provision("destroy")


@pytest.mark.vm
def test_up_on_a_real_vm_then_again_changes_nothing(vm: VM) -> None:
    started = time.monotonic()
    first = vm.provision("up", "--only", "machines", "--only", "ssh")
    assert first.returncode == 0, first.stderr[-3000:]
    booted = time.monotonic() - started
    # swap on, in fstab, as on a fresh cloud VM
    vm.sh("fallocate -l 256M /swapfile && chmod 600 /swapfile && mkswap -q /swapfile && swapon /swapfile && "
          "echo '/swapfile none swap sw 0 0' >> /etc/fstab")
    vm.put_yaml_module()
    up = vm.provision("up", "--skip", "cni", "--skip", "verify")
    assert up.returncode == 0, up.stderr[-3000:]
    again = vm.provision("up", "--skip", "cni", "--skip", "verify")
    assert again.returncode == 0, again.stderr[-3000:]
    changed = re.findall(r"ok, (\d+) change", again.stdout)
    assert changed and all(c == "0" for c in changed), again.stdout
    steps = [line for line in up.stdout.splitlines() if re.search(r"\s\d+\.\d\s+(ok|done|failed)", line)]
    print(f"\nVM: booted and reachable in {booted:.0f}s; whole lane so far {time.monotonic() - started:.0f}s; the "
          "first full up's steps:\n" + "\n".join(steps))


@pytest.mark.vm
def test_the_vm_kernel_takes_what_container_nodes_cannot(vm: VM) -> None:
    """Every check is read and every one that fails is named (one VM run shows them all)."""
    problems = []
    modules = vm.sh("lsmod | awk '{print $1}'").split()
    if not {"br_netfilter", "overlay"} <= set(modules):  # loaded by modprobe, in the VM's own kernel
        problems.append(f"modules not loaded: {sorted({'br_netfilter', 'overlay'} - set(modules))}")
    sysctls = vm.sh("sysctl -n net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables "
                    "net.ipv4.ip_forward").split()
    if sysctls != ["1", "1", "1"]:
        problems.append(f"bridge and forwarding sysctls are {sysctls}")
    # conntrack: kube-proxy sizes the table itself when it starts (conntrack.maxPerCore); a container node must
    # tell it not to (maxPerCore: 0, as kind does), a VM must not, and the VM's kernel takes the write. 131072 is
    # what kube-proxy sets on 1 CPU (32768 per core, at least 131072). In a container node the write is refused
    # ("Invalid argument": the table's size belongs to the host) and the host's value is read back (262144 here).
    if re.search(r"maxPerCore: 0", vm.sh("cat /etc/kubernetes/kubeadm-config.yaml")):
        problems.append("a VM's kube-proxy is told to leave conntrack alone (maxPerCore: 0, for container nodes)")
    conntrack = vm.sh("modprobe nf_conntrack; sysctl -w net.netfilter.nf_conntrack_max=131072 2>&1 >/dev/null; "
                      "sysctl -n net.netfilter.nf_conntrack_max 2>&1 || true").strip()
    if conntrack != "131072":
        problems.append(f"the conntrack table size did not take: {conntrack}")
    if vm.sh("swapon --noheadings --show").strip():
        problems.append("swap is still on")
    if not re.search(r"(?m)^#.*/swapfile\s+none\s+swap", vm.sh("cat /etc/fstab")):
        problems.append("the swap file stays active in /etc/fstab")
    if vm.sh("stat -fc %T /sys/fs/cgroup").strip() != "cgroup2fs":
        problems.append("not cgroup v2")
    kubelet = vm.sh("cat /var/lib/kubelet/config.yaml")
    if not re.search(r"(?m)^cgroupDriver: systemd$", kubelet):
        problems.append("the kubelet's cgroupDriver is not systemd")
    if "failCgroupV1" in kubelet:
        problems.append("a cgroup v2 node's kubelet is told about cgroup v1 (failCgroupV1)")
    assert not problems, problems


@pytest.mark.vm
def test_containerd_runs_a_pod_under_systemd_on_cgroup_v2(vm: VM) -> None:
    local = vm.tmp / "containerd.sock"
    forward = subprocess.Popen([*vm.ssh_command()[:-1], "-N", "-o", "ExitOnForwardFailure=yes", "-o",
                                "StreamLocalBindUnlink=yes", "-L", f"{local}:{SOCKET}", vm.ssh_command()[-1]])
    try:
        for _ in range(100):
            if local.exists():
                break
            time.sleep(0.1)
        cri = Cri(NODE, socket=str(local), ssh=vm.ssh_command())
        # the pod's sandbox: the pause image (imported from the artifacts) run by runc, placed by containerd's
        # systemd cgroup driver in a scope under the pod's slice, on the VM's cgroup v2 tree
        pod = cri.run_pod("systemd-v2", host_network=True)
        scope = (f"/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
                 f"{pod.uid.replace('-', '_')}.slice/cri-containerd-{pod.id}.scope")
        pids = vm.sh(f"cat {scope}/cgroup.procs").split()
        assert pids, f"no process in {scope}"
        assert vm.sh(f"cat /proc/{pids[0]}/cmdline | tr '\\0' ' '").startswith("/pause"), "not the pause process"
        assert vm.sh(f"systemctl show -p ControlGroup --value cri-containerd-{pod.id}.scope").strip() == scope[14:]
        cri.remove_pod(pod)
        cri.close()
    finally:
        forward.terminate()
        forward.wait(timeout=10)


@pytest.mark.vm
def test_destroy_leaves_no_domain_or_network(vm: VM) -> None:
    proc = vm.provision("destroy")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert NODE not in virsh("list", "--all", "--name").split()
    networks = virsh("net-list", "--all", "--name").split()
    assert f"provision-{NAME}" not in networks and "vagrant-libvirt" not in networks, networks
    assert not [v for v in virsh("vol-list", "default").split() if v.startswith(NODE)], "the VM's disk is left"

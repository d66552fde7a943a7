"""Remove what an earlier, interrupted test run left on this machine (tests/run.sh calls this first).

A killed run leaves its nodes running. `up` refuses nodes another state dir made (provider docker), so the next
run's modules would fail on them rather than start clean. Only what the tests themselves made is removed:
- Docker nodes whose state dir lies under a pytest temp root (their `provision.state-dir` label), and their networks;
- the VM lane's libvirt domain, disks and network (its cluster name, tests/test_vm.py).
A user's own clusters, and nodes made from any other state dir, are never touched.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from provision.providers.docker import LABEL, STATE_LABEL
from provision.providers.docker_engine import docker_binary

TEST_ROOTS = (f"{tempfile.gettempdir()}/pytest-of-", f"{tempfile.gettempdir()}/provision-vm-lane/")
VM_CLUSTER = "pt-vm"  # tests/test_vm.py's NAME


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300).stdout


def docker_leftovers(docker: str) -> tuple[list[str], set[str]]:
    """The containers the tests made, and their clusters' networks."""
    out = run(docker, "ps", "-a", "--filter", f"label={STATE_LABEL}", "--format",
              f'{{{{.Names}}}}\t{{{{.Label "{STATE_LABEL}"}}}}\t{{{{.Label "{LABEL}"}}}}')
    names, networks = [], set()
    for line in out.splitlines():
        name, state_dir, cluster = line.split("\t")
        if state_dir.startswith(TEST_ROOTS):
            names.append(name)
            networks.add(f"provision-{cluster}")
    return names, networks


def remove_docker_leftovers() -> None:
    docker = docker_binary()
    if docker is None or subprocess.run([docker, "info"], capture_output=True, check=False).returncode != 0:
        return
    names, networks = docker_leftovers(docker)
    if names:
        print(f"removing {len(names)} test node(s) an earlier run left: {', '.join(sorted(names))}")
        run(docker, "rm", "-f", "-v", *names)
    for network in sorted(networks):
        run(docker, "network", "rm", network)


def remove_vm_leftovers() -> None:
    virsh = ["virsh", "-c", "qemu:///system"]
    try:
        domains = [d for d in run(*virsh, "list", "--all", "--name").split() if d.startswith(f"{VM_CLUSTER}-")]
    except FileNotFoundError:
        return
    for domain in domains:
        print(f"removing the VM {domain} an earlier run left")
        run(*virsh, "destroy", domain)
        run(*virsh, "undefine", domain, "--remove-all-storage")
    if f"provision-{VM_CLUSTER}" in run(*virsh, "net-list", "--all", "--name").split():
        run(*virsh, "net-destroy", f"provision-{VM_CLUSTER}")
        run(*virsh, "net-undefine", f"provision-{VM_CLUSTER}")


if __name__ == "__main__":
    remove_docker_leftovers()
    if Path("/var/run/libvirt/libvirt-sock").exists():
        remove_vm_leftovers()

"""The docker provider's node boot fixes (provision/providers/node-entrypoint), on real systemd container nodes.

What kind's node entrypoint makes true for its nodes must hold for ours, checked the way the kubelet, a CNI and
CoreDNS would meet it: mount propagation from another mount namespace, DNS from another network namespace
joined by a veth pair (as a pod is), a product_uuid per node, a restart policy, the masked binfmt unit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import LiveCluster, docker_out

pytestmark = pytest.mark.nodes


def sh(node: str, script: str) -> str:
    return docker_out("exec", node, "sh", "-ec", script)


def test_root_is_a_shared_mount_and_a_mount_from_another_namespace_propagates(shared_cluster: LiveCluster) -> None:
    node = shared_cluster.topo.nodes[0].name
    assert sh(node, "findmnt -no PROPAGATION /").split(",")[0] == "shared"
    # what runc does for a Bidirectional volume: a new mount namespace whose mounts propagate back (rshared)
    out = sh(node, """
        mkdir -p /var/lib/prop-test && rm -f /run/prop-seen
        unshare --mount --propagation shared sh -c 'mount -t tmpfs prop /var/lib/prop-test && touch /var/lib/prop-test/x'
        findmnt -no FSTYPE,SOURCE /var/lib/prop-test; test -e /var/lib/prop-test/x && echo seen
        umount /var/lib/prop-test""")
    assert out.split() == ["tmpfs", "prop", "seen"], out


def test_a_pod_network_namespace_resolves_names_through_the_nodes_resolv_conf(shared_cluster: LiveCluster) -> None:
    first, other = shared_cluster.topo.nodes[0].name, shared_cluster.topo.nodes[1].name
    assert "127.0.0.11" not in sh(first, "grep ^nameserver /etc/resolv.conf")
    out = sh(first, f"""
        ip netns del dns-test 2>/dev/null || true; ip link del dns-h 2>/dev/null || true
        ip netns add dns-test
        ip link add dns-h type veth peer name dns-p
        ip link set dns-p netns dns-test
        ip addr add 10.244.250.1/30 dev dns-h && ip link set dns-h up
        ip netns exec dns-test ip addr add 10.244.250.2/30 dev dns-p
        ip netns exec dns-test ip link set dns-p up
        ip netns exec dns-test ip route add default via 10.244.250.1
        sysctl -qw net.ipv4.ip_forward=1
        ip netns exec dns-test getent hosts {other} || echo "no answer for {other}"
        ip netns exec dns-test getent hosts deb.debian.org || echo "no answer for deb.debian.org"
        ip netns del dns-test""")
    assert "no answer" not in out, out
    assert other in out and "deb.debian.org" in out


def test_each_node_has_its_own_product_uuid_a_restart_policy_and_no_binfmt(shared_cluster: LiveCluster) -> None:
    names = [n.name for n in shared_cluster.topo.nodes]
    uuids = {sh(n, "cat /etc/provision/product_uuid").strip() for n in names}
    assert len(uuids) == len(names)
    for n in names:
        dmi = sh(n, "cat /sys/class/dmi/id/product_uuid 2>/dev/null || true").strip()
        assert dmi in ("", *uuids)  # laid over the host's where the host has DMI (this test machine has none)
        assert sh(n, "systemctl is-enabled systemd-binfmt.service || true").strip() == "masked"
        info = json.loads(docker_out("inspect", n))[0]
        assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 1}
        if Path("/dev/mapper/control").exists():
            assert sh(n, "test -e /dev/mapper/control && echo yes").strip() == "yes"


def test_a_pid_file_left_by_a_dead_dockerd_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    """dockerd refuses to start beside any /var/run/docker.pid; a machine restarted without init leaves one."""
    from provision.providers import docker_engine

    said: list[str] = []
    stale = tmp_path / "stale.pid"
    stale.write_text("999999999\n")  # above pid_max: no such process
    docker_engine._remove_stale_pid_file(said.append, stale)
    assert not stale.exists() and "is not running" in said[0]
    live = tmp_path / "live.pid"
    live.write_text(f"{os.getpid()}\n")
    docker_engine._remove_stale_pid_file(said.append, live)
    assert live.exists() and len(said) == 1


def test_each_node_made_its_own_ed25519_and_ecdsa_host_keys_and_no_rsa(shared_cluster: LiveCluster) -> None:
    """Made on first boot (the image has none); RSA is skipped, as in the VM box: its key costs most of the boot's CPU."""
    names = [n.name for n in shared_cluster.topo.nodes]
    for n in names:
        assert sh(n, "ls /etc/ssh/ssh_host_*_key | sort").split() == [
            "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"]
        assert sorted(sh(n, "sshd -T | awk '$1 == \"hostkey\" {print $2}'").split()) == [
            "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"]
    assert len({sh(n, "cat /etc/ssh/ssh_host_ed25519_key.pub") for n in names}) == len(names)

"""External etcd with mTLS and the HA API endpoint on real nodes: quorum loss, rejoin, backup, failover.

Control-plane nodes run a STAND-IN TLS server in place of kube-apiserver (tests/standins/), since no API
server binary can be had here; etcd, haproxy and keepalived are the real Debian packages.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from provision import runner
from tests.conftest import LiveCluster, docker_out

pytestmark = pytest.mark.nodes
STANDIN = Path(__file__).parent / "standins" / "apiserver_standin.py"


@pytest.fixture(scope="module")
def ha(ha_etcd: LiveCluster) -> LiveCluster:
    return ha_etcd  # the session's (tests/conftest.py); test_etcd_backup changes it after this module


def sh(node: str, command: str) -> str:
    return docker_out("exec", node, "sh", "-c", command)


def sh_rc(node: str, command: str) -> int:
    return subprocess.run(["/usr/bin/docker", "exec", node, "sh", "-c", command], capture_output=True,
                          check=False).returncode


def test_three_members_healthy_with_mtls(ha: LiveCluster) -> None:
    health = sh("pt-ha-etcd1", "etcdctl-tls endpoint health --cluster 2>&1")
    assert health.count("is healthy") == 3, health
    members = json.loads(sh("pt-ha-etcd1", "etcdctl-tls member list -w json"))["members"]
    assert sorted(m["name"] for m in members) == ["pt-ha-etcd1", "pt-ha-etcd2", "pt-ha-etcd3"]
    assert all(u.startswith("https://") for m in members for u in m["peerURLs"] + m["clientURLs"])
    # a client without a certificate is refused
    addr = ha.topo.node("pt-ha-etcd2").address
    assert sh_rc("pt-ha-etcd1", f"ETCDCTL_API=3 etcdctl --endpoints=https://{addr}:2379 "
                                "--cacert=/etc/etcd/pki/ca.crt --dial-timeout=3s --command-timeout=3s get x") != 0
    # private keys are 0600, on the node and on the control node
    assert sh("pt-ha-etcd1", "stat -c %a /etc/etcd/pki/server.key /etc/etcd/pki/peer.key").split() == ["600"] * 2
    pki = ha.state_dir / "pki" / "etcd"
    keys = sorted(pki.glob("*.key"))
    assert len(keys) == 8 and all(oct(k.stat().st_mode & 0o777) == "0o600" for k in keys)
    assert (pki / "apiserver-etcd-client.crt").exists()


def test_writes_survive_one_member_down_and_it_rejoins(ha: LiveCluster) -> None:
    sh("pt-ha-etcd3", "systemctl stop etcd")
    try:
        out = sh("pt-ha-etcd1", "etcdctl-tls put during-outage yes")
        assert out.strip() == "OK"
        health = subprocess.run(["/usr/bin/docker", "exec", "pt-ha-etcd1", "etcdctl-tls", "endpoint", "health",
                                 "--cluster"], capture_output=True, text=True, check=False)
        assert health.returncode != 0 and (health.stdout + health.stderr).count("is healthy") == 2
    finally:
        sh("pt-ha-etcd3", "systemctl start etcd")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sh_rc("pt-ha-etcd3", "etcdctl-tls get during-outage --print-value-only | grep -qx yes") == 0:
            break
        time.sleep(1)
    else:
        pytest.fail("etcd3 did not rejoin with the write made while it was down")
    assert sh("pt-ha-etcd1", "etcdctl-tls endpoint health --cluster 2>&1").count("is healthy") == 3


def test_second_converge_changes_nothing(ha: LiveCluster) -> None:
    for playbook in ("etcd.yml", "endpoint.yml"):
        result = runner.run_playbook(ha.state_dir, playbook, len(ha.topo.nodes))
        assert result.ok, [f.line() for f in result.failures]
        assert result.changed == {} and result.changed_tasks == [], (result.changed, result.changed_tasks)


def test_snapshot_is_valid_for_etcd_tooling(ha: LiveCluster) -> None:
    result = runner.run_playbook(ha.state_dir, "etcd-backup.yml", len(ha.topo.nodes))
    assert result.ok, [f.line() for f in result.failures]
    snaps = sorted((ha.state_dir / "backups" / "etcd").glob("snapshot-*.db"))
    assert len(snaps) == 1 and snaps[0].stat().st_size > 0
    docker_out("cp", str(snaps[0]), "pt-ha-etcd2:/root/check.db")
    status = json.loads(sh("pt-ha-etcd2", "ETCDCTL_API=3 etcdctl snapshot status /root/check.db -w json"))
    assert status["totalKey"] >= 1 and status["revision"] >= 1


def _get(url: str, timeout: float = 3) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
        return str(resp.read().decode())


@pytest.fixture(scope="module")
def standins(ha: LiveCluster) -> list[str]:
    cps = ha.topo.groups["control_plane"]
    for cp in cps:
        docker_out("cp", str(STANDIN), f"{cp}:/usr/local/bin/apiserver_standin.py")
        sh(cp, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=standin "
               "-keyout /tmp/standin.key -out /tmp/standin.crt 2>/dev/null && "
               "systemd-run --unit=apiserver-standin python3 /usr/local/bin/apiserver_standin.py "
               "/tmp/standin.crt /tmp/standin.key")
    return cps


def _answers(endpoint: str, n: int) -> list[str]:
    return [_get(f"https://{endpoint}/who") for _ in range(n)]


def test_haproxy_only_sends_to_healthy_backends(ha: LiveCluster, standins: list[str]) -> None:
    endpoint = f"{ha.topo.endpoint_host}:{ha.topo.endpoint_port}"
    deadline = time.monotonic() + 30
    while True:  # until haproxy's health checks have marked every stand-in up
        try:
            if set(_answers(endpoint, 6)) == set(standins):
                break
        except OSError:
            pass  # no backend up yet: haproxy closes the connection
        assert time.monotonic() < deadline, "haproxy never balanced over all three stand-ins"
        time.sleep(1)
    sh(standins[1], "systemctl stop apiserver-standin")
    try:
        time.sleep(6)  # fall 2 x inter 2s
        seen = _answers(endpoint, 12)  # every request answers: none goes to the stopped backend
        assert set(seen) == {standins[0], standins[2]}
    finally:
        sh(standins[1], "systemd-run --unit=apiserver-standin python3 /usr/local/bin/apiserver_standin.py "
                        "/tmp/standin.crt /tmp/standin.key")


def test_vip_fails_over_and_endpoint_keeps_answering(ha: LiveCluster, standins: list[str]) -> None:
    vip = ha.topo.endpoint_host
    lb1, lb2 = ha.topo.groups["loadbalancer"]

    def holder() -> str | None:
        for lb in (lb1, lb2):
            if f"inet {vip}/" in sh(lb, "ip -4 addr show"):
                return lb
        return None

    deadline = time.monotonic() + 20
    while holder() != lb1:
        assert time.monotonic() < deadline, "the VIP never settled on the first load balancer"
        time.sleep(0.5)
    sh(lb1, "systemctl stop keepalived")
    try:
        t0 = time.monotonic()
        while holder() != lb2:
            assert time.monotonic() - t0 < 15, "the VIP did not move to the second load balancer"
            time.sleep(0.25)
        moved = time.monotonic() - t0
        assert _get(f"https://{vip}:{ha.topo.endpoint_port}/who") in standins
        print(f"VIP moved in {moved:.1f}s")
    finally:
        sh(lb1, "systemctl start keepalived")

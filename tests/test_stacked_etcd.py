"""The ha-stacked sample (kubeadm's stacked HA) end to end, then its etcd on day 2: backup and restore, control-plane
removal (quorum refusal, an unreachable node, the API endpoint's backends), on real nodes with a real etcd.

One cluster for the module, inventories/ha-stacked.yaml as test_bootstrap.py runs every other sample: 3 control
planes, 1 worker (of the sample's 2: test_bootstrap.ONE_WORKER), a VIP on 2 load balancers; first the checks every sample gets. The artifacts carry
kubeadm's etcd image (built from Debian's etcd, tests/doubles/artifacts.py), which the kube_packages role imports
into containerd; the kubeadm double adds each joining control plane as an etcd member through the cluster (learner,
then promoted) and the kubelet double runs each member from the static pod manifest kubeadm writes. provision
installs its own etcd client (etcd.source: distro, Debian's etcdctl) on the control planes. Real: etcd, containerd,
haproxy, keepalived, sshd, Ansible. Doubles: kubeadm, kubelet, kubectl, the API server (on the first control plane).
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision import spec, state, topology
from tests.conftest import docker_out
from tests.doubles.artifacts import build as build_artifacts
from tests.test_bootstrap import (
    check_anonymous_access,
    check_contract,
    check_stacked_etcd,
    records,
    sample_spec,
    scan_for_secrets,
    secrets_of,
)
from tests.test_day2 import provision

pytestmark = pytest.mark.nodes
NAME = "ha-stacked"
CP1, CP2, CP3 = (f"{NAME}-cp{i}" for i in (1, 2, 3))
LBS = [f"{NAME}-lb1", f"{NAME}-lb2"]
ETCDCTL = ("/usr/local/lib/provision-doubles/etcd-image/etcdctl --endpoints=https://127.0.0.1:2379 "
           "--cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
           "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key")


@dataclass
class Stacked:
    path: Path
    state: Path
    topo: topology.Topology
    outputs: list[str]

    def run(self, *args: str) -> tuple[int, str, str]:
        proc = provision(*args, "-f", str(self.path), "--state-dir", str(self.state))
        return proc.returncode, proc.stdout, proc.stderr

    def endpoint(self) -> str:
        return f"https://{self.topo.endpoint_host}:{self.topo.endpoint_port}"


def sh(node: str, command: str) -> str:
    return docker_out("exec", node, "sh", "-c", command)


def etcdctl(node: str, args: str) -> str:
    """The image's etcdctl on the node, against its local member (what kubeadm's own etcd client would see)."""
    return sh(node, f"{ETCDCTL} {args}")


def members(node: str) -> dict[str, list[str]]:
    listed = json.loads(etcdctl(node, "member list -w json"))["members"]
    return {m.get("name", ""): m["peerURLs"] for m in listed}


def wait_healthy(node: str, count: int, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while True:
        out = docker_out("exec", node, "sh", "-c", f"{ETCDCTL} endpoint health --cluster 2>&1 || true")
        if out.count("is healthy") == count:
            return
        assert time.time() < deadline, out
        time.sleep(1)


def backends() -> list[str]:
    """The API servers haproxy sends to, the same on every load balancer."""
    found = [[line.split()[1] for line in sh(lb, "cat /etc/haproxy/haproxy.cfg").splitlines()
              if line.strip().startswith("server ")] for lb in LBS]
    assert all(f == found[0] for f in found), found
    return found[0]


@pytest.fixture(scope="module")
def stacked(need_nodes: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacked]:
    tmp = tmp_path_factory.mktemp("stacked")
    build_artifacts(tmp / "artifacts" / "with-etcd", "1.37.2", etcd_image=True)
    path = sample_spec(NAME, tmp, tmp / "artifacts")
    live = Stacked(path, tmp / "state" / NAME, topology.build(spec.load_spec(path)), [])
    try:
        # verify needs a real API server and kubelets: with the doubles it has nothing to ask (tests/test_verify.py)
        rc, out, err = live.run("up", "--skip", "verify")
        assert rc == 0, err[-3000:]
        live.outputs += [out, err]
        yield live
    finally:
        live.run("destroy")


def test_up_then_a_second_up_that_changes_nothing_as_for_every_sample(stacked: Stacked) -> None:
    """What test_bootstrap.py checks for every other sample, and a real stacked etcd behind it."""
    topo = stacked.topo
    check_contract(topo)
    check_anonymous_access(CP1)
    kubeconfig = stacked.state / "kubeconfig"
    assert kubeconfig.exists() and oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    before = {n: len(records(n)) for n in topo.groups["k8s_cluster"]}
    rc, out, err = stacked.run("up", "--skip", "verify")
    assert rc == 0, err[-3000:]
    for n in topo.groups["k8s_cluster"]:
        assert not [r for r in records(n)[before[n]:] if r["argv"][:1] in (["init"], ["join"])], f"{n}: re-ran"
    changed = re.findall(r"ok, (\d+) change", out)
    assert changed and all(c == "0" for c in changed), out
    scan_for_secrets(secrets_of(topo, stacked.state), stacked.outputs + [out, err], stacked.state, topo)
    check_stacked_etcd(topo)


def test_every_control_plane_runs_a_member_of_one_etcd_cluster(stacked: Stacked) -> None:
    addresses = {n: stacked.topo.node(n).address for n in (CP1, CP2, CP3)}
    assert members(CP3) == {n: [f"https://{a}:2380"] for n, a in addresses.items()}
    wait_healthy(CP1, 3)
    for node in (CP1, CP2, CP3):
        manifest = sh(node, "cat /etc/kubernetes/manifests/etcd.yaml")
        assert f"--name={node}" in manifest and "image: registry.k8s.io/etcd:" in manifest
        assert sh(node, "systemctl is-active static-pod-etcd").strip() == "active"
    # kubeadm added the joining members through the cluster, the first one started it alone
    assert "--initial-cluster-state=existing" in sh(CP3, "cat /etc/kubernetes/manifests/etcd.yaml")
    assert "--initial-cluster-state" not in sh(CP1, "cat /etc/kubernetes/manifests/etcd.yaml")


def test_backup_then_restore_into_every_control_plane(stacked: Stacked, tmp_path: Path) -> None:
    assert etcdctl(CP1, "put /provision-test/a before-backup").strip() == "OK"
    rc, out, err = stacked.run("etcd", "backup")
    assert rc == 0, err[-3000:]
    snapshot = Path(out.strip())
    assert snapshot.is_file() and oct(snapshot.stat().st_mode & 0o777) == "0o600"
    assert sh(CP1, "command -v etcdctl-stacked").strip()  # provision's own client, installed for the backup
    assert etcdctl(CP2, "put /provision-test/b after-backup").strip() == "OK"

    bad = tmp_path / "not-a-snapshot.db"
    bad.write_bytes(b"x" * 8192)
    rc, _, err = stacked.run("etcd", "restore", str(bad), "--yes")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not an etcd snapshot" in err, err

    before = members(CP1)
    rc, _, err = stacked.run("etcd", "restore", str(snapshot), "--yes")
    assert rc == 0, err[-3000:]
    wait_healthy(CP2, 3)
    assert members(CP2) == before  # the same names and peer URLs
    for node in (CP1, CP2, CP3):
        assert etcdctl(node, "get /provision-test/a --print-value-only").strip() == "before-backup"
        assert etcdctl(node, "get /provision-test/b --print-value-only").strip() == ""
        kept = sh(node, "ls -d /var/lib/etcd.before-restore-*").split()
        assert len(kept) == 1 and sh(node, f"ls {kept[0]}/member").strip(), kept
        assert sh(node, "stat -c '%a' /var/lib/etcd").strip() == "700"
        assert sorted(sh(node, "ls /etc/kubernetes/manifests").split()) == [
            "etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]
        assert sh(node, "ls -d /etc/kubernetes/manifests.before-restore-* 2>/dev/null || true").strip() == ""
        assert sh(node, "ls /var/backups/etcd/restore.db 2>/dev/null || true").strip() == ""
    assert readyz(stacked.endpoint()) == 200


def readyz(url: str) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=3, context=ctx) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_a_removal_that_would_break_quorum_is_refused_naming_the_healthy_members(stacked: Stacked) -> None:
    sh(CP2, "mv /etc/kubernetes/manifests/etcd.yaml /root/etcd.yaml")  # the kubelet stops CP2's member
    try:
        deadline = time.time() + 30
        while sh(CP2, "systemctl is-active static-pod-etcd || true").strip() == "active":
            assert time.time() < deadline
            time.sleep(0.5)
        rc, _, err = stacked.run("remove-node", CP3, "--yes")
        assert rc == 1 and "refusing to remove" in err and "quorum" in err and CP1 in err, err
        assert sorted(members(CP1)) == [CP1, CP2, CP3]
        assert CP3 in backends()  # still behind the endpoint: nothing was touched
        assert sh(CP3, "ls /etc/kubernetes/manifests/etcd.yaml").strip()
    finally:
        sh(CP2, "mv /root/etcd.yaml /etc/kubernetes/manifests/etcd.yaml")
    wait_healthy(CP1, 3)


def test_an_unreachable_control_plane_leaves_etcd_through_a_healthy_one(stacked: Stacked) -> None:
    docker_out("stop", "-t", "1", CP3)
    rc, out, err = stacked.run("remove-node", CP3, "--yes")
    assert rc == 0, err[-3000:]
    assert sorted(members(CP1)) == [CP1, CP2]
    wait_healthy(CP2, 2)
    text = out + err
    assert "could not be reached" in text and "/etc/kubernetes/pki/etcd/" in text and "/var/lib/etcd" in text, text
    assert backends() == [CP1, CP2]
    st = state.load(stacked.state)
    assert CP3 not in st.members and CP3 in st.removed


def test_removing_a_control_plane_keeps_the_endpoint_answering(stacked: Stacked) -> None:
    codes: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            codes.append(readyz(stacked.endpoint()))
            time.sleep(0.3)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        rc, _, err = stacked.run("remove-node", CP2, "--yes")
    finally:
        stop.set()
        poller.join()
    assert rc == 0, err[-3000:]
    assert len(codes) > 10 and set(codes) == {200}, codes
    assert list(members(CP1)) == [CP1]  # kubeadm reset on CP2 took its own member out
    assert backends() == [CP1]
    assert sh(CP2, "find /var/lib/etcd /etc/kubernetes/manifests -mindepth 1 2>/dev/null || true").strip() == ""
    assert sh(CP2, "systemctl is-active static-pod-etcd || true").strip() != "active"
    rc, _, err = stacked.run("remove-node", CP1, "--yes")
    assert rc == 1 and "last control plane" in err, err

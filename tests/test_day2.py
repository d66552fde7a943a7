"""Day-2 verbs: drain, uncordon, remove-node, add-node, upgrade, reset.

On real nodes (a 1 control plane + 2 worker cluster brought up once for the module): real sshd, systemd, apt,
containerd, iptables/nftables and Ansible. kubeadm, kubectl, kubelet and the API server are the TEST DOUBLES of
tests/doubles/, which record every call; which hosts a verb contacted is read from each node's own sshd log,
after the cluster's persistent SSH connections are closed. The refusal rules are also tested without nodes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provision import day2, runner, spec, state, topology
from provision.errors import UserError
from tests.conftest import NODE_CONTAINERD, docker_out
from tests.doubles.artifacts import build as build_artifacts

NAME = "pt-d2"
CP1, W1, W2, W3 = f"{NAME}-cp1", f"{NAME}-w1", f"{NAME}-w2", f"{NAME}-w3"


# ---------------------------------------------------------------- rules, no nodes


def text_spec(workers: int = 2, cps: int = 1, extra: str = "") -> str:
    return (f"apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: {NAME}\ntopology: single-master\n"
            f"nodes: {{controlPlanes: {cps}, workers: {workers}}}\n{NODE_CONTAINERD}{extra}")


def test_upgrade_one_minor_at_a_time() -> None:
    assert day2.upgrade_target("1.36.6", "1.37") == "1.37.2"
    assert day2.upgrade_target("1.36.6", "1.36.7") == "1.36.7"
    for target, why in [("1.37.2", "one minor version at a time"), ("1.36.6", "not newer"),
                         ("1.36.1", "never downgrades"), ("1.38", "not supported"), ("latest", "not a Kubernetes")]:
        with pytest.raises(UserError, match=why):
            day2.upgrade_target("1.35.10" if why.startswith("one") else "1.36.6", target)


def test_refusals_without_touching_a_node() -> None:
    topo = topology.build(spec.load_text(text_spec(workers=1)))
    st = state.ClusterState(members=[n.name for n in topo.nodes], init_node=CP1)
    assert "last control plane" in (day2.removal_refusal(topo, st, CP1) or "")
    assert day2.removal_refusal(topo, st, W1) is None
    ha = topology.build(spec.load_text(
        "apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: q\ntopology: multi-master\n"
        "nodes: {controlPlanes: 2, workers: 0, etcd: 1, loadBalancers: 2}\n"))
    st = state.ClusterState(members=[n.name for n in ha.nodes], init_node="q-cp1")
    assert "last etcd member" in (day2.removal_refusal(ha, st, "q-etcd1") or "")
    assert day2.removal_refusal(ha, st, "q-cp1") is None  # q-cp2 stays


def test_day2_verbs_need_a_running_cluster(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text_spec())
    for verb in (["drain", W1], ["remove-node", W1, "--yes"], ["add-node"], ["upgrade", "--to", "1.37"]):
        proc = provision(*verb, "-f", str(path), "--state-dir", str(tmp_path / "state"))
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "run `provision up` first" in proc.stderr, proc.stderr
    proc = provision("reset", "-f", str(path), "--state-dir", str(tmp_path / "state"))
    assert proc.returncode == 1 and "pass --yes" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- on nodes


def provision(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False, timeout=1500, stdin=subprocess.DEVNULL)


def sh(node: str, command: str) -> str:
    return docker_out("exec", node, "sh", "-c", command)


def records(node: str, tool: str) -> list[dict[str, Any]]:
    proc = subprocess.run(["/usr/bin/docker", "exec", node, "cat", f"/var/log/provision-doubles/{tool}.jsonl"],
                          capture_output=True, text=True, check=False)
    return [json.loads(line) for line in proc.stdout.splitlines()]


@dataclass
class Live:
    path: Path
    state: Path
    artifacts: Path
    tmp: Path

    def run(self, *args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
        return provision(*args, "-f", str(path or self.path), "--state-dir", str(self.state))

    @staticmethod
    def why(proc: subprocess.CompletedProcess[str], tail: int = 3000) -> str:
        """A failed verb's stderr, and how the first control plane's API server double fared meanwhile (a CI run
        once found it gone: this says whether it crashed or the node restarted)."""
        node = subprocess.run(["/usr/bin/docker", "inspect", "-f", "restarts={{.RestartCount}} started={{.State.StartedAt}}",
                               CP1], capture_output=True, text=True, check=False).stdout.strip()
        unit = subprocess.run(["/usr/bin/docker", "exec", CP1, "journalctl", "-u", "fake-apiserver", "-n", "30",
                               "--no-pager", "-o", "short-precise"], capture_output=True, text=True, check=False)
        return f"{proc.stderr[-tail:]}\n--- {CP1}: {node}\n{unit.stdout[-3000:]}{unit.stderr[-500:]}"


def write_spec(tmp: Path, artifacts: Path, workers: int, version: str = "1.36", name: str = "c.yaml") -> Path:
    path = tmp / name
    path.write_text(text_spec(workers, extra=f"kubernetes: {{version: \"{version}\"}}\n"
                                             "dashboard: {type: none}\n"
                                             f"artifacts: {{mode: offline, dir: {artifacts}}}\n"))
    return path


@pytest.fixture(scope="module")
def live(need_nodes: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("day2")
    artifacts = build_artifacts(tmp / "artifacts-1.36", "1.36.6")
    c = Live(write_spec(tmp, artifacts, workers=2), tmp / "state", artifacts, tmp)
    try:
        up = c.run("up", "--skip", "cni", "--skip", "verify")
        assert up.returncode == 0, up.stderr[-3000:]
        yield c
    finally:
        c.run("destroy")
        big = c.tmp / "c3.yaml"
        if big.exists():
            c.run("destroy", path=big)  # the third worker is labelled with the same cluster: destroy finds it


def contacted(c: Live, nodes: list[str], action: Any) -> tuple[set[str], Any]:
    """Run `action` with no SSH connection open, and return the nodes whose sshd accepted a login meanwhile."""
    runner.close_connections(c.state)
    since = time.time() - 1
    time.sleep(1.1)
    result = action()
    seen = set()
    for node in nodes:
        proc = subprocess.run(["/usr/bin/docker", "exec", node, "journalctl", "-u", "ssh", "-o", "cat", "--since",
                               f"@{int(since)}"], capture_output=True, text=True, check=False)
        if "Accepted publickey" in proc.stdout:
            seen.add(node)
    return seen, result


def api_nodes(node: str = CP1) -> list[str]:
    out = sh(node, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json")
    return sorted(n["metadata"]["name"] for n in json.loads(out)["items"])


@pytest.mark.nodes
def test_last_control_plane_is_refused(live: Live) -> None:
    seen, proc = contacted(live, [CP1, W1, W2], lambda: live.run("remove-node", CP1, "--yes"))
    assert proc.returncode == 1 and "last control plane" in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert seen == set(), f"a refused removal contacted {seen}"
    unknown = live.run("drain", "nope")
    assert unknown.returncode == 2 and "is not a node of" in unknown.stderr


@pytest.mark.nodes
def test_drain_and_uncordon(live: Live) -> None:
    # the API server double comes back when it dies, as the kubelet restarts a static pod's container
    sh(CP1, "systemctl kill --signal=KILL fake-apiserver")
    sh(CP1, "for i in $(seq 60); do kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /livez >/dev/null 2>&1 "
            "&& exit 0; sleep 0.5; done; exit 1")
    before = len(records(CP1, "kubectl"))
    seen, proc = contacted(live, [CP1, W1, W2], lambda: live.run("drain", W1, "--timeout", "90s"))
    assert proc.returncode == 0, live.why(proc, 2000)
    assert seen == {CP1}, seen
    assert live.run("uncordon", W1).returncode == 0
    new = records(CP1, "kubectl")[before:]
    drains = [r for r in new if r.get("result") == "drain"]
    assert [r["argv"] for r in drains] == [["--kubeconfig=/etc/kubernetes/admin.conf", "drain", W1,
                                            "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s"]]
    assert [r["node"] for r in new if r.get("result") == "uncordon"] == [W1]


@pytest.mark.nodes
def test_remove_node_contacts_only_the_node_and_a_control_plane(live: Live) -> None:
    seen, proc = contacted(live, [CP1, W1, W2], lambda: live.run("remove-node", W2, "--yes"))
    assert proc.returncode == 0, live.why(proc, 3000)
    assert seen == {CP1, W2}, f"remove-node contacted {seen}"
    assert "still in the spec" in proc.stdout
    kubectl = [r for r in records(CP1, "kubectl") if r.get("node") == W2]
    assert [r["result"] for r in kubectl][-2:] == ["drain", "delete node"]
    assert [r["argv"][0] for r in records(W2, "kubeadm")][-1:] == ["reset"]
    assert sh(W2, "ls -A /etc/kubernetes /var/lib/kubelet /etc/cni/net.d").split() == \
        ["/etc/cni/net.d:", "/etc/kubernetes:", "/var/lib/kubelet:"]
    assert api_nodes() == [CP1, W1]
    st = state.load(live.state)
    assert W2 not in st.members and st.removed == [W2]
    hosts = (live.state / "inventory" / "hosts.yml").read_text()
    assert W2 not in hosts


@pytest.mark.nodes
def test_add_node_contacts_only_new_nodes_and_the_first_control_plane(live: Live) -> None:
    bigger = write_spec(live.tmp, live.artifacts, workers=3, name="c3.yaml")
    seen, proc = contacted(live, [CP1, W1, W2, W3], lambda: live.run("add-node", path=bigger))
    assert proc.returncode == 0, live.why(proc, 3000)
    assert seen == {CP1, W2, W3}, f"add-node contacted {seen}: existing worker {W1} must not be"
    assert api_nodes() == [CP1, W1, W2, W3]
    assert state.load(live.state).members == sorted([CP1, W1, W2, W3])
    again = live.run("add-node", path=bigger)
    assert again.returncode == 0 and "nothing to add" in again.stderr


@pytest.mark.nodes
def test_upgrade_control_plane_first_then_workers_one_at_a_time(live: Live) -> None:
    bigger = live.tmp / "c3.yaml"
    new = build_artifacts(live.tmp / "artifacts-1.37", "1.37.2")
    too_far = live.run("upgrade", "--to", "1.38", "--artifacts-dir", str(new), path=bigger)
    assert too_far.returncode == 1 and "not supported" in too_far.stderr
    no_dir = live.run("upgrade", "--to", "1.37", path=bigger)
    assert no_dir.returncode == 1 and "--artifacts-dir" in no_dir.stderr
    proc = live.run("upgrade", "--to", "1.37", "--artifacts-dir", str(new), path=bigger)
    assert proc.returncode == 0, live.why(proc, 3000)
    assert "set kubernetes.version" in proc.stdout
    workers = [W1, W2, W3]
    apply = [r for r in records(CP1, "kubeadm") if r["argv"][:2] == ["upgrade", "apply"] and "to" in r]
    assert [r["argv"][2] for r in apply] == ["v1.37.2"]
    node_calls = {w: [r for r in records(w, "kubeadm") if r["argv"][:2] == ["upgrade", "node"] and "to" in r]
                  for w in workers}
    assert all(len(v) == 1 for v in node_calls.values()), node_calls
    assert apply[0]["time"] < min(v[0]["time"] for v in node_calls.values()), "workers before the control plane"
    # one worker at a time: each worker's drain ... uncordon window does not overlap another's
    k = records(CP1, "kubectl")
    windows = []
    for w in workers:
        drains = [r["time"] for r in k if r.get("node") == w and r.get("result") == "drain"]
        uncordons = [r["time"] for r in k if r.get("node") == w and r.get("result") == "uncordon"]
        windows.append((drains[-1], uncordons[-1]))
    windows.sort()
    assert all(a[1] < b[0] for a, b in itertools.pairwise(windows)), windows
    for node in [CP1, *workers]:
        assert "v1.37.2 " in sh(node, "kubelet --version"), node
    assert state.load(live.state).kubernetes_version == "1.37.2"
    # the spec still says 1.36: up refuses instead of downgrading; a second upgrade has nothing to do
    up = live.run("up", "--skip", "cni", "--skip", "verify", path=bigger)
    assert up.returncode == 1 and "set kubernetes.version" in up.stderr, up.stderr
    again = live.run("upgrade", "--to", "1.37.2", "--artifacts-dir", str(new), path=bigger)
    assert again.returncode == 1 and "not newer" in again.stderr


def cert_rows(stdout: str) -> list[list[str]]:
    """`provision certs`' table: NODE CERTIFICATE EXPIRES(3 words) RESIDUAL SIGNED-BY."""
    return [line.split() for line in stdout.splitlines()[1:] if line.strip()]


def readyz_while(action: Any) -> tuple[Any, list[str]]:
    """Run `action` while a worker asks the API endpoint /readyz every 0.3 s; return its result and the answers."""
    answers: list[str] = []
    done = threading.Event()
    endpoint = f"https://{docker_out('exec', CP1, 'hostname', '-i').split()[0]}:6443/readyz"

    def poll() -> None:
        while not done.is_set():
            answers.append(sh(W1, f"curl -sk -o /dev/null -w '%{{http_code}}' --max-time 2 {endpoint} || true").strip())
            time.sleep(0.3)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        return action(), answers
    finally:
        done.set()
        thread.join()


@pytest.mark.nodes
def test_certs_lists_soonest_first_fails_under_the_threshold_and_renewal_keeps_the_cluster_answering(
        live: Live) -> None:
    spec_path = live.path  # certs contacts the control planes only: any of the module's specs will do
    seen, bad = contacted(live, [CP1, W1], lambda: live.run("certs", "--threshold", "soon", path=spec_path))
    assert bad.returncode == 2 and "is not a duration" in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert seen == set(), seen
    listed = live.run("certs", path=spec_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = cert_rows(listed.stdout)
    names = [r[1] for r in rows]
    assert {"apiserver", "apiserver-etcd-client", "etcd-server", "etcd-peer", "admin.conf", "scheduler.conf",
            "front-proxy-client", "ca", "etcd-ca", "front-proxy-ca"} <= set(names), names
    assert names.index("apiserver") < names.index("ca"), "a 1-year certificate after the 10-year CA"
    assert {r[0] for r in rows} == {CP1}  # kubeadm's certificates live on the control planes

    # the API server's certificate 10 days from its end, as after 355 days (re-signed with the cluster's CA)
    sh(CP1, "cd /etc/kubernetes/pki && openssl req -new -key apiserver.key -subj /CN=kube-apiserver -out /tmp/a.csr"
            " && openssl x509 -req -in /tmp/a.csr -CA ca.crt -CAkey ca.key -days 10 -out apiserver.crt")
    near = live.run("certs", path=spec_path)
    assert near.returncode == 1 and "expire within 30d, first apiserver on " + CP1 in near.stderr, near.stderr
    first = cert_rows(near.stdout)[0]
    assert first[1] == "apiserver" and re.fullmatch(r"(9|10)d", first[5]), first
    assert live.run("certs", "--threshold", "5d", path=spec_path).returncode == 0
    status = live.run("status", path=spec_path)
    assert status.returncode == 0 and f"warning: apiserver on {CP1} expires " in status.stderr, status.stderr

    kubeconfig_before = (live.state / "kubeconfig").read_text()
    refused = live.run("certs", "renew", path=spec_path)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    renewed, answers = readyz_while(lambda: live.run("certs", "renew", "--yes", path=spec_path))
    assert renewed.returncode == 0, renewed.stderr[-3000:]
    assert answers and set(answers) == {"200"}, answers  # the endpoint answered throughout
    assert [r["argv"] for r in records(CP1, "kubeadm") if r.get("result") == "renewed"] == [["certs", "renew", "all"]]
    assert sh(CP1, "ls /etc/kubernetes/manifests; test -e /etc/kubernetes/manifests.restarting || echo gone").split() \
        == ["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml", "gone"]
    after = live.run("certs", path=spec_path)
    assert after.returncode == 0, after.stderr
    apiserver = next(r for r in cert_rows(after.stdout) if r[1] == "apiserver")
    assert re.fullmatch(r"36[45]d", apiserver[5]), apiserver
    assert (live.state / "kubeconfig").read_text() != kubeconfig_before  # its client certificate was renewed
    assert oct((live.state / "kubeconfig").stat().st_mode & 0o777) == "0o600"


@pytest.mark.nodes
def test_reset_leaves_no_kubelet_cni_or_container_state(live: Live) -> None:
    bigger = live.tmp / "c3.yaml"
    nodes = [CP1, W1, W2, W3]
    for node in nodes:  # what real pods and kube-proxy would have left besides what the doubles wrote
        sh(node, "mkdir -p /etc/cni/net.d /var/lib/cni/networks/x /root/rootfs && "
                 "echo {} > /etc/cni/net.d/10-calico.conflist && touch /var/lib/cni/networks/x/10.244.1.2 && "
                 "iptables -N KUBE-SERVICES && iptables -A FORWARD -j KUBE-SERVICES && nft add table ip kube-proxy && "
                 "ctr -n k8s.io containers create --rootfs /root/rootfs pod-sandbox")
        # real links and a pod network namespace of the names the CNIs use (flannel-io/flannel#820: a cni0 with
        # the old pod subnet's address breaks the next cluster's network)
        sh(node, "ip link add cni0 type bridge && ip addr add 10.244.0.1/24 dev cni0 && "
                 "ip link add flannel.1 type vxlan id 1 dstport 8472 dev eth0 && "
                 "ip link add vxlan.calico type vxlan id 4096 dstport 4789 dev eth0 && "
                 "ip link add cilium_host type veth peer name cilium_net && ip link add weave type bridge && "
                 "ip netns add cni-0b1c2d3e-reset-test && "
                 "ip link add keep0 type bridge")  # not the CNIs': must stay
    refused = live.run("reset", path=bigger)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    proc = live.run("reset", "--yes", path=bigger)
    assert proc.returncode == 0, live.why(proc, 3000)
    for node in nodes:
        left = sh(node, "ls -A /etc/kubernetes /var/lib/kubelet /etc/cni/net.d /var/lib/cni 2>&1; "
                        "systemctl is-active kubelet; ctr -n k8s.io containers ls -q; "
                        "iptables-save | grep -c KUBE- ; nft list tables | grep -c kube-proxy; "
                        "ip -o link show | grep -c -E ' (cni0|flannel.1|vxlan.calico|cilium_|weave)'; "
                        "ip netns list | grep -c cni-; ip -o link show keep0 | grep -c keep0; "
                        "ip link del keep0; true").split()
        assert left == ["/etc/cni/net.d:", "/etc/kubernetes:", "/var/lib/cni:", "/var/lib/kubelet:", "inactive",
                        "0", "0", "0", "0", "1"], f"{node}: {left}"  # ls lists the (empty) directories sorted
    st = state.load(live.state)
    assert st.members == [] and st.init_node is None and not (live.state / "kubeconfig").exists()
    assert re.search(r"reset \d node", proc.stderr)

"""`provision logs` on real nodes: every node's journals, state and configuration in one archive, no secret in it.

The nodes are the shared cluster's (machines, SSH and preflight): each kind of secret is planted where the
collection reads (a static pod manifest, keepalived's configuration, a kubelet journal), and none may survive.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from provision import logs
from provision.cli import main
from tests.conftest import LiveCluster, docker_out

pytestmark = pytest.mark.nodes

PRIVATE_KEY_BODY = "MC4CAQAwBQYDK2VwBCIEIPlantedPrivateKeyBodyForTheLogsTest0123456789"
SECRETS = {
    "bootstrap token": "plant7.0123456789plant0",
    "certificate key": "c0ffee" * 10 + "c0ff",
    "private key": PRIVATE_KEY_BODY,
    "kubeconfig key data": "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCnBsYW50ZWQ=",
    "kubeconfig token": "planted-kubeconfig-token-value",
    "bearer token": "eyJhbGciOiJSUzI1NiJ9.plantedbearer.signature",
    "keepalived password": "vrrpPlantedPw",
    "registry credentials": "cGxhbnRlZDpyZWdpc3RyeQ==",
    "ctr user": "planted:ctrpassword",
}

MANIFEST = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: kube-apiserver, namespace: kube-system}}
spec:
  containers:
  - command: [kube-apiserver, --token-auth-file=/x, --certificate-key={SECRETS['certificate key']}]
    env: [{{name: JOIN, value: "kubeadm join --token {SECRETS['bootstrap token']}"}}]
# -----BEGIN PRIVATE KEY-----
# {PRIVATE_KEY_BODY}
# -----END PRIVATE KEY-----
"""
KUBECONFIG_LINES = (f"client-key-data: {SECRETS['kubeconfig key data']}\n    token: {SECRETS['kubeconfig token']}\n"
                    f"Authorization: Bearer {SECRETS['bearer token']}")


def test_redact_takes_out_each_kind_of_secret() -> None:
    text = (MANIFEST + KUBECONFIG_LINES + f"\n    auth_pass {SECRETS['keepalived password']}\n"
            f"        auth = \"{SECRETS['registry credentials']}\"\n"
            f"ctr images pull --hosts-dir /etc/containerd/certs.d --user {SECRETS['ctr user']} pause\n")
    out = logs.redact(text)
    for kind, value in SECRETS.items():
        assert value not in out, kind
    kept = "sha256:" + "ab" * 32  # image digests and container IDs stay readable
    assert logs.redact(f"image {kept} id {'0f' * 32}") == f"image {kept} id {'0f' * 32}"


def plant(node: str) -> None:
    """Secrets where `logs` reads: a manifest, keepalived's configuration and a kubelet unit's journal (the unit
    runs until unplant stops it: `logs` collects a journal only of a unit systemd still knows)."""
    docker_out("exec", node, "sh", "-c", f"""mkdir -p /etc/kubernetes/manifests /etc/keepalived
cat > /etc/kubernetes/manifests/kube-apiserver.yaml <<'X'
{MANIFEST}X
printf 'vrrp_instance VI_1 {{\\n  authentication {{\\n    auth_pass {SECRETS['keepalived password']}\\n  }}\\n}}\\n' \
  > /etc/keepalived/keepalived.conf
systemd-run --unit=kubelet --quiet sh -c 'printf "%s\\n" "{KUBECONFIG_LINES}"; sleep 600' """)


def unplant(node: str) -> None:
    docker_out("exec", node, "sh", "-c", "rm -rf /etc/kubernetes /etc/keepalived; systemctl stop kubelet 2>/dev/null;"
               " systemctl reset-failed kubelet 2>/dev/null; true")


def test_logs_of_every_node_with_no_secret(shared_cluster: LiveCluster, tmp_path: Path) -> None:
    cp, w1, w2 = (n.name for n in shared_cluster.topo.nodes)
    plant(cp)
    try:
        out = tmp_path / "logs.tar.gz"
        assert main(["logs", "-f", str(shared_cluster.spec_path), "--state-dir", str(shared_cluster.state_dir),
                     "-o", str(out)]) == 0
    finally:
        unplant(cp)
    assert out.stat().st_mode & 0o777 == 0o600
    with tarfile.open(out) as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    everything = b"\n".join(files.values())
    for kind, value in SECRETS.items():
        assert value.encode() not in everything, f"the {kind} survived"
    for node in (cp, w1, w2):
        assert b"sshd" in files[f"{node}/journal/ssh.log"]
        assert b"inet " in files[f"{node}/commands/ip-addr.txt"]
        assert f"{node}/files/etc/hosts" in files
    assert b"<redacted" in files[f"{cp}/files/etc/kubernetes/manifests/kube-apiserver.yaml"]
    assert b"auth_pass <redacted>" in files[f"{cp}/files/etc/keepalived/keepalived.conf"]
    assert f"{cp}/journal/kubelet.log" in files
    summary = files["summary.txt"].decode()
    assert f"from: {cp}, {w1}, {w2}" in summary and "NOT collected" not in summary
    assert "spec.yaml" in files and "state.json" in files and any(n.startswith("ansible/") for n in files)
    leftovers = docker_out("exec", cp, "sh", "-c", "ls /tmp | grep provision-logs || true")
    assert leftovers.strip() == ""
    assert not list((shared_cluster.state_dir / "logs").glob(".raw-*"))


def test_logs_of_named_nodes_and_an_unknown_one(shared_cluster: LiveCluster, tmp_path: Path) -> None:
    cp = shared_cluster.topo.nodes[0].name
    out = tmp_path / "one.tar.gz"
    args = ["logs", "-f", str(shared_cluster.spec_path), "--state-dir", str(shared_cluster.state_dir), "-o", str(out)]
    proc = subprocess.run(["python3", "-m", "provision", *args, "nosuchnode"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unknown node nosuchnode" in errors[0] and cp in errors[0]
    assert not out.exists()
    assert main([*args, cp]) == 0
    with tarfile.open(out) as tar:
        nodes = {m.name.split("/")[1] for m in tar.getmembers() if m.name.count("/") >= 2}
    assert nodes == {cp, "ansible"} or nodes == {cp}

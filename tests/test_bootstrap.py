"""`provision up` end to end for every topology sample, on real systemd nodes (ha-stacked: tests/test_stacked_etcd.py).

Real: the machines, sshd, apt, the OS prep, containerd, etcd, haproxy and keepalived, Ansible. kubeadm, kubelet,
kubectl and the API server are the TEST DOUBLES of tests/doubles/ (no real binaries can be had here), installed
through the offline artifacts path like real ones. The tests check the contract the doubles record: the order
(init before joins, control planes one at a time, workers in parallel), the exact arguments, every config against
the v1beta4 schema, no secret in any output or log, and that a second `up` runs no init or join.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from provision import spec, topology
from tests.conftest import NODE_CONTAINERD, docker_out
from tests.doubles.artifacts import build as build_artifacts

pytestmark = pytest.mark.nodes
SPREAD = True  # each sample makes its own cluster: pytest-xdist may run them on different workers (conftest.py)
ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "tests" / "doubles" / "kubeadm-v1beta4.schema.json").read_text())
# ha-stacked runs in tests/test_stacked_etcd.py: the same checks, then day-2 work on its etcd, on one cluster
SAMPLES = ["ha", "multi-master", "single-master", "all-in-one"]  # the longest first (tests/conftest.py: FIRST)
INIT_ARGV = ["init", "--config", "/etc/kubernetes/kubeadm-config.yaml", "--upload-certs"]
JOIN_ARGV = ["join", "--config", "/etc/kubernetes/kubeadm-join.yaml"]
UPLOAD_ARGV = ["init", "phase", "upload-certs", "--upload-certs", "--config", "/etc/kubernetes/kubeadm-config.yaml"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The doubles' artifacts, twice: plain/, and with-etcd/ that adds kubeadm's etcd image (for stacked etcd)."""
    root = tmp_path_factory.mktemp("artifacts")
    build_artifacts(root / "with-etcd", "1.37.2", etcd_image=True)
    build_artifacts(root / "plain", "1.37.2")
    return root


# The samples' workers join in parallel: the single-master sample keeps its two to show it (check_contract); the
# bigger ones run with one, each node costing the whole suite's time on a 2-core machine (the CI's budget)
ONE_WORKER = ("ha", "multi-master", "ha-stacked")
# The single-master sample runs with haproxy on every node's loopback (no sample has it): the survey's judgement of
# haproxy is checked on real nodes (check_survey_skips_and_mends)
LOCAL_PROXY = ("single-master",)


def sample_spec(name: str, tmp: Path, artifacts: Path) -> Path:
    """The inventories/ sample, offline from `artifacts` (a stacked etcd sample takes the copy with kubeadm's etcd
    image, so its control planes run a real etcd), with Debian's etcd and containerd (and one worker: ONE_WORKER)."""
    text = (ROOT / "inventories" / f"{name}.yaml").read_text()
    if name in ONE_WORKER:
        text, n = re.subn(r"(?m)^  workers: 2$", "  workers: 1", text)
        assert n == 1, f"inventories/{name}.yaml: no `workers: 2` to reduce"
    artifacts = artifacts / ("with-etcd" if "mode: stacked" in text else "plain")
    text = re.sub(r"(?ms)^artifacts:\n(  .*\n|  #.*\n)*", "", text)
    text = text.replace("source: release ", "source: distro  ")  # no GitHub here: Debian's etcd
    text = re.sub(r"(?m)^(  mode: stacked.*)$", r"\1\n  source: distro", text)  # its etcdctl, for day-2 work
    text = re.sub(r"(?m)^containerRuntime:\n(  .*\n)*", "", text)
    text += NODE_CONTAINERD + f"artifacts:\n  mode: offline\n  dir: {artifacts}\n"
    if name in LOCAL_PROXY:
        assert not re.search(r"(?m)^endpoint:", text), f"inventories/{name}.yaml sets an endpoint already"
        text += "endpoint:\n  type: local-proxy\n"
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return path


def provision(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False, timeout=1500)


def records(node: str, tool: str = "kubeadm") -> list[dict[str, Any]]:
    proc = subprocess.run(["/usr/bin/docker", "exec", node, "cat", f"/var/log/provision-doubles/{tool}.jsonl"],
                          capture_output=True, text=True, check=False)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def unredacted(doc: Any) -> Any:
    """The double masks secrets after checking their format; put format-valid placeholders back for the schema."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if v == "<redacted>":
                v = "abcdef.0123456789abcdef" if k == "token" else "0" * 64
            out[k] = unredacted(v)
        return out
    if isinstance(doc, list):
        return [unredacted(v) for v in doc]
    return doc


def check_contract(topo: topology.Topology) -> dict[str, list[dict[str, Any]]]:
    g = topo.groups
    first = g["first_control_plane"][0]
    by_node = {n: records(n) for n in g["k8s_cluster"]}
    done = {n: [r for r in recs if r.get("result") in ("initialized", "joined")] for n, recs in by_node.items()}

    inits = [r for recs in done.values() for r in recs if r["result"] == "initialized"]
    assert len(inits) == 1 and inits[0]["host"] == first
    assert inits[0]["argv"] == INIT_ARGV
    joins = {n: recs[0] for n, recs in done.items() if n != first}
    assert set(joins) == set(g["k8s_cluster"]) - {first}, "every other node joined exactly once"
    for n, r in joins.items():
        assert r["argv"] == JOIN_ARGV
        assert r["controlPlane"] == (n in g["control_plane"])
        assert r["time"] > inits[0]["time"], f"{n} joined before init"

    cps = sorted((joins[n]["time"], joins[n]["end"]) for n in g["control_plane"] if n != first)
    for (_, end), (start, _) in itertools.pairwise(cps):
        assert start >= end, "control planes joined at the same time"
    workers = [joins[n] for n in g["workers"] if n not in g["control_plane"]]
    if len(workers) >= 2:
        assert max(w["time"] for w in workers) < min(w["end"] for w in workers), "workers joined one by one"

    cp_calls = by_node[first]
    if len(g["control_plane"]) > 1:
        uploads = [r for r in cp_calls if r["argv"][:3] == ["init", "phase", "upload-certs"]
                   and r.get("result") == "certs uploaded"]
        assert uploads and all(u["argv"] == UPLOAD_ARGV for u in uploads)
    tokens = [r for r in cp_calls if r["argv"][:2] == ["token", "create"] and r.get("result") == "token created"]
    assert bool(tokens) == bool(joins), "a bootstrap token is made when, and only when, nodes join"
    assert all(t["ttl"] == "2h0m0s" for t in tokens)

    for recs in by_node.values():
        for r in recs:
            for doc in r.get("config_docs", []):
                jsonschema.validate(unredacted(doc), SCHEMA)
    init_docs = {d["kind"]: d for d in next(r for r in cp_calls if r.get("config_docs"))["config_docs"]}
    cluster = init_docs["ClusterConfiguration"]
    s = topo.cluster.spec
    assert cluster["networking"]["podSubnet"] == s.networking.pod_cidr
    assert cluster["kubernetesVersion"] == "v" + topo.cluster.kubernetes_version
    if s.endpoint.type != "none":
        assert cluster["controlPlaneEndpoint"] == f"{topo.endpoint_host}:{topo.endpoint_port}"
    if s.etcd.mode == "external":
        want = [f"https://{topo.node(n).address}:2379" for n in g["external_etcd"]]
        assert cluster["etcd"]["external"]["endpoints"] == want
    else:
        assert "local" in cluster["etcd"]
    assert init_docs["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    # safe defaults, as kubeadm read them: the API server keeps kubeadm's anonymous access to its health endpoints
    # (its probes and the load balancers' checks are anonymous: the fake API server answers 401 without it), no
    # anonymous kubelet access, the kubelet asks the API server who may do what, and external etcd is reached over
    # TLS with a client certificate
    assert not any(a["name"] in ("anonymous-auth", "authentication-config")
                   for a in cluster["apiServer"]["extraArgs"])
    kubelet = init_docs["KubeletConfiguration"]
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"
    # docker nodes see the host's disk: no image GC or eviction from the host's usage (as kind's nodes)
    assert kubelet["imageGCHighThresholdPercent"] == 100
    assert kubelet["evictionHard"] == {"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"}
    if s.etcd.mode == "external":
        ext = cluster["etcd"]["external"]
        assert all(e.startswith("https://") for e in ext["endpoints"])
        assert ext["caFile"] and ext["certFile"] and ext["keyFile"]
    return by_node


def secrets_of(topo: topology.Topology, state: Path) -> list[str]:
    first = topo.groups["first_control_plane"][0]
    tokens = docker_out("exec", first, "cat", "/var/lib/provision-doubles/tokens")
    found = [json.loads(line)["token"] for line in tokens.splitlines() if line.strip()]
    found.append((state / "secrets" / "kubeadm-certificate-key").read_text().strip())
    # private keys: the cluster's SSH key, the external etcd PKI made on this machine, the cluster CA's key on
    # the first control plane (a long base64 line of each body stands for the whole key)
    keys = [state / "ssh" / "id_ed25519", *sorted((state / "pki").rglob("*.key"))]
    for key in keys:
        assert oct(key.stat().st_mode & 0o777) == "0o600", f"{key} is not 0600"
    bodies = [k.read_text() for k in keys] + [docker_out("exec", first, "cat", "/etc/kubernetes/pki/ca.key")]
    for body in bodies:
        lines = [line for line in body.splitlines() if line and not line.startswith("-----")]
        assert lines, "a private key without a body"
        found.append(max(lines, key=len))
    assert all(found)
    return found


def scan_for_secrets(secrets: list[str], outputs: list[str], state: Path, topo: topology.Topology) -> None:
    for text in outputs:
        for secret in secrets:
            assert secret not in text, "a secret reached the console"
    for path in state.rglob("*"):
        if path.is_file() and path.stat().st_mode & 0o077:
            text = path.read_text(errors="replace")
            for secret in secrets:
                assert secret not in text, f"a secret is in {path} (mode {oct(path.stat().st_mode & 0o777)})"
    for node in topo.groups["k8s_cluster"]:
        logs = docker_out("exec", node, "sh", "-c", "cat /var/log/provision-doubles/*.jsonl; journalctl -q "
                                                    "--no-pager -o cat 2>/dev/null | tail -n 2000")
        for secret in secrets:
            assert secret not in logs, f"a secret is in a log on {node}"


def check_anonymous_access(node: str) -> None:
    """What an unauthenticated client gets from the API server (the kubelet's probes, kubeadm's control-plane
    check, haproxy's health check): the health endpoints answer, everything else is forbidden."""
    def code(path: str) -> str:
        return docker_out("exec", node, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                          f"https://127.0.0.1:6443{path}").strip()
    assert [code(p) for p in ("/livez", "/readyz", "/healthz")] == ["200"] * 3
    assert code("/api/v1/nodes") == "403"


def check_external_etcd_rotation(path: Path, env: dict[str, str], topo: topology.Topology, state: Path) -> None:
    """`certs renew` rotates external etcd's member certificates one member at a time: a client asking for
    linearizable reads (which need a quorum) through every member's endpoint gets an answer all along; afterwards
    every member has new certificates from the same CA and the control planes the new client certificate."""
    members = topo.groups["external_etcd"]
    endpoints = ",".join(f"https://{topo.node(m).address}:2379" for m in members)

    def serials() -> dict[str, str]:
        return {f"{m}/{kind}": docker_out("exec", m, "openssl", "x509", "-noout", "-serial", "-in",
                                          f"/etc/etcd/pki/{kind}.crt").strip()
                for m in members for kind in ("server", "peer")}

    before = serials()
    # the reader keeps a copy of the member's certificate: the rotation rewrites the one etcdctl-tls reads
    docker_out("exec", members[0], "sh", "-c", "cp /etc/etcd/pki/server.crt /root/reader.crt && "
                                                "cp /etc/etcd/pki/server.key /root/reader.key")
    log = state.parent / "certs-renew.log"  # a file, not a pipe: nothing reads it while the renewal runs
    with log.open("w") as sink:
        renew = subprocess.Popen([sys.executable, "-m", "provision", "certs", "renew", "-f", str(path), "--yes"],
                                 stdout=sink, stderr=sink, env={**os.environ, **env})
    reads = []
    while renew.poll() is None:
        reads.append(subprocess.run(["/usr/bin/docker", "exec", "-e", "ETCDCTL_API=3", members[0], "etcdctl",
                                     f"--endpoints={endpoints}", "--cacert=/etc/etcd/pki/ca.crt",
                                     "--cert=/root/reader.crt", "--key=/root/reader.key", "--command-timeout=3s",
                                     "get", "/provision-test", "--consistency=l"],
                                    capture_output=True, text=True, check=False).returncode)
        time.sleep(0.25)  # a member's restart keeps it down for seconds: this still reads within every outage
    assert renew.returncode == 0, log.read_text()[-3000:]
    assert len(reads) > 10 and set(reads) == {0}, reads  # quorum all along
    after = serials()
    assert all(after[k] != before[k] for k in before), (before, after)
    ca = state / "pki" / "etcd" / "ca.crt"
    for m in members:
        assert docker_out("exec", m, "cat", "/etc/etcd/pki/ca.crt") == ca.read_text()
    client = (state / "pki" / "etcd" / "apiserver-etcd-client.crt").read_text()
    for plane in topo.groups["control_plane"]:
        assert docker_out("exec", plane, "cat", "/etc/kubernetes/pki/apiserver-etcd-client.crt") == client
    health = docker_out("exec", members[0], "sh", "-c", "etcdctl-tls endpoint health --cluster 2>&1")
    assert health.count("is healthy") == len(members), health


def check_stacked_etcd(topo: topology.Topology) -> None:
    """Stacked etcd is real here (kubeadm's etcd image in the artifacts): one member per control plane, each under
    its node's name and peer URL, all healthy."""
    etcdctl = ("/usr/local/lib/provision-doubles/etcd-image/etcdctl --cacert=/etc/kubernetes/pki/etcd/ca.crt "
               "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
               "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key --endpoints=https://127.0.0.1:2379")
    first = topo.groups["first_control_plane"][0]
    listed = json.loads(docker_out("exec", first, "sh", "-c", f"{etcdctl} member list -w json"))["members"]
    assert {m["name"]: m["peerURLs"] for m in listed} == {
        n: [f"https://{topo.node(n).address}:2380"] for n in topo.groups["control_plane"]}
    health = docker_out("exec", first, "sh", "-c", f"{etcdctl} endpoint health --cluster 2>&1")
    assert health.count("is healthy") == len(topo.groups["control_plane"]), health


def check_external_etcd_certificates(path: Path, env: dict[str, str], topo: topology.Topology) -> None:
    """`provision certs` with external etcd: kubeadm manages no etcd certificate (kubeadm's renewal manager skips
    them), the members' CA, server and peer certificates are read on each member."""
    listed = provision("certs", "-f", str(path), env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [line.split() for line in listed.stdout.splitlines()[1:] if line.strip()]
    for member in topo.groups["external_etcd"]:
        assert {r[1] for r in rows if r[0] == member} == {"etcd/ca.crt", "etcd/peer.crt", "etcd/server.crt"}
    for plane in topo.groups["control_plane"]:
        names = {r[1] for r in rows if r[0] == plane}
        assert "apiserver" in names and not names & {"etcd-server", "etcd-ca", "apiserver-etcd-client"}, names


def check_init_mends_what_differs(path: Path, env: dict[str, str], topo: topology.Topology, state: Path) -> None:
    """kubeadm_init's re-run is one probe and a skipped include where everything matches: a kubeadm configuration
    changed on the node, then a kubeconfig copy opened up on the control node, are each found and mended, and
    init does not run again."""
    first = topo.groups["first_control_plane"][0]
    config = "/etc/kubernetes/kubeadm-config.yaml"
    written = docker_out("exec", first, "sha256sum", config).split()[0]
    kubeconfig = state / "kubeconfig"
    before = len(records(first))
    for breakage in ("config", "kubeconfig"):
        if breakage == "config":
            docker_out("exec", first, "sh", "-c", f"echo '# edited' >> {config}")
        else:
            kubeconfig.chmod(0o644)
        again = provision("up", "-f", str(path), "--skip", "verify", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        init_row = [line for line in again.stdout.splitlines() if line.startswith("kubeadm init")]
        assert re.search(r"ok, [1-9]\d* change", "".join(init_row)), (breakage, init_row)
        assert docker_out("exec", first, "sha256sum", config).split()[0] == written, breakage
        assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600", breakage
    assert not [r for r in records(first)[before:] if r["argv"][:1] == ["init"]], "init re-ran"


def last_run_tasks(state: Path) -> dict[str, set[str]]:
    """The hosts each play of the newest Ansible run ran a task on (its job events; a skipped task counts)."""
    runs = sorted((state / "runner" / "artifacts").iterdir(), key=lambda d: d.stat().st_mtime)
    hosts: dict[str, set[str]] = {}
    for path in (runs[-1] / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event.get("event") in ("runner_on_ok", "runner_on_skipped", "runner_on_failed") and data.get("host"):
            hosts.setdefault(data.get("play", ""), set()).add(data["host"])
    return hosts


# One thing each judged step puts on a node, broken (command) and how to read it back (command)
DRIFT = {
    "os": ("echo 'net.ipv4.ip_forward = 0' >> /etc/sysctl.d/99-kubernetes.conf",
           "sha256sum /etc/sysctl.d/99-kubernetes.conf"),
    "haproxy": ("echo '# drift' >> /etc/haproxy/haproxy.cfg", "sha256sum /etc/haproxy/haproxy.cfg"),
    "containerd": ("echo '# drift' >> /etc/containerd/config.toml", "sha256sum /etc/containerd/config.toml"),
    "kubernetes": ("chmod 0700 /usr/bin/kubeadm", "stat -c %a /usr/bin/kubeadm"),
}
JUDGED_PLAYS = ["Prepare the OS", "API endpoint on every node's loopback (local haproxy)", "Container runtime",
                "Kubernetes packages"]


def check_survey_skips_and_mends(path: Path, env: dict[str, str], topo: topology.Topology, state: Path) -> None:
    """After a re-run that changed nothing, no node took part in a step the survey judges (it found every role's
    state as wanted on every node). Then, in two rounds, one thing broken per node, each of a different step: the
    re-run mends each, and only the broken nodes take part. A node is left out only where every role finds nothing
    to do, so each role's judgement is checked alone: on a node where it alone is broken."""
    ran = last_run_tasks(state)
    assert not {play: hosts for play, hosts in ran.items() if play in JUDGED_PLAYS}, ran
    w1, w2 = topo.groups["workers"][:2]
    first = topo.groups["first_control_plane"][0]
    for round_ in ({w1: "os", first: "haproxy", w2: "containerd"}, {w1: "kubernetes"}):
        before = {node: docker_out("exec", node, "sh", "-c", DRIFT[what][1]) for node, what in round_.items()}
        for node, what in round_.items():
            docker_out("exec", node, "sh", "-c", DRIFT[what][0])
        again = provision("up", "-f", str(path), "--skip", "verify", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        ran = last_run_tasks(state)
        assert {play: ran.get(play) for play in JUDGED_PLAYS} == {play: set(round_) for play in JUDGED_PLAYS}, ran
        after = {node: docker_out("exec", node, "sh", "-c", DRIFT[what][1]) for node, what in round_.items()}
        assert after == before, round_


@pytest.mark.parametrize("sample", SAMPLES)
def test_up_end_to_end(sample: str, need_nodes: None, artifacts: Path, tmp_path: Path) -> None:
    path = sample_spec(sample, tmp_path, artifacts)
    cluster = spec.load_spec(path)
    topo = topology.build(cluster)
    env = {"PROVISION_STATE_DIR": str(tmp_path / "state")}
    state = tmp_path / "state" / cluster.name
    try:
        # verify needs a real API server and kubelets: with the doubles it has nothing to ask (tests/test_verify.py)
        up = provision("up", "-f", str(path), "--skip", "verify", env=env)
        assert up.returncode == 0, up.stderr[-3000:]
        assert "kubeadm init" in up.stderr and f"cluster {cluster.name} up in" in up.stdout
        check_contract(topo)
        check_anonymous_access(topo.groups["control_plane"][0])
        kubeconfig = state / "kubeconfig"
        assert kubeconfig.exists() and oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
        outputs = [up.stdout, up.stderr]
        # every topology: a second up runs no init or join and changes nothing (from Ansible's own stats)
        before = {n: len(records(n)) for n in topo.groups["k8s_cluster"]}
        again = provision("up", "-f", str(path), "--skip", "verify", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        outputs += [again.stdout, again.stderr]
        for n in topo.groups["k8s_cluster"]:
            new = records(n)[before[n]:]
            assert not [r for r in new if r["argv"][:1] in (["init"], ["join"])], f"{n}: init/join re-ran"
        changed = re.findall(r"ok, (\d+) change", again.stdout)
        assert changed and all(c == "0" for c in changed), again.stdout
        scan_for_secrets(secrets_of(topo, state), outputs, state, topo)
        if sample == "all-in-one":
            check_init_mends_what_differs(path, env, topo, state)
        if sample in LOCAL_PROXY:
            check_survey_skips_and_mends(path, env, topo, state)
        if topo.groups["external_etcd"]:
            check_external_etcd_certificates(path, env, topo)
            if len(topo.groups["external_etcd"]) > 1:
                check_external_etcd_rotation(path, env, topo, state)
        else:
            check_stacked_etcd(topo)
    finally:
        provision("destroy", "-f", str(path), env=env)

"""The node side of a cluster, proven for real: containerd driven through its CRI as the kubelet drives it.

Two real systemd nodes per containerd line (1.7 from Debian trixie, 2.1 from sid), prepared by `provision up` up
to the `kubernetes` step through the offline artifacts path users get: real containerd (config version 2 and 3),
runc and CNI plugins, the roles' own configuration. Only kubeadm, kubelet and kubectl are the doubles (they are
installed but play no part here). The CNI configuration is written the way an add-on writes it: a bridge with
host-local addresses from each node's pod range, and host-gw routes between the nodes (flannel's host-gw).
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from provision import day2, lifecycle, spec, topology, versions
from provision import images as cluster_images
from provision.cli import main as cli_main
from provision.errors import UserError
from tests import registry
from tests.cri import artifacts, images
from tests.cri.client import Cri, Pod, pod_slice, resolv_conf_dns

pytestmark = pytest.mark.nodes

KUBERNETES = "1.35"  # containerd 2.1.9 meets this minor's floor (2.1.5+); 1.7.24 is below 1.7.28
STEPS = ["machines", "ssh", "preflight", "os", "containerd", "kubernetes"]
# One line runs `up` as far as the doubles allow (kubeadm, kubectl and the API server are doubles): the steps after
# the node side are the same for both lines, so the other stops at kubernetes (about a minute less).
FULL_UP_LINE = "2.1"
ADDON_STEPS = ["init", "join-workers", "cni", "dashboard"]
BUSYBOX = images.BUSYBOX_IMAGE


@dataclass
class Lane:
    line: str
    containerd: str
    cluster: spec.Cluster
    topo: topology.Topology
    state_dir: Path
    a: Cri
    b: Cri
    web: Pod
    web_container: str
    client: Pod
    client_container: str
    mirror: registry.Upstream


def cni_config(subnet: str) -> str:
    return json.dumps({"cniVersion": "1.0.0", "name": "cri-test", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]})


def network_ready(cri: Cri) -> bool:
    status = cri.runtime.Status(cri.pb.StatusRequest(), timeout=10).status
    return any(c.type == "NetworkReady" and c.status for c in status.conditions)


def add_pod_network(lane_nodes: list[tuple[Cri, str, str]]) -> None:
    """Each node's pod range on a bridge, and a route to every other node's range through that node."""
    for cri, subnet, _ in lane_nodes:
        cri.sh(f"mkdir -p /etc/cni/net.d && echo '{cni_config(subnet)}' > /etc/cni/net.d/10-cri-test.conflist")
        for _, other, address in lane_nodes:
            if other != subnet:
                cri.sh(f"ip route replace {other} via {address}")
    for cri, _, _ in lane_nodes:
        deadline = time.monotonic() + 60
        while not network_ready(cri):
            assert time.monotonic() < deadline, f"{cri.node}: containerd never saw the CNI configuration"
            time.sleep(1)


@pytest.fixture(scope="module", params=["2.1", "1.7"])
def lane(request: pytest.FixtureRequest, need_nodes: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    why = registry.available()
    if why:
        pytest.fail(why)
    stack = ExitStack()
    line = request.param
    tmp = tmp_path_factory.mktemp(f"cri{line}")
    containerd = artifacts.build(tmp / "artifacts", KUBERNETES, line)
    unsupported = ", allowUnsupportedVersion: true" if line == "1.7" else ""
    name = f"pt-cri{line.replace('.', '')}"
    path = tmp / "cluster.yaml"
    text = (f"apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: {name}\ntopology: single-master\n"
            f"kubernetes: {{version: \"{KUBERNETES}\"}}\nnodes: {{controlPlanes: 1, workers: 1}}\n"
            f"containerRuntime: {{version: {containerd}{unsupported}}}\n")
    # the site's mirror, on this machine's address in the nodes' network, TLS from the site's own CA
    gateway = topology.build(spec.load_text(text)).gateway
    ca = registry.make_ca(tmp, "site-ca")
    port = registry.free_port()
    login = ("site", secrets.token_hex(8))  # the mirror wants credentials: the nodes get them from the auth file
    auth = registry.write_auth_file(tmp / "mirror-auth.json", f"{gateway}:{port}", login)
    path.write_text(text + f"artifacts: {{mode: offline, dir: {tmp / 'artifacts'}, registry: '{gateway}:{port}', "
                           f"caFile: {ca}, authFile: {auth}}}\n")
    cluster = spec.load_spec(path)
    state_dir = tmp / "state"
    try:
        lifecycle.up(cluster, state_dir, lambda _: None, only=STEPS[:1])  # the machines: then their network exists
        mirror = stack.enter_context(registry.upstream(tmp / "mirror", ip=str(gateway), ca=ca, port=port, user=login))
        if line == "2.1":  # an empty mirror stops the kubernetes step before kubeadm, naming the image
            with pytest.raises(UserError) as err:
                lifecycle.up(cluster, state_dir, lambda _: None, only=STEPS[1:])
            first = cluster_images.kubeadm_images(cluster.kubernetes_version)[0].ref
            assert f"cannot pull {first} through the registry mirror {gateway}:{port}: " in str(err.value)
        for image in cluster_images.kubeadm_images(cluster.kubernetes_version):
            if image.ref != versions.pause_image(KUBERNETES):
                mirror.push(image.ref)  # small stand-ins under kubeadm's names: only the doubles "run" them
        assert cli_main(["artifacts", "push", "-f", str(path)]) == 0  # our pause and busybox images
        steps = STEPS[1:] + (ADDON_STEPS if line == FULL_UP_LINE else [])
        report = lifecycle.up(cluster, state_dir, lambda _: None, only=steps)
        assert all(r.ok for r in report.runs), [f.line() for r in report.runs for f in r.failures]
        topo = topology.build(cluster)
        a, b = (Cri(n.name) for n in topo.nodes)
        pods = ipaddress.ip_network(cluster.spec.networking.pod_cidr).subnets(new_prefix=24)
        next(pods)
        add_pod_network([(cri, str(next(pods)), node.address) for cri, node in zip((a, b), topo.nodes)])
        web = b.run_pod("web")
        web_container = b.start(web, "httpd", BUSYBOX, ["sh", "-c", ("hostname > /tmp/index.html && "
                                                          "exec httpd -f -p 8080 -h /tmp")])
        client = a.run_pod("client")
        client_container = a.start(client, "shell", BUSYBOX, ["sleep", "3600"])
        yield Lane(line, containerd, cluster, topo, state_dir, a, b, web, web_container, client, client_container,
                   mirror)
    finally:
        stack.close()
        lifecycle.destroy(cluster, state_dir, lambda _: None)


def http_get(cri: Cri, container: str, ip: str) -> str:
    """The body busybox's httpd serves at ip:8080, fetched from inside a pod (busybox's nc; its static wget
    crashes with a timeout set)."""
    code, out, err = cri.exec(container, ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080"])
    assert code == 0 and " 200 OK" in out, (code, out, err)
    return out.split("\r\n\r\n", 1)[1]


def sandbox_pid(cri: Cri, pod: Pod) -> int:
    info = json.loads(cri.pod_status(pod, verbose=True).info["info"])
    return int(info["pid"])


def test_the_roles_installed_the_containerd_asked_for(lane: Lane) -> None:
    version = lane.a.runtime.Version(lane.a.pb.VersionRequest(), timeout=10)
    assert version.runtime_name == "containerd" and version.runtime_version.lstrip("v").startswith(lane.containerd)
    config = lane.a.sh("cat /etc/containerd/config.toml")
    assert ("version = 3" if lane.line.startswith("2.") else "version = 2") in config


def test_images_come_through_the_mirror_and_only_through_it(lane: Lane) -> None:
    cri = lane.a
    # pulled through the CRI from the mirror (with a mirror, kube_packages imports no archive)
    assert {versions.pause_image(KUBERNETES), BUSYBOX} <= set(cri.image_names())
    hosts = cri.sh("cat /etc/containerd/certs.d/registry.k8s.io/hosts.toml")
    servers = re.findall(r'^\s*(?:server\s*=\s*"([^"]+)"|\[host\."([^"]+)"\])', hosts, re.MULTILINE)
    mirror = f"https://{lane.mirror.address}/v2/registry.k8s.io"
    assert {s for pair in servers for s in pair if s} == {mirror}, hosts  # the mirror, and nothing else
    # an image the mirror lacks: the mirror's "not found" ends it; registry.k8s.io itself is never asked
    with pytest.raises(grpc.RpcError) as err:
        cri.pull("registry.k8s.io/provision-test/not-mirrored:1")
    details = err.value.details()
    assert "not found" in details and "lookup" not in details and "registry.k8s.io/v2" not in details, details


def test_the_mirror_wants_credentials_and_containerd_has_them_in_a_0600_config(lane: Lane, tmp_path: Path) -> None:
    """Every pull of the lane went through a mirror that refuses anonymous pulls: the kubernetes step's (ctr with
    --user), and the CRI's (the sandbox's pause and the pods' busybox, with config.toml's registry.configs auth)."""
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text((lane.mirror.work.parent / "site-ca.crt").read_text())
    anonymous = subprocess.run(["skopeo", "inspect", "--cert-dir", str(certs),
                                f"docker://{lane.mirror.address}/{BUSYBOX}"], check=False, capture_output=True,
                               text=True)
    assert anonymous.returncode != 0 and "authentication required" in anonymous.stderr, anonymous.stderr
    assert BUSYBOX in lane.b.image_names() and versions.pause_image(KUBERNETES) in lane.b.image_names()
    assert lane.a.sh("stat -c %a /etc/containerd/config.toml").strip() == "600"
    assert lane.mirror.user is not None and lane.mirror.user[1] not in lane.a.sh("cat /etc/containerd/config.toml")


def test_every_image_the_cluster_runs_comes_through_the_mirror_and_no_upstream_is_asked(lane: Lane) -> None:
    """What the kubelet pulls once the CNI's and the dashboard's pods start: every image of the list (kubeadm's,
    Calico's operator and what it deploys, Headlamp's, agnhost), from quay.io, ghcr.io, docker.io and
    registry.k8s.io, comes through the mirror, and containerd never looked an upstream registry up."""
    if lane.line == FULL_UP_LINE:  # the offline up's cni and dashboard steps applied their manifests
        applied = lane.a.sh("cat /var/log/provision-doubles/kubectl.jsonl")
        assert '"Installation"' in applied and '"headlamp"' in applied, applied[-2000:]
    cri = lane.b
    refs = [i.ref for i in cluster_images.cluster_images(lane.cluster.kubernetes_version,
                                                          lane.cluster.spec.networking.cni,
                                                          lane.cluster.spec.dashboard.type)]
    assert {r.split("/", 1)[0] for r in refs} == {"registry.k8s.io", "quay.io", "ghcr.io"}  # calico, headlamp
    for ref in refs:
        lane.mirror.push(ref)  # small stand-ins under the real names, as `provision artifacts push` would
        cri.pull(ref)
    assert set(refs) <= set(cri.image_names())
    journal = cri.sh("journalctl -u containerd --no-pager -o cat")
    for upstream in registry.UPSTREAMS:
        assert f"lookup {upstream}" not in journal and f"https://{upstream}/v2" not in journal, upstream


def test_a_mirror_whose_certificate_the_ca_does_not_sign_is_refused(lane: Lane, tmp_path: Path) -> None:
    cri = lane.b
    ref = "quay.io/provision-test/probe:1"
    lane.mirror.push(ref)
    ca = "/etc/containerd/certs.d/provision-mirror-ca.crt"
    other = registry.make_ca(tmp_path, "other-ca").read_text()
    cri.sh(f"cp {ca} {ca}.keep && cat > {ca} <<'X'\n{other}X")
    try:
        with pytest.raises(grpc.RpcError) as err:
            cri.pull(ref)
        assert "certificate signed by unknown authority" in err.value.details(), err.value.details()
    finally:
        cri.sh(f"mv {ca}.keep {ca}")
    cri.pull(ref)  # the site's CA again: the same pull goes through
    assert ref in cri.image_names()


def test_a_sandbox_runs_in_the_kubelets_slice_with_the_pinned_pause_image(lane: Lane) -> None:
    cri, pod = lane.b, lane.web
    cgroup = cri.sh(f"cat /proc/{sandbox_pid(cri, pod)}/cgroup")
    scope = f"cri-containerd-{pod.id}.scope"
    assert f"{pod_slice(pod.uid)}/{scope}" in cgroup, cgroup  # runc placed it through systemd, in the pod's slice
    assert cri.sh(f"systemctl show -p ActiveState --value {scope}").strip() == "active"  # a unit systemd owns
    info = json.loads(cri.sh(f"ctr -n k8s.io containers info {pod.id}"))
    assert info["Image"] == versions.pause_image(KUBERNETES), "containerd's sandbox image is not kubeadm's"
    assert f"{versions.pause_image(KUBERNETES)}" in cri.image_names()


def test_a_pod_reaches_a_pod_on_another_node_by_its_ip(lane: Lane) -> None:
    route = lane.a.sh(f"ip route get {lane.web.ip}")
    assert f"via {lane.topo.nodes[1].address}" in route, route  # the host-gw route, as the kernel picks it
    assert http_get(lane.a, lane.client_container, lane.web.ip).strip() == "web"
    assert lane.client.ip != lane.web.ip and lane.client.ip


def test_dns_policy_default_and_host_network_resolve_through_the_nodes_resolv_conf(lane: Lane) -> None:
    cri = lane.a
    other = lane.topo.nodes[1]
    node_dns = resolv_conf_dns(cri.sh("cat /etc/resolv.conf"))
    for pod_name, host_network in (("dns-default", False), ("host-net", True)):
        pod = cri.run_pod(pod_name, host_network=host_network, dns_default=True)
        try:
            box = cri.start(pod, "shell", BUSYBOX, ["sleep", "3600"])
            _, resolv, _ = cri.exec(box, ["cat", "/etc/resolv.conf"])
            assert resolv_conf_dns(resolv)["servers"] == node_dns["servers"], resolv
            code, out, err = cri.exec(box, ["nslookup", other.name])
            assert code == 0 and other.address in out, (pod_name, out, err)
            _, hostname, _ = cri.exec(box, ["hostname"])
            assert hostname.strip() == (cri.node if host_network else pod_name)
        finally:
            cri.remove_pod(pod)


def test_a_bidirectional_mount_from_a_container_reaches_the_node(lane: Lane) -> None:
    cri = lane.a
    cri.sh("mkdir -p /var/lib/cri-test/shared")
    pod = cri.run_pod("propagation", privileged=True)
    try:
        box = cri.start(pod, "mounter", BUSYBOX, ["sleep", "3600"], privileged=True,
                        mounts=[cri.bidirectional("/var/lib/cri-test/shared", "/mnt/shared")])
        code, _, err = cri.exec(box, ["sh", "-c", ("mkdir -p /mnt/shared/inner && mount -t tmpfs cri-test "
                                                   "/mnt/shared/inner")])
        assert code == 0, err
        fstype = cri.sh("findmnt -n -o FSTYPE /var/lib/cri-test/shared/inner", check=False).strip()
        assert fstype == "tmpfs", "the container's mount did not propagate to the node"
        cri.exec(box, ["umount", "/mnt/shared/inner"])
    finally:
        cri.remove_pod(pod)


def test_a_containerd_restart_keeps_the_pods_running(lane: Lane) -> None:
    """Pods outlive a containerd restart: the same pause process, the sandbox ready, the containers running.

    Except one case, asserted as it is so that a change shows: containerd 1.7 on a cgroup v1 node takes the
    node's first sandbox for a leaked shim ("cleaning leaked shim process": its pause process sits in the pod
    slice's devices cgroup, not its scope's, so the shim lists no process) and reports it not ready; a kubelet
    would restart that pod. containerd 2.x keeps it (its sandbox store). Kubernetes 1.35+ refuses cgroup v1 unless
    failCgroupV1 is false, as on these docker nodes of a cgroup v1 host."""
    cri = lane.b
    late = cri.run_pod("late")
    late_container = cri.start(late, "shell", BUSYBOX, ["sleep", "3600"])

    def pause_pid(pod: Pod) -> str:  # containerd's own task list: the CRI's verbose info reads 0 while 1.7 recovers
        return cri.sh(f"ctr -n k8s.io tasks ls | awk '$1 == \"{pod.id}\" {{print $2}}'").strip()

    before = {pod.id: pause_pid(pod) for pod in (lane.web, late)}
    assert all(pid.isdigit() and pid != "0" for pid in before.values()), before
    cri.sh("systemctl restart containerd")
    states = cri.when_back(lambda: [cri.container_status(c).status.state for c in (lane.web_container, late_container)])
    assert states == [cri.pb.CONTAINER_RUNNING] * 2
    first_sandbox_lost = lane.line == "1.7" and cri.sh("stat -fc %T /sys/fs/cgroup").strip() != "cgroup2fs"
    for pod in (late,) if first_sandbox_lost else (lane.web, late):
        assert pause_pid(pod) == before[pod.id], pod.name
        assert cri.pod_status(pod).status.state == cri.pb.SANDBOX_READY, pod.name
    if first_sandbox_lost:
        assert cri.pod_status(lane.web).status.state == cri.pb.SANDBOX_NOTREADY
    assert cri.exec(late_container, ["true"])[0] == 0
    assert http_get(lane.a, lane.client_container, lane.web.ip).strip() == "web"
    stats = {s.attributes.id: s for s in cri.stats()}
    assert lane.web_container in stats and stats[lane.web_container].memory.working_set_bytes.value > 0


def test_node_reset_removes_the_pods_their_network_and_their_cgroups(lane: Lane) -> None:
    day2.reset(lane.cluster, lane.state_dir, lambda _: None)  # it restarts containerd
    for cri in (lane.a, lane.b):
        assert cri.when_back(cri.pods) == [] and cri.containers() == [], f"{cri.node}: CRI still lists pods or containers"
        leftovers = cri.sh("ip netns list | grep cni- ; ip -o link | grep -E 'cni0|veth' ; "
                           "ls /var/lib/cni 2>/dev/null; pgrep containerd-shim; "
                           "systemctl list-units --no-legend 'kubepods*' 'cri-containerd-*'", check=False)
        assert leftovers.strip() == "", f"{cri.node} keeps: {leftovers}"

"""A CRI client for tests: containerd driven over its CRI socket the way the kubelet drives it (a TEST TOOL).

The Python stubs are generated here from the CRI's own definition (Debian's golang-k8s-cri-api-dev ships
`api.proto`, runtime.v1) with grpcio-tools. The client reaches a node's containerd socket from this machine
through /proc/<node pid>/root, so nothing is installed on the nodes.

What the kubelet would send, and this client sends too (pkg/kubelet/kuberuntime, kubernetes 1.35):
- a sandbox's cgroup parent is the pod's systemd slice for the systemd cgroup driver:
  /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid, '-' as '_'>.slice;
- the pod's log directory /var/log/pods/<namespace>_<name>_<uid>, made before the sandbox;
- dnsPolicy Default (and hostNetwork): the node's resolv.conf servers, searches and options in the DNS config;
- hostNetwork: the NODE network namespace and the node's hostname; otherwise POD namespaces and the pod's name.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.cri import debian

T = TypeVar("T")

PROTO = "usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto"
SOCKET = "/run/containerd/containerd.sock"


def stubs() -> tuple[types.ModuleType, types.ModuleType]:
    """api_pb2 and api_pb2_grpc, generated once per api.proto version and grpcio-tools version into the test cache
    (grpcio refuses stubs that a newer grpcio-tools generated)."""
    from importlib.metadata import version

    with debian.cache_lock():
        root = debian.unpacked("sid", "golang-k8s-cri-api-dev")
        out = debian.CACHE / "cri-stubs" / f"{root.name}-grpcio-tools-{version('grpcio-tools')}"
        if not (out / "api_pb2_grpc.py").exists():
            out.mkdir(parents=True, exist_ok=True)
            proto = root / PROTO
            subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{proto.parent}", f"--python_out={out}",
                            f"--grpc_python_out={out}", str(proto)], check=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


def pod_slice(uid: str) -> str:
    """The systemd slice the kubelet (cgroupDriver: systemd) makes a BestEffort pod's cgroup parent."""
    return f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid.replace('-', '_')}.slice"


def resolv_conf_dns(text: str) -> dict[str, list[str]]:
    """The DNS config the kubelet builds from a node's resolv.conf (dnsPolicy Default, hostNetwork)."""
    dns: dict[str, list[str]] = {"servers": [], "searches": [], "options": []}
    for line in text.splitlines():
        words = line.split("#")[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            dns["servers"].append(words[1])
        elif words and words[0] in ("search", "domain"):
            dns["searches"] = words[1:]
        elif words and words[0] == "options":
            dns["options"].extend(words[1:])
    return dns


@dataclass
class Pod:
    id: str
    name: str
    uid: str
    config: Any
    ip: str = ""
    containers: list[str] = field(default_factory=list)


class Cri:
    """One node's containerd, over its CRI socket."""

    def __init__(self, node: str, docker: str = "/usr/bin/docker", socket: str | None = None,
                 ssh: list[str] | None = None) -> None:
        """A docker node's containerd through /proc/<pid>/root; or (a VM) `socket`, a local path forwarded to the
        node's containerd socket, with `ssh` the command line that runs a shell command on the node."""
        import grpc

        self.node, self.docker, self.ssh = node, docker, ssh
        self.pb, grpc_mod = stubs()
        if socket is None:
            pid = subprocess.run([docker, "inspect", "-f", "{{.State.Pid}}", node], check=True, capture_output=True,
                                 text=True).stdout.strip()
            socket = f"/proc/{pid}/root{SOCKET}"
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = grpc_mod.RuntimeServiceStub(self.channel)
        self.images = grpc_mod.ImageServiceStub(self.channel)

    def sh(self, script: str, check: bool = True) -> str:
        """A shell command on the node itself (not in a pod)."""
        cmd = [*self.ssh, script] if self.ssh else [self.docker, "exec", self.node, "sh", "-c", script]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if check and proc.returncode:
            raise AssertionError(f"{self.node}: {script}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def close(self) -> None:
        self.channel.close()

    def when_back(self, read: Callable[[], T], timeout: float = 60) -> T:
        """read() once containerd answers again after a restart: the channel's first call fails on the connection
        the restart closed, and the socket is back after a moment."""
        import grpc

        deadline = time.monotonic() + timeout
        while True:
            try:
                return read()
            except grpc.RpcError:
                assert time.monotonic() < deadline, f"{self.node}: containerd did not come back"
                time.sleep(1)

    # ---------------------------------------------------------------- pods

    def run_pod(self, name: str, host_network: bool = False, dns_default: bool = False,
                privileged: bool = False, namespace: str = "cri-test") -> Pod:
        pb = self.pb
        uid = str(uuid.uuid4())
        logs = f"/var/log/pods/{namespace}_{name}_{uid}"
        # the kubelet's QoS manager makes the QoS slices at start, its pod manager the pod's slice before the
        # sandbox: runc then only adds the sandbox's scope
        slices = pod_slice(uid).strip("/").split("/")
        self.sh(f"mkdir -p {logs} && systemctl start {' '.join(slices)}")
        dns = resolv_conf_dns(self.sh("cat /etc/resolv.conf")) if (dns_default or host_network) else None
        mode = pb.NODE if host_network else pb.POD
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname="" if host_network else name,
            log_directory=logs,
            dns_config=pb.DNSConfig(**dns) if dns else None,
            labels={"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                    "io.kubernetes.pod.uid": uid},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=pod_slice(uid),
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=mode, pid=pb.CONTAINER, ipc=mode),
                    privileged=privileged)))
        sandbox = self.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=120).pod_sandbox_id
        status = self.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox)).status
        return Pod(sandbox, name, uid, config, ip=status.network.ip)

    def pod_status(self, pod: Pod, verbose: bool = False) -> Any:
        return self.runtime.PodSandboxStatus(self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod.id, verbose=verbose))

    def remove_pod(self, pod: Pod) -> None:
        pb = self.pb
        self.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)
        self.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=120)
        self.sh(f"systemctl stop {pod_slice(pod.uid).rsplit('/', 1)[1]}")  # the kubelet removes the pod's cgroup

    def pods(self) -> list[Any]:
        return list(self.runtime.ListPodSandbox(self.pb.ListPodSandboxRequest()).items)

    # ---------------------------------------------------------------- containers

    def pull(self, image: str) -> None:
        """imagePullPolicy IfNotPresent, as the kubelet does it: ask, and pull only what is missing."""
        pb = self.pb
        if not self.images.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=image))).HasField("image"):
            self.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image)), timeout=120)

    def start(self, pod: Pod, name: str, image: str, command: list[str], mounts: list[Any] | None = None,
              privileged: bool = False) -> str:
        pb = self.pb
        self.pull(image)
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0), image=pb.ImageSpec(image=image),
            command=command, log_path=f"{name}/0.log", mounts=mounts or [],
            labels={"io.kubernetes.container.name": name, "io.kubernetes.pod.uid": pod.uid},
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(privileged=privileged)))
        container = self.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config), timeout=120).container_id
        self.runtime.StartContainer(pb.StartContainerRequest(container_id=container), timeout=120)
        pod.containers.append(container)
        return container

    def exec(self, container: str, command: list[str], timeout: int = 20) -> tuple[int, str, str]:
        reply = self.runtime.ExecSync(self.pb.ExecSyncRequest(container_id=container, cmd=command, timeout=timeout),
                                      timeout=timeout + 10)
        return reply.exit_code, reply.stdout.decode(), reply.stderr.decode()

    def container_status(self, container: str, verbose: bool = False) -> Any:
        return self.runtime.ContainerStatus(self.pb.ContainerStatusRequest(container_id=container, verbose=verbose))

    def containers(self) -> list[Any]:
        return list(self.runtime.ListContainers(self.pb.ListContainersRequest()).containers)

    def stats(self) -> list[Any]:
        return list(self.runtime.ListContainerStats(self.pb.ListContainerStatsRequest()).stats)

    def bidirectional(self, host_path: str, container_path: str) -> Any:
        return self.pb.Mount(container_path=container_path, host_path=host_path,
                             propagation=self.pb.PROPAGATION_BIDIRECTIONAL)

    def image_names(self) -> list[str]:
        return [t for i in self.images.ListImages(self.pb.ListImagesRequest()).images for t in i.repo_tags]


def proto_path() -> Path:
    return debian.unpacked("sid", "golang-k8s-cri-api-dev") / PROTO

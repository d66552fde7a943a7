"""`provision logs`: what `kind export logs` gives, from every node at once, with the secrets taken out.

Each node packs its journals (kubelet, containerd, etcd, haproxy, keepalived, ssh), container lists, network
state and configuration (playbooks/files/collect-node-logs.sh); Ansible fetches them in parallel. Here every file
is redacted (bootstrap tokens, certificate keys, private keys, kubeconfig and other credentials) and packed into
one archive (0600) with the last runs' Ansible output, the spec, state.json and a summary.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import tarfile
import time
from pathlib import Path

from provision import __version__, runner, topology
from provision.cli_common import cluster_state_dir, load, say, spec_args
from provision.errors import UserError
from provision.inventory import jump_host
from provision.spec import Cluster

PLAYBOOK = "logs.yml"

# (pattern, replacement): what a secret looks like in a journal, a manifest, a config or Ansible's output.
SECRETS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.DOTALL),
     "<redacted private key>"),
    (re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"), "<redacted bootstrap token>"),
    (re.compile(r"(?i)(certificate[-_ ]?key[\"']?\s*[:= ]\s*[\"']?)[0-9a-f]{64}\b"), r"\1<redacted>"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1<redacted>"),
    (re.compile(r"(?i)(\b(?:client-key-data|token|password|client-secret|secret)[\"']?\s*[:=]\s*[\"']?)"
                r"[^\s\"',}]+"), r"\1<redacted>"),
    (re.compile(r"(?i)(\bauth_pass\s+)\S+"), r"\1<redacted>"),  # keepalived's VRRP password
    (re.compile(r"(?i)(\bauth[\"']?\s*[:=]\s*[\"'])[A-Za-z0-9+/=]+"), r"\1<redacted>"),  # registry credentials
    (re.compile(r"(?i)(--(?:user|creds)[= ])\S+"), r"\1<redacted>"),  # ctr's and skopeo's user:password
    (re.compile(r"(?i)(--(?:token|password|certificate-key|client-secret)[= ])\S+"), r"\1<redacted>"),
]


def redact(text: str) -> str:
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _refuse_unknown_nodes(topo: topology.Topology, names: list[str]) -> None:
    known = [n.name for n in topo.nodes]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown node {', '.join(unknown)}: {topo.cluster.name}'s nodes are {', '.join(known)}",
                        code=2)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
    tar.addfile(info, io.BytesIO(data))


def _add_redacted(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        _add(tar, name + ".omitted", b"not UTF-8 text: left out rather than risk a secret in it\n")
        return
    _add(tar, name, redact(text).encode())


def _node_files(raw: Path, node: str) -> list[tuple[str, bytes]]:
    with tarfile.open(raw / f"{node}.tar.gz") as node_tar:
        return [(f"{node}/{m.name.removeprefix('./')}", node_tar.extractfile(m).read())  # type: ignore[union-attr]
                for m in node_tar.getmembers() if m.isfile()]


def _ansible_outputs(state_dir: Path) -> list[tuple[str, bytes]]:
    runs = sorted((state_dir / "runner" / "artifacts").glob("*/stdout"), key=lambda p: p.stat().st_mtime)
    return [(f"ansible/run-{i}-{p.parent.name}.log", p.read_bytes()) for i, p in enumerate(runs[-3:], 1)]


def _summary(cluster: Cluster, topo: topology.Topology, chosen: list[str], missed: list[str]) -> str:
    spec = cluster.spec
    containerd = cluster.containerd_version or "the distribution's package"
    reached = ", ".join(n for n in chosen if n not in missed) or "no node"
    lines = [f"provision {__version__}; cluster {cluster.name}, topology {spec.topology}",
             (f"Kubernetes {cluster.kubernetes_version}; containerd {containerd}; etcd {spec.etcd.mode} "
              f"{cluster.etcd_version}; CNI {spec.networking.cni}"),
             f"collected {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from: {reached}"]
    if missed:
        lines.append(f"NOT collected (unreachable or failed): {', '.join(missed)}")
    lines += [f"  {n.name} {n.address} {', '.join(topo.roles_of(n.name))}" for n in topo.nodes]
    return "\n".join(lines) + "\n"


def collect(cluster: Cluster, state_dir: Path, nodes: list[str], output: Path | None) -> Path:
    topo = topology.build(cluster)
    _refuse_unknown_nodes(topo, nodes)
    if not (state_dir / "inventory" / "hosts.yml").is_file():
        raise UserError(f"no inventory for {cluster.name} in {state_dir}; run `provision up` first")
    chosen = nodes or [n.name for n in topo.nodes]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = output or state_dir / "logs" / f"{cluster.name}-logs-{stamp}.tar.gz"
    raw = state_dir / "logs" / f".raw-{stamp}"
    raw.mkdir(parents=True)
    raw.parent.chmod(0o700)
    try:
        say(f"collecting logs from {len(chosen)} node(s): {', '.join(chosen)}")
        runner.run_playbook(state_dir, PLAYBOOK, len(chosen), extravars={"logs_dest": str(raw)},
                            limit=",".join(chosen), jump=jump_host(cluster))
        missed = [n for n in chosen if not (raw / f"{n}.tar.gz").is_file()]
        _write(target, cluster, topo, state_dir, raw, chosen, missed)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    if missed:
        say(f"warning: nothing from {', '.join(missed)} (unreachable or failed); the others are in the archive")
    return target


def _write(target: Path, cluster: Cluster, topo: topology.Topology, state_dir: Path, raw: Path, chosen: list[str],
           missed: list[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch(mode=0o600)
    target.chmod(0o600)
    root = target.name.removesuffix(".tar.gz")
    with tarfile.open(target, "w:gz") as tar:
        _add(tar, f"{root}/summary.txt", _summary(cluster, topo, chosen, missed).encode())
        files = [("spec.yaml", Path(cluster.source).read_bytes() if Path(cluster.source).is_file() else b"")]
        state = state_dir / "state.json"
        files += [("state.json", state.read_bytes())] if state.is_file() else []
        files += _ansible_outputs(state_dir)
        for node in chosen:
            files += _node_files(raw, node) if node not in missed else []
        for name, data in files:
            _add_redacted(tar, f"{root}/{name}", data)


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = load(args.file)
    output = Path(args.output).expanduser() if args.output else None
    target = collect(cluster, cluster_state_dir(cluster, args), args.nodes, output)
    say(f"wrote {target} (0600)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `provision logs` to the CLI."""
    p = sub.add_parser(
        "logs", help="collect every node's logs into one archive (secrets redacted)",
        description="From every node at once (or the NODEs named): the journals of kubelet, containerd, etcd, "
                    "haproxy, keepalived and ssh, container lists, ip addr/route, the nftables and iptables "
                    "rules, the static pod manifests and the containerd, kubelet, haproxy, keepalived and etcd "
                    "configuration; with the last runs' Ansible output, the spec, state.json and a summary. "
                    "Tokens, certificate keys, private keys and credentials are redacted. Written as a tar.gz "
                    "(0600) into <state dir>/logs/, or -o FILE.")
    spec_args(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write the archive here (default: in the state dir)")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="only these nodes (default: all)")
    p.set_defaults(func=cmd_logs)

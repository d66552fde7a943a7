"""Day-2 work on a running cluster: drain, uncordon, remove-node, add-node, reset, upgrade.

Each verb reads the spec and the state (`provision.state`), refuses what would hurt the cluster before it
touches a host, and runs one playbook with Ansible's `--limit` set to the hosts that must take part, so
nodes that have no business in the change are never contacted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision import inventory, lifecycle, runner, state, steps, topology, versions
from provision.errors import UserError
from provision.inventory import jump_host
from provision.providers import for_topology
from provision.spec import Cluster

Say = Callable[[str], None]


@dataclass
class Day2Report:
    runs: list[runner.RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(sum(r.changed.values()) for r in self.runs)


# ---------------------------------------------------------------- shared


def _running(cluster: Cluster, state_dir: Path) -> tuple[state.ClusterState, topology.Topology]:
    st = state.load(state_dir)
    if not st.initialized:
        raise UserError(f"{cluster.name} has no running cluster on record in {state_dir}; run `provision up` first")
    return st, topology.build(cluster, st.init_node)


def _node_of(topo: topology.Topology, st: state.ClusterState, name: str) -> topology.Node:
    try:
        node = topo.node(name)
    except KeyError:
        names = ", ".join(n.name for n in topo.nodes)
        raise UserError(f"{name} is not a node of {topo.cluster.name} (its nodes: {names})", code=2) from None
    if name not in st.members:
        raise UserError(f"{name} is not in the running cluster (never added, or removed with remove-node); "
                        f"`provision add-node` adds it")
    return node


def _operator(topo: topology.Topology, st: state.ClusterState, avoid: str | None = None) -> str:
    """A control plane of the running cluster that will stay: where kubectl runs with admin credentials."""
    candidates = [st.init_node] + topo.groups["control_plane"]
    for name in candidates:
        if name and name != avoid and name in st.members and name in topo.groups["control_plane"]:
            return name
    raise UserError(f"no control plane of {topo.cluster.name} other than {avoid} is in the cluster")


def _run(state_dir: Path, topo: topology.Topology, playbook: str, report: Day2Report,
         progress: runner.Progress | None, extravars: dict[str, Any] | None = None,
         limit: list[str] | None = None, what: str = "") -> runner.RunResult:
    result = runner.run_playbook(state_dir, playbook, len(topo.nodes), progress, extravars=extravars,
                                 limit=",".join(limit) if limit else None, jump=jump_host(topo.cluster))
    report.runs.append(result)
    if not result.ok:
        raise UserError(f"{what or playbook} failed:\n  {result.failure_lines()}")
    return result


# ---------------------------------------------------------------- drain / uncordon


def drain(cluster: Cluster, state_dir: Path, node: str, force: bool = False, timeout: str = "5m",
          progress: runner.Progress | None = None) -> Day2Report:
    return _on_operator(cluster, state_dir, node, "drain", progress,
                        {"drain_node": node, "drain_force": force, "drain_timeout": timeout})


def uncordon(cluster: Cluster, state_dir: Path, node: str, progress: runner.Progress | None = None) -> Day2Report:
    return _on_operator(cluster, state_dir, node, "uncordon", progress, {"drain_node": node})


def _on_operator(cluster: Cluster, state_dir: Path, node: str, verb: str, progress: runner.Progress | None,
                 extravars: dict[str, Any]) -> Day2Report:
    """Run playbooks/<verb>.yml for a Kubernetes node on a control plane, the only host contacted."""
    st, topo = _running(cluster, state_dir)
    _require_kubernetes_node(topo, st, node)
    report = Day2Report()
    op = _operator(topo, st)
    _run(state_dir, topo, f"{verb}.yml", report, progress, limit=[op], what=f"{verb} {node}",
         extravars={"provision_operator": op, **extravars})
    return report


def _require_kubernetes_node(topo: topology.Topology, st: state.ClusterState, node: str) -> None:
    _node_of(topo, st, node)
    if node not in topo.groups["k8s_cluster"]:
        raise UserError(f"{node} is not a Kubernetes node (it runs {', '.join(topo.roles_of(node))})")


# ---------------------------------------------------------------- remove-node


def removal_refusal(topo: topology.Topology, st: state.ClusterState, node: str) -> str | None:
    """Why removing `node` would break the cluster, or None. (Quorum against live health is checked on the
    etcd members by the playbook's first play.)"""
    g = topo.groups
    members = set(st.members)
    if node in g["control_plane"] and not [c for c in g["control_plane"] if c != node and c in members]:
        return (f"refusing to remove {node}: it is the last control plane of {topo.cluster.name}; "
                "`provision reset` or `provision destroy` takes the whole cluster down")
    if node in g["etcd"]:
        staying = [e for e in g["etcd"] if e != node and e in members]
        if not staying:
            return f"refusing to remove {node}: it is the last etcd member, the cluster's data would go with it"
    return None


def check_removal(cluster: Cluster, state_dir: Path, node: str) -> tuple[state.ClusterState, topology.Topology]:
    st, topo = _running(cluster, state_dir)
    _node_of(topo, st, node)
    why = removal_refusal(topo, st, node)
    if why:
        raise UserError(why)
    return st, topo


def _etcd_group_of(topo: topology.Topology, node: str) -> str | None:
    """The group of etcd members `node` belongs to: external_etcd, control_plane (kubeadm's stacked etcd) or none."""
    if node in topo.groups["external_etcd"]:
        return "external_etcd"
    if topo.cluster.spec.etcd.mode == "stacked" and node in topo.groups["control_plane"]:
        return "control_plane"
    return None


def _proxies_of(topo: topology.Topology, st: state.ClusterState, node: str) -> list[str]:
    """The haproxy hosts that send API traffic to `node` (a control plane behind a vip or local-proxy endpoint)."""
    if node not in topo.groups["control_plane"] or topo.cluster.spec.endpoint.type not in ("vip", "local-proxy"):
        return []
    return [p for p in topo.groups["loadbalancer"] + topo.groups["api_proxy"] if p != node and p in st.members]


def remove_node(cluster: Cluster, state_dir: Path, node: str, say: Say, force: bool = False,
                timeout: str = "5m", progress: runner.Progress | None = None) -> Day2Report:
    st, topo = check_removal(cluster, state_dir, node)
    report = Day2Report()
    op = _operator(topo, st, avoid=node)
    etcd_group = _etcd_group_of(topo, node)
    etcd_members = [e for e in topo.groups[etcd_group] if e in st.members] if etcd_group else []
    proxies = _proxies_of(topo, st, node)
    say(f"removing {node} ({', '.join(topo.roles_of(node))}); kubectl runs on {op}"
        + (f"; first out of the API endpoint's backends on {len(proxies)} node(s)" if proxies else ""))
    result = _run(state_dir, topo, "remove-node.yml", report, progress, what=f"remove-node {node}",
                  limit=sorted({op, node, *etcd_members, *proxies}),
                  extravars={"remove_node": node, "provision_operator": op,
                             "remove_node_kubernetes": node in topo.groups["k8s_cluster"],
                             "remove_node_etcd": etcd_group is not None,
                             "remove_node_etcd_group": etcd_group or "external_etcd", "remove_node_proxies": proxies,
                             "drain_node": node, "drain_force": force, "drain_timeout": timeout})
    if node not in result.tasks or node in result.unreached:
        report.notes.append(_unreached_note(node, etcd_group))
    smaller = _forget(cluster, state_dir, st, topo, node, op)
    if proxies:
        _run(state_dir, smaller, "endpoint.yml", report, progress, limit=proxies, what="endpoint update")
    report.notes.append(f"{node} is still in the spec: `provision up` or `add-node` would add it back; "
                        "lower the node count (the last-numbered node) or drop it from hosts to keep it out")
    return report


def _unreached_note(node: str, etcd_group: str | None) -> str:
    if etcd_group != "control_plane":
        return f"{node} could not be reached: it was not reset; wipe or rebuild it before reuse"
    return (f"{node} could not be reached, so nothing on it was cleaned. Its etcd member was removed from the "
            "cluster through a healthy control plane (kubeadm reset's remove-etcd-member phase cannot run on a dead "
            "node). Still on the machine: kubeadm's etcd PKI under /etc/kubernetes/pki/etcd/ (the etcd CA's key, "
            "the member's server and peer keys, the healthcheck client's; etcd keeps no revocation list, so they "
            "still open the cluster's etcd), the member's data in /var/lib/etcd (every Secret of the cluster), the "
            "cluster CA's key and the kubeconfigs under /etc/kubernetes. Wipe or rebuild it before reuse; if the "
            "machine may be in other hands, replace the etcd and cluster CAs")


def _forget(cluster: Cluster, state_dir: Path, st: state.ClusterState, topo: topology.Topology, node: str,
            op: str) -> topology.Topology:
    """The cluster without the node: the new state and the inventory; returns its topology."""
    st.members = [m for m in st.members if m != node]
    st.removed = sorted(set(st.removed) | {node})
    if st.init_node == node:
        st.init_node = op
    state.save(state_dir, st)
    runner.forget_facts(state_dir, [node])
    smaller = topology.build(cluster, st.init_node, exclude=st.removed)
    inventory.write(inventory.render(smaller, for_topology(topo, state_dir).connections()), state_dir)
    return smaller


# ---------------------------------------------------------------- add-node


ADD_STEPS = ("preflight", "os", "endpoint", "containerd", "kubernetes", "init", "join-control-planes",
             "join-workers")


def nodes_to_add(topo: topology.Topology, st: state.ClusterState) -> list[topology.Node]:
    return [n for n in topo.nodes if n.name not in st.members]


def add_nodes(cluster: Cluster, state_dir: Path, say: Say,
              progress: runner.Progress | None = None) -> Day2Report:
    st, topo = _running(cluster, state_dir)
    lifecycle.check_version(cluster, st)
    new = nodes_to_add(topo, st)
    report = Day2Report()
    if not new:
        say(f"every node of the spec is in {cluster.name} already: nothing to add")
        return report
    others = [n.name for n in new if set(n.roles) - {"control-plane", "worker"}]
    if others:
        raise UserError(f"add-node adds control planes and workers; {', '.join(others)} "
                        "(etcd member or load balancer) is added by `provision up`")
    names = [n.name for n in new]
    new_cps = [n for n in names if n in topo.groups["control_plane"]]
    touch = list(names)
    if new_cps and cluster.spec.endpoint.type == "vip":
        touch += topo.groups["loadbalancer"]  # the new API servers become backends
    if new_cps and cluster.spec.endpoint.type == "local-proxy":
        touch += [p for p in topo.groups["api_proxy"] if p not in touch]
    say(f"adding {', '.join(names)}" + (f"; also updating {', '.join(t for t in touch if t not in names)}"
                                         if len(touch) > len(names) else ""))

    lifecycle.prepare_state(cluster, state_dir)
    provider = for_topology(topo, state_dir)
    conns = provider.create()
    inventory.write(inventory.render(topo, conns), state_dir)
    lifecycle.reach_all(topo, state_dir, {n: c for n, c in conns.items() if n in names}, say)
    plan = [s for s in steps.steps_for(topo) if s.id in ADD_STEPS and s.playbook is not None]
    titles = {s.id: s.title for s in plan}
    results = runner.run_steps(state_dir, [(s.id, s.playbook) for s in plan if s.playbook], len(topo.nodes),
                               progress, began=lambda sid: say(f"{titles.get(sid, sid)} [{', '.join(touch)}]"),
                               jump=jump_host(cluster), limit=",".join(touch))
    report.runs += results
    for result in results:
        if not result.ok:
            raise UserError(f"step '{titles.get(result.playbook, result.playbook)}' failed:\n"
                            f"  {result.failure_lines()}\n"
                            "fix the cause and run `provision add-node` again")
    st.members = sorted(set(st.members) | set(names))
    st.removed = [r for r in st.removed if r not in names]
    state.save(state_dir, st)
    return report


# ---------------------------------------------------------------- reset


def reset(cluster: Cluster, state_dir: Path, say: Say, progress: runner.Progress | None = None) -> Day2Report:
    topo = topology.build(cluster)
    if not (state_dir / "inventory" / "hosts.yml").exists():
        raise UserError(f"no inventory for {cluster.name} in {state_dir}: nothing provision made to reset")
    report = Day2Report()
    _run(state_dir, topo, "reset.yml", report, progress, what="reset")
    st = state.load(state_dir)
    st.members, st.init_node, st.kubernetes_version, st.removed = [], None, None, []
    state.save(state_dir, st)
    for stale in ("kubeconfig", "secrets/kubeadm-certificate-key"):
        (state_dir / stale).unlink(missing_ok=True)
    say(f"reset {len(topo.nodes)} node(s); the machines stay (`provision destroy` removes them)")
    return report


# ---------------------------------------------------------------- upgrade


def upgrade_target(running: str, target: str) -> str:
    """The full version to upgrade to, or a UserError saying why not (one minor at a time, never down)."""
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", target):
        raise UserError(f"--to {target!r} is not a Kubernetes version; write it as 1.37 or 1.37.2")
    minor = versions.kubernetes_minor(target)
    if minor not in versions.SUPPORTED_MINORS:
        raise UserError(f"Kubernetes {target} is not supported by this provision; it supports "
                        f"{', '.join(versions.SUPPORTED_MINORS)}")
    full = target if target.count(".") == 2 else versions.KUBERNETES_PATCHES[minor]
    have, want = versions.version_key(running), versions.version_key(full)
    if want <= have:
        raise UserError(f"the cluster runs {running}; {full} is not newer (provision never downgrades)")
    if want[1] > have[1] + 1 or want[0] != have[0]:
        raise UserError(f"the cluster runs {running}: upgrade one minor version at a time, first to "
                        f"{have[0]}.{have[1] + 1}")
    return full


def upgrade(cluster: Cluster, state_dir: Path, to: str, say: Say, batch: int = 1, artifacts_dir: str | None = None,
            progress: runner.Progress | None = None) -> Day2Report:
    st, topo = _running(cluster, state_dir)
    running = st.kubernetes_version or cluster.kubernetes_version
    full = upgrade_target(running, to)
    if batch < 1:
        raise UserError(f"--batch {batch}: upgrade at least 1 worker at a time")
    extravars: dict[str, Any] = {
        "upgrade_version": full, "kubernetes_version": full, "kubernetes_minor": versions.kubernetes_minor(full),
        "provision_operator": _operator(topo, st), "upgrade_batch": batch, "drain_timeout": "5m",
        "drain_force": False}
    if cluster.spec.artifacts.mode == "offline":
        if not artifacts_dir:
            raise UserError("this cluster installs from an artifacts directory: pass --artifacts-dir DIR holding "
                            f"Kubernetes {full} (`provision artifacts -o DIR` makes one from a spec that says {full})")
        path = Path(artifacts_dir).expanduser().resolve()
        if not (path / "SHA256SUMS").is_file():
            raise UserError(f"--artifacts-dir {path} has no SHA256SUMS: not an artifacts directory")
        extravars["artifacts_dir"] = str(path)
    members = [m for m in topo.groups["k8s_cluster"] if m in st.members]
    say(f"upgrading {cluster.name} from {running} to {full}: {len(topo.groups['control_plane'])} control "
        f"plane(s) one at a time, then workers {batch} at a time")
    report = Day2Report()
    _run(state_dir, topo, "upgrade.yml", report, progress, extravars=extravars, limit=members,
         what=f"upgrade to {full} (nodes not reached yet still run {running})")
    st.kubernetes_version = full
    state.save(state_dir, st)
    if cluster.kubernetes_version != full:
        report.notes.append(f"set kubernetes.version: \"{full}\" in the spec: `provision up` refuses to run "
                            f"while the spec and the cluster ({full}) disagree")
    return report

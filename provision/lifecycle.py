"""Lifecycle: `up`, `status` and `destroy` as the chain spec -> topology -> provider -> inventory -> runner.

`up` is safe to re-run: providers create only what is missing, the inventory is rewritten only where it
changed, and every role is idempotent.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from provision import inventory, paths, runner, ssh, state, steps, topology, versions
from provision import verify as verify_mod
from provision.errors import UserError
from provision.inventory import Connection, jump_host
from provision.providers import Provider, for_topology
from provision.spec import Cluster

Say = Callable[[str], None]


@dataclass
class UpReport:
    cluster: str
    state_dir: Path
    phases: list[tuple[str, float, str]] = field(default_factory=list)  # (title, seconds, outcome)
    runs: list[runner.RunResult] = field(default_factory=list)
    not_available: list[str] = field(default_factory=list)
    checks: list[verify_mod.Check] = field(default_factory=list)


def state_dir_for(cluster: Cluster, override: str | None = None) -> Path:
    # absolute: ansible-runner resolves relative paths from its own private dir, not from here
    return (Path(override).expanduser() if override else paths.state_dir(cluster.name)).resolve()


def prepare_state(cluster: Cluster, state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    snapshot = state_dir / "cluster.yaml"
    text = Path(cluster.source).read_text() if Path(cluster.source).is_file() else None
    if text is not None:
        snapshot.write_text(text)
        os.chmod(snapshot, 0o600)
    st = state.load(state_dir)
    st.name, st.provider, st.source = cluster.name, cluster.spec.provider.type, str(Path(cluster.source))
    state.save(state_dir, st)


def check_version(cluster: Cluster, st: state.ClusterState) -> None:
    """The spec and the running cluster agree on the version: `provision upgrade` is the only way to move it."""
    running = st.kubernetes_version
    wanted = cluster.kubernetes_version
    if running is None or running == wanted:
        return
    if versions.version_key(wanted) > versions.version_key(running):
        raise UserError(f"the spec asks for Kubernetes {wanted} but {cluster.name} runs {running}: "
                        f"run `provision upgrade --to {wanted}` (one minor version at a time)")
    raise UserError(f"{cluster.name} runs Kubernetes {running} but the spec says {wanted}: set "
                    f"kubernetes.version: \"{running}\" in the spec (provision never downgrades)")


def reach_all(topo: topology.Topology, state_dir: Path, conns: dict[str, Connection], say: Say,
              timeout: float = 10) -> None:
    """SSH to every node; name every one that fails, and why, before any role runs."""
    accept_new = topo.cluster.spec.provider.type == "static"
    results = ssh.check_all(conns, state_dir / "known_hosts", accept_new=accept_new, timeout=timeout,
                            jump=jump_host(topo.cluster))
    bad = [r for r in results if not r.ok]
    if bad:
        lines = [f"{r.node}: {r.why}" for r in bad]
        raise UserError(f"{len(bad)} of {len(results)} host(s) unreachable over SSH, nothing was changed:\n  "
                        + "\n  ".join(lines))
    say(f"SSH reaches all {len(results)} node(s)")


def forget_new_machines(state_dir: Path, conns: dict[str, Connection], keys_before: dict[str, str]) -> None:
    """A node whose host key is new or changed is a machine made anew: Ansible's cached facts of it are stale."""
    keys = ssh.pinned(state_dir / "known_hosts")
    names = {node: ssh.known_host_name(c.host, c.port) for node, c in conns.items()}
    runner.forget_facts(state_dir, [node for node, name in names.items() if keys.get(name) != keys_before.get(name)])


def verify(cluster: Cluster, state_dir: Path, workloads: bool = True) -> list[verify_mod.Check]:
    """Ask the API server whether the cluster works (see provision.verify)."""
    kubeconfig = state_dir / "kubeconfig"
    if not kubeconfig.exists():
        raise UserError(f"no kubeconfig for {cluster.name} ({kubeconfig}); run `provision up` first")
    topo = topology.build(cluster)
    schedulable = len(topo.groups["workers"]) or len(topo.groups["control_plane"])
    try:
        api = verify_mod.KubeApi(kubeconfig)
        return verify_mod.run(api, topo.groups["k8s_cluster"], schedulable, workloads)
    except verify_mod.api_errors() as exc:
        first = (str(exc).splitlines() or [""])[0][:300]
        raise UserError(f"cannot verify {cluster.name}: {type(exc).__name__}: {first}") from None


def up(cluster: Cluster, state_dir: Path, say: Say, progress: runner.Progress | None = None,
       only: list[str] | None = None, skip: list[str] | None = None) -> UpReport:
    st = state.load(state_dir)
    check_version(cluster, st)
    topo = topology.build(cluster, st.init_node)
    inventory.render(topo)  # a local file the spec names that cannot be read (artifacts.authFile): before any machine
    prepare_state(cluster, state_dir)
    provider = for_topology(topo, state_dir)
    report = UpReport(cluster.name, state_dir)
    plan = steps.steps_for(topo)
    if not st.members:  # no `up` has finished: no node can be left out, and the survey would only cost time
        plan = [replace(s, playbook=None, idle="a new cluster: every step runs on every node") if s.id == "survey"
                else s for s in plan]
    kubeadm_steps = [s.id for s in plan if s.id in ("init", "join-control-planes", "join-workers")]
    total = len(plan)
    if only and "machines" not in only:  # the machines exist already: say how to reach them
        inventory.write(inventory.render(topo, provider.connections()), state_dir)
    chosen = [(i, step) for i, step in enumerate(plan, 1)
              if not ((only and step.id not in only) or (skip and step.id in skip))]
    keys_before = ssh.pinned(state_dir / "known_hosts")
    batch: list[tuple[int, steps.Step]] = []  # consecutive Ansible steps: run together, in one ansible-playbook
    for i, step in chosen:
        if step.id not in ("machines", "ssh", "verify"):
            batch.append((i, step))
            continue
        _run_batch(batch, topo, state_dir, report, total, say, progress, kubeadm_steps)
        batch = []
        t0 = time.monotonic()
        say(f"[{i}/{total}] {step.title}")
        outcome = "done"
        if step.id == "machines":
            conns = provider.create()
            files = inventory.render(topo, conns)
            inventory.write(files, state_dir)
            forget_new_machines(state_dir, conns, keys_before)
        elif step.id == "ssh":
            reach_all(topo, state_dir, provider.connections(), say)
            forget_new_machines(state_dir, provider.connections(), keys_before)
        else:
            report.checks = verify(cluster, state_dir)
            failed = [c for c in report.checks if not c.ok]
            outcome = "all checks passed" if not failed else f"{len(failed)} check(s) failed"
            if failed:
                report.phases.append((step.title, time.monotonic() - t0, outcome))
                raise UserError("verify failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
        report.phases.append((step.title, time.monotonic() - t0, outcome))
    _run_batch(batch, topo, state_dir, report, total, say, progress, kubeadm_steps)
    return report


def _run_batch(batch: list[tuple[int, steps.Step]], topo: topology.Topology, state_dir: Path, report: UpReport,
               total: int, say: Say, progress: runner.Progress | None, kubeadm_steps: list[str]) -> None:
    """Run consecutive Ansible steps in one ansible-playbook run (Ansible starts once, not once per step);
    marker plays between them give each step its own time, changes and failures, as separate runs would."""
    if not batch:
        return
    runnable: list[tuple[int, steps.Step]] = []
    for i, step in batch:
        if step.playbook is None:
            pass
        elif not (paths.PLAYBOOKS / step.playbook).exists():
            report.not_available.append(step.id)
        else:
            runnable.append((i, step))
    by_id = {step.id: (i, step) for i, step in batch}
    pending = list(batch)  # in plan order; the steps with nothing to run are reported where they stand
    current: list[tuple[steps.Step, float]] = []
    results: dict[str, runner.RunResult] = {}
    ran: dict[str, int] = {}  # step id -> its index in report.phases; the outcome is filled in after the run

    def outcome_of(step: steps.Step) -> str:
        if step.playbook is None:
            return step.idle
        if step.id in report.not_available:
            return "not available yet"
        return f"ok, {sum(results[step.id].changed.values())} change(s)" if step.id in results else "done"

    def close_current() -> None:
        # the step that ran finished on every host: its phase, and the cluster's record after init/last join
        if current:
            step, t0 = current.pop()
            ran[step.id] = len(report.phases)
            report.phases.append((step.title, time.monotonic() - t0, outcome_of(step)))
            if step.id == "init" or (kubeadm_steps and step.id == kubeadm_steps[-1]):
                record_cluster(state_dir, topo, complete=step.id == kubeadm_steps[-1])

    def flush_idle(until: str | None) -> None:
        while pending and pending[0][1].id != until:
            i, step = pending.pop(0)
            say(f"[{i}/{total}] {step.title}")
            report.phases.append((step.title, 0.0, outcome_of(step)))

    def began(step_id: str) -> None:
        close_current()
        flush_idle(step_id)
        i, step = pending.pop(0)
        say(f"[{i}/{total}] {step.title}")
        current.append((step, time.monotonic()))

    if runnable:
        t_start = time.monotonic()
        plan = [(step.id, step.playbook) for _, step in runnable if step.playbook]
        runs = runner.run_steps(state_dir, plan, len(topo.nodes), progress, began, jump=jump_host(topo.cluster))
        results = {r.playbook: r for r in runs}
        for r in runs:
            r.playbook = by_id[r.playbook][1].playbook or r.playbook
        report.runs.extend(runs)
        failed = [(by_id[sid][1], r) for sid, r in zip(results, runs, strict=True) if not r.ok]
        if failed:
            step, result = failed[0]
            t0 = current[0][1] if current else t_start
            report.phases.append((step.title, time.monotonic() - t0, "failed"))
            raise UserError(f"step '{step.title}' failed:\n  {result.failure_lines()}\n"
                            "fix the cause and run `provision up` again: finished steps are not redone")
        close_current()
        for step_id, index in ran.items():
            title, seconds, _ = report.phases[index]
            report.phases[index] = (title, seconds, outcome_of(by_id[step_id][1]))
    flush_idle(None)


def record_cluster(state_dir: Path, topo: topology.Topology, complete: bool) -> None:
    """After `kubeadm init`: where it ran and the version. After the last join: every node is a member."""
    st = state.load(state_dir)
    st.init_node = topo.groups["first_control_plane"][0]
    st.kubernetes_version = st.kubernetes_version or topo.cluster.kubernetes_version
    if complete:
        st.members = sorted(set(st.members) | {n.name for n in topo.nodes})
        st.removed = []
    state.save(state_dir, st)


def provider_for_state(cluster: Cluster, state_dir: Path) -> Provider:
    return for_topology(topology.build(cluster), state_dir)


def status(cluster: Cluster, state_dir: Path) -> dict[str, str]:
    return provider_for_state(cluster, state_dir).status()


def destroy(cluster: Cluster, state_dir: Path, say: Say) -> None:
    provider = provider_for_state(cluster, state_dir)
    provider.destroy()
    runner.close_connections(state_dir)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    say(f"removed the machines of {cluster.name} and its state dir {state_dir}")


def summary_rows(report: UpReport) -> list[dict[str, Any]]:
    return [{"phase": t, "seconds": round(s, 1), "outcome": o} for t, s, o in report.phases]

"""Lifecycle: `up`, `status` and `destroy` as the chain spec -> topology -> provider -> inventory -> runner.

`up` is safe to re-run: providers create only what is missing, the inventory is rewritten only where it
changed, and every role is idempotent.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision import inventory, paths, runner, ssh, steps, topology
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
    return Path(override).expanduser() if override else paths.state_dir(cluster.name)


def prepare_state(cluster: Cluster, state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    snapshot = state_dir / "cluster.yaml"
    text = Path(cluster.source).read_text() if Path(cluster.source).is_file() else None
    if text is not None:
        snapshot.write_text(text)
        os.chmod(snapshot, 0o600)
    meta = {"name": cluster.name, "provider": cluster.spec.provider.type, "source": str(Path(cluster.source))}
    (state_dir / "state.json").write_text(json.dumps(meta, indent=2) + "\n")


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
    topo = topology.build(cluster)
    prepare_state(cluster, state_dir)
    provider = for_topology(topo, state_dir)
    report = UpReport(cluster.name, state_dir)
    plan = steps.steps_for(topo)
    total = len(plan)
    if only and "machines" not in only:  # the machines exist already: say how to reach them
        inventory.write(inventory.render(topo, provider.connections()), state_dir)
    for i, step in enumerate(plan, 1):
        if (only and step.id not in only) or (skip and step.id in skip):
            continue
        t0 = time.monotonic()
        say(f"[{i}/{total}] {step.title}")
        outcome = "done"
        if step.id == "machines":
            conns = provider.create()
            files = inventory.render(topo, conns)
            inventory.write(files, state_dir)
        elif step.id == "ssh":
            reach_all(topo, state_dir, provider.connections(), say)
        elif step.id == "verify":
            report.checks = verify(cluster, state_dir)
            failed = [c for c in report.checks if not c.ok]
            outcome = "all checks passed" if not failed else f"{len(failed)} check(s) failed"
            if failed:
                report.phases.append((step.title, time.monotonic() - t0, outcome))
                raise UserError("verify failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
        elif step.playbook is None:
            outcome = "nothing to run here"
        elif not (paths.PLAYBOOKS / step.playbook).exists():
            outcome = "not available yet"
            report.not_available.append(step.id)
        else:
            result = runner.run_playbook(state_dir, step.playbook, len(topo.nodes), progress,
                                         jump=jump_host(cluster))
            report.runs.append(result)
            changed = sum(result.changed.values())
            outcome = f"ok, {changed} change(s)"
            if not result.ok:
                report.phases.append((step.title, time.monotonic() - t0, "failed"))
                detail = "\n  ".join(f.line() for f in result.failures)
                raise UserError(f"step '{step.title}' failed:\n  {detail}\n"
                                "fix the cause and run `provision up` again: finished steps are not redone")
        report.phases.append((step.title, time.monotonic() - t0, outcome))
    return report


def provider_for_state(cluster: Cluster, state_dir: Path) -> Provider:
    return for_topology(topology.build(cluster), state_dir)


def status(cluster: Cluster, state_dir: Path) -> dict[str, str]:
    return provider_for_state(cluster, state_dir).status()


def destroy(cluster: Cluster, state_dir: Path, say: Say) -> None:
    provider = provider_for_state(cluster, state_dir)
    provider.destroy()
    if state_dir.exists():
        shutil.rmtree(state_dir)
    say(f"removed the machines of {cluster.name} and its state dir {state_dir}")


def summary_rows(report: UpReport) -> list[dict[str, Any]]:
    return [{"phase": t, "seconds": round(s, 1), "outcome": o} for t, s, o in report.phases]

"""Benchmark: converge real Docker node clusters of N nodes and measure what `provision` costs.

    python bench/cluster.py [--nodes 1,3,10,30] [--json FILE] [--prefix NAME] [--profile DIR]

For each N it brings up a cluster of systemd container nodes (`provider: docker`), with the offline artifacts
path and the TEST DOUBLES of tests/doubles/ in place of kubeadm/kubelet/kubectl (no real binaries can be had
here; etcd is Debian's), and measures three phases:

  cold     `up` from nothing: machines, SSH, preflight, OS prep, etcd (where the topology has external etcd),
           the API endpoint (local-proxy haproxy), containerd, Kubernetes packages, kubeadm init and joins
           (the CNI, dashboard and verify steps need a real API server and are skipped)
  noop     `up` again: it must change nothing
  add      the spec with one more worker, `provision add-node`'s code path (provision.day2.add_nodes)

Before those, on fresh nodes of the same layout, the FLOOR: what installing every package and artifact each
node needs costs done alone (one apt transaction per node with every package `up` installs there, without their
Recommends as os_prep installs them, all nodes at once, then the artifacts copied and unpacked; docker exec, no
Ansible). The cold run's CONVERGE is the cold phase without making and reaching the machines; issue #19's bound
for it is 1.3 x floor + 10 s.

For each phase: wall-clock seconds, tasks Ansible executed per host, changed tasks, and SSH connections
opened (each node's sshd journal, "Accepted publickey" since the phase began, with the cluster's persistent
master connections closed before the phase). The add phase also names every existing worker it contacted
(there must be none). Clusters are always destroyed. Prints figures; asserts nothing (the exit code is 1 when
a phase failed or the add phase contacted an existing worker). With --profile DIR, each phase's Ansible job
events are kept in DIR/N<size>-<phase>-<run>/: `python bench/profile.py DIR/N10-cold-1` prints where that
run's time went, per task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provision import day2, lifecycle, packages, runner, spec, topology
from provision.providers import docker_engine

KUBERNETES = "1.37.2"
SKIP = ["cni", "dashboard", "verify"]
MACHINE_STEPS = ("create machines", "wait for SSH and record host keys", "check existing hosts")  # need a real API server (and GitHub for the CNI manifests)


@dataclass
class Layout:
    """What a cluster of N nodes is made of, and why."""

    topology: str
    control_planes: int
    workers: int
    etcd: int = 0
    endpoint: str | None = None
    etcd_mode: str = "stacked"

    @property
    def nodes(self) -> int:
        return self.control_planes + self.workers + self.etcd

    def describe(self) -> str:
        parts = [f"{self.control_planes} control plane(s)"]
        if self.etcd:
            parts.append(f"{self.etcd} external etcd")
        parts.append(f"{self.workers} worker(s)")
        text = f"{self.topology}: " + " + ".join(parts)
        return text + (f", endpoint {self.endpoint}" if self.endpoint else "")


def layout_for(n: int) -> Layout:
    """N=1 all-in-one; N=2..9 one control plane and workers behind a local haproxy on every node; N>=10 HA with
    3 control planes, 3 external etcd members and a local haproxy on every node (etcd and the endpoint run)."""
    if n < 1:
        raise SystemExit(f"--nodes {n}: at least 1")
    if n == 1:
        return Layout("all-in-one", 1, 0)
    if n < 10:
        return Layout("single-master", 1, n - 1, endpoint="local-proxy")
    return Layout("ha", 3, n - 6, etcd=3, endpoint="local-proxy", etcd_mode="external")


def spec_text(name: str, lay: Layout, artifacts: Path, extra_workers: int = 0) -> str:
    topo, workers = lay.topology, lay.workers + extra_workers
    if topo == "all-in-one" and workers:
        topo = "single-master"  # all-in-one is exactly one node: one more worker makes it a single-master
    lines = [
        "apiVersion: provision.dev/v1alpha1", "kind: Cluster", f"name: {name}", f"topology: {topo}",
        f'kubernetes: {{version: "{KUBERNETES}"}}', "provider: {type: docker}",
        f"nodes: {{controlPlanes: {lay.control_planes}, workers: {workers}, etcd: {lay.etcd}, loadBalancers: 0}}",
        f"etcd: {{mode: {lay.etcd_mode}, source: distro}}",
        # Debian 12's containerd, the only one here, is below every supported minor's floor: allowed explicitly
        "containerRuntime: {source: distro, allowUnsupportedVersion: true}",
        "dashboard: {type: none}",
        f"artifacts: {{mode: offline, dir: {artifacts}}}",
    ]
    if lay.endpoint:
        lines.append(f"endpoint: {{type: {lay.endpoint}}}")
    return "\n".join(lines) + "\n"


def check_plan(path: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "provision", "plan", "-f", str(path)], capture_output=True,
                          text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"`provision plan -f {path}` refused the benchmark's spec:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


# ---------------------------------------------------------------- SSH logins from each node's sshd journal


def _logins(node: str, since: float) -> int:
    proc = subprocess.run([docker_engine.docker_binary() or "docker", "exec", node, "journalctl", "-u", "ssh",
                           "-o", "short-unix", "--no-pager", "--since", f"@{int(since) - 1}"],
                          capture_output=True, text=True, check=False)
    count = 0
    for line in proc.stdout.splitlines():
        stamp, _, rest = line.partition(" ")
        try:
            when = float(stamp)
        except ValueError:
            continue
        count += when >= since and "Accepted publickey" in rest
    return count


def logins(nodes: list[str], since: float) -> dict[str, int]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(nodes, pool.map(lambda n: _logins(n, since), nodes), strict=True))


# ---------------------------------------------------------------- the floor


def _docker(*args: str, stdin: bytes | None = None) -> None:
    proc = subprocess.run([docker_engine.docker_binary() or "docker", *args], input=stdin, capture_output=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {proc.stderr.decode(errors='replace').strip()[-500:]}")


def _artifacts_tar(artifacts: Path) -> bytes:
    """The files kube_packages puts on a Kubernetes node, as one tar stream."""
    parts = [p for p in ("bin", "systemd", "cni", "images") if (artifacts / p).is_dir()]
    return subprocess.run(["tar", "-C", str(artifacts), "-cf", "-", *parts], capture_output=True, check=True).stdout


FLOOR_APT = ("set -e; printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; "
             "apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive "
             "apt-get install -y -q {recommends}{packages} >/dev/null; "
             "rm -f /usr/sbin/policy-rc.d")
FLOOR_UNPACK = ("set -e; cd /root/floor; install -m 0755 bin/* /usr/bin/; mkdir -p /etc/systemd/system/kubelet.service.d "
                "/opt/cni/bin; cp systemd/kubelet.service /etc/systemd/system/; "
                "cp systemd/10-kubeadm.conf /etc/systemd/system/kubelet.service.d/; tar -C /opt/cni/bin -xzf cni/*.tgz; "
                "if ls images/*.tar >/dev/null 2>&1; then systemctl start containerd; "
                "for i in images/*.tar; do ctr -n k8s.io images import \"$i\" >/dev/null; done; fi")


def floor_apt(names: list[str]) -> str:
    """The floor's apt transaction, with or without the Recommends as os_prep installs them."""
    recommends = "" if packages.os_prep_installs_recommends() else "--no-install-recommends "
    return FLOOR_APT.format(recommends=recommends, packages=" ".join(names))


def floor_node(node: str, names: list[str], tar: bytes | None) -> None:
    """One node's floor: one apt transaction with every package it needs, then the artifacts unpacked."""
    _docker("exec", node, "sh", "-c", floor_apt(names))
    if tar is not None:
        _docker("exec", node, "mkdir", "-p", "/root/floor")
        _docker("exec", "-i", node, "tar", "-C", "/root/floor", "-xf", "-", stdin=tar)
        _docker("exec", node, "sh", "-c", FLOOR_UNPACK)


def measure_floor(cluster: spec.Cluster, state_dir: Path, artifacts: Path) -> Phase:
    """On fresh nodes of the same layout, all nodes at once: what installing what each node needs costs alone."""
    topo = topology.build(cluster)
    lifecycle.up(cluster, state_dir, quiet, only=["machines", "ssh"])
    tar = _artifacts_tar(artifacts)
    k8s = set(topo.groups["k8s_cluster"])
    jobs = [(nd.name, packages.node_packages(topo, nd.name), tar if nd.name in k8s else None)
            for nd in topo.nodes]
    phase = Phase("floor")
    t0 = time.time()
    try:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            list(pool.map(lambda job: floor_node(*job), jobs))
    except Exception as exc:  # noqa: BLE001 - a failed phase is a result to report
        phase.ok, phase.error = False, f"{type(exc).__name__}: {exc}"[:2000]
    phase.seconds = round(time.time() - t0, 1)
    return phase


# ---------------------------------------------------------------- phases


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    ok: bool = True
    error: str = ""
    tasks: dict[str, int] = field(default_factory=dict)  # tasks executed per host
    changed: int = 0
    ssh: dict[str, int] = field(default_factory=dict)  # SSH logins per node during the phase
    steps: list[dict[str, Any]] = field(default_factory=list)  # `up`'s own per-step timings
    contacted_existing_workers: list[str] | None = None

    def summary(self) -> dict[str, Any]:
        per_host = list(self.tasks.values()) or [0]
        return {"tasks_total": sum(per_host), "tasks_per_host_max": max(per_host),
                "tasks_per_host_mean": round(sum(per_host) / len(per_host), 1),
                "ssh_total": sum(self.ssh.values()), "ssh_per_node_max": max(self.ssh.values() or [0])}


def merge_tasks(runs: list[runner.RunResult]) -> tuple[dict[str, int], int]:
    tasks: dict[str, int] = {}
    changed = 0
    for r in runs:
        for host, n in r.tasks.items():
            if host and host != "localhost":
                tasks[host] = tasks.get(host, 0) + n
        changed += sum(r.changed.values())
    return dict(sorted(tasks.items())), changed


def keep_events(state_dir: Path, since: float, dest: Path) -> None:
    """Copy the Ansible runs' artifacts (job events) that began after `since` to dest-1, dest-2, ..."""
    root = state_dir / "runner" / "artifacts"
    runs = sorted((p for p in root.iterdir() if p.stat().st_mtime >= since), key=lambda p: p.stat().st_mtime) \
        if root.is_dir() else []
    for k, run in enumerate(runs, 1):
        shutil.copytree(run, dest.with_name(f"{dest.name}-{k}"), dirs_exist_ok=True)


def measure(name: str, state_dir: Path, nodes: list[str], action: Callable[[], tuple[list[runner.RunResult],
                                                                                       list[dict[str, Any]]]],
            keep: Path | None = None) -> Phase:
    phase = Phase(name)
    runner.close_connections(state_dir)  # every login of this phase is then a new connection
    t0 = time.time()
    try:
        runs, steps = action()
        phase.tasks, phase.changed = merge_tasks(runs)
        phase.steps = steps
    except Exception as exc:  # noqa: BLE001 - a failed phase is a result to report, not a crash
        phase.ok = False
        phase.error = f"{type(exc).__name__}: {exc}"[:2000]
    phase.seconds = round(time.time() - t0, 1)
    runner.close_connections(state_dir)
    phase.ssh = logins(nodes, t0)
    if keep is not None:
        keep_events(state_dir, t0, keep)
    return phase


@dataclass
class SizeResult:
    nodes: int
    layout: str
    phases: list[Phase] = field(default_factory=list)
    error: str = ""
    floor: Phase | None = None

    def converge(self) -> float | None:
        """The cold run without making the machines and reaching them (the floor starts from reached machines)."""
        cold = next((p for p in self.phases if p.name == "cold" and p.ok), None)
        if cold is None:
            return None
        before = sum(s["seconds"] for s in cold.steps if s["phase"] in MACHINE_STEPS)
        return round(cold.seconds - before, 1)

    def target(self) -> float | None:
        """Issue #19's bound for the cold converge: 1.3 x the floor + 10 s."""
        return round(1.3 * self.floor.seconds + 10, 1) if self.floor and self.floor.ok else None


def quiet(_: str) -> None:
    pass


def bench_size(n: int, artifacts: Path, work: Path, prefix: str, profile: Path | None = None) -> SizeResult:
    lay = layout_for(n)
    name = f"{prefix}{n}"
    path, bigger = work / f"{name}.yaml", work / f"{name}-plus1.yaml"
    path.write_text(spec_text(name, lay, artifacts))
    bigger.write_text(spec_text(name, lay, artifacts, extra_workers=1))
    check_plan(path)
    check_plan(bigger)
    cluster, cluster_plus = spec.load_spec(path), spec.load_spec(bigger)
    topo, topo_plus = topology.build(cluster), topology.build(cluster_plus)
    names = [nd.name for nd in topo.nodes]
    all_names = [nd.name for nd in topo_plus.nodes]
    state_dir = lifecycle.state_dir_for(cluster, str(work / "state" / name))
    result = SizeResult(n, lay.describe())
    print(f"== N={n}: {lay.describe()}", file=sys.stderr, flush=True)

    def up() -> tuple[list[runner.RunResult], list[dict[str, Any]]]:
        report = lifecycle.up(cluster, state_dir, quiet, skip=SKIP)
        return report.runs, lifecycle.summary_rows(report)

    def add() -> tuple[list[runner.RunResult], list[dict[str, Any]]]:
        report = day2.add_nodes(cluster_plus, state_dir, quiet)
        return report.runs, []

    floor_path = work / f"{name}f.yaml"
    floor_path.write_text(spec_text(f"{name}f", lay, artifacts))
    floor_cluster = spec.load_spec(floor_path)
    floor_state = lifecycle.state_dir_for(floor_cluster, str(work / "state" / f"{name}f"))
    try:
        result.floor = measure_floor(floor_cluster, floor_state, artifacts)
        print(f"   floor: {result.floor.seconds} s" + ("" if result.floor.ok else f" FAILED {result.floor.error}"),
              file=sys.stderr, flush=True)
    finally:
        lifecycle.destroy(floor_cluster, floor_state, quiet)
    try:
        for label, action, nodes in (("cold", up, names), ("noop", up, names), ("add", add, all_names)):
            phase = measure(label, state_dir, nodes, action, profile / f"N{n}-{label}" if profile else None)
            if label == "add":
                existing = [w for w in topo.groups["workers"] if w not in topo.groups["control_plane"]]
                phase.contacted_existing_workers = sorted(w for w in existing if phase.ssh.get(w))
            result.phases.append(phase)
            print(f"   {label}: {phase.seconds} s, {phase.summary()['ssh_total']} SSH login(s)"
                  + ("" if phase.ok else f" FAILED {phase.error}"), file=sys.stderr, flush=True)
            if not phase.ok:
                break
    finally:
        try:
            lifecycle.destroy(cluster_plus, state_dir, quiet)
        except Exception:  # noqa: BLE001 - keep going: report the figures, say what was left
            result.error = "destroy failed: " + traceback.format_exc(limit=1)
    return result


# ---------------------------------------------------------------- output


def machine() -> dict[str, Any]:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    os_name = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "memory_mib": mem, "os": os_name, "kernel": platform.release(),
            "python": platform.python_version(), "nodes": "Docker systemd container nodes"}


def table(results: list[SizeResult]) -> str:
    head = ["N", "phase", "seconds", "tasks/host (mean, max)", "changed", "SSH logins (total, max/node)", "notes"]
    rows = [head]
    for r in results:
        if r.floor is not None:
            rows.append([str(r.nodes), "floor", f"{r.floor.seconds:.1f}", "", "", "",
                         "one apt transaction per node, all at once, + artifacts" if r.floor.ok else "FAILED"])
        for p in r.phases:
            s = p.summary()
            notes = "" if p.ok else "FAILED"
            if p.name == "cold" and r.converge() is not None:
                notes = f"converge {r.converge()} s" + (f" (target <= {r.target()})" if r.target() else "")
            if p.contacted_existing_workers is not None:
                notes = (f"existing workers contacted: {', '.join(p.contacted_existing_workers)}"
                         if p.contacted_existing_workers else "no existing worker contacted")
            rows.append([str(r.nodes), p.name, f"{p.seconds:.1f}",
                         f"{s['tasks_per_host_mean']}, {s['tasks_per_host_max']}", str(p.changed),
                         f"{s['ssh_total']}, {s['ssh_per_node_max']}", notes])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", default="1,3,10,30", help="comma-separated cluster sizes (default 1,3,10,30)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    parser.add_argument("--prefix", default="bench", help="cluster name prefix (default bench)")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="keep each phase's Ansible job events in DIR (N<nodes>-<phase>-<run>/) for "
                             "bench/profile.py, which prints where the time went per task")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.nodes.split(",") if s.strip()]
    from tests.doubles.artifacts import build as build_artifacts  # the test doubles live in the repository

    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="provision-bench-") as tmp:
        work = Path(tmp)
        artifacts = build_artifacts(work / "artifacts", KUBERNETES)
        for n in sizes:
            layout_for(n)  # refuse a bad size before any node is made
        for n in sizes:
            results.append(bench_size(n, artifacts, work, args.prefix, args.profile))
    out = {"machine": machine(), "kubernetes": KUBERNETES + " (test doubles)", "skipped_steps": SKIP,
           "sizes": [{"nodes": r.nodes, "layout": r.layout, "error": r.error,
                      "floor": asdict(r.floor) if r.floor else None, "converge_seconds": r.converge(),
                      "target_seconds": r.target(),
                      "phases": [{**asdict(p), **p.summary()} for p in r.phases]} for r in results]}
    print(table(results))
    for r in results:
        print(f"N={r.nodes}: {r.layout}" + (f" ({r.error})" if r.error else ""))
        for p in r.phases:
            if not p.ok:
                print(f"N={r.nodes} {p.name} failed: {p.error}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out) if not args.json else f"JSON written to {args.json}")
    bad = [p for r in results for p in r.phases if not p.ok or p.contacted_existing_workers]
    bad_sizes = [r for r in results if r.error or len(r.phases) < 3 or not (r.floor and r.floor.ok)]
    return 1 if bad or bad_sizes else 0


if __name__ == "__main__":
    sys.exit(main())

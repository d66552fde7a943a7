"""Smoke check of bench/cluster.py: its smallest case (one all-in-one node) once, on real systemd nodes.

Not a timed test: it checks that the benchmark runs from its one command and reports every field with sane
values (a no-op re-run changes nothing, adding a worker contacts no existing worker), never how fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import docker_out

pytestmark = pytest.mark.nodes
ROOT = Path(__file__).resolve().parent.parent


def test_cluster_bench_smallest_case(need_nodes: None, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    profile = tmp_path / "profile"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "cluster.py"), "--nodes", "1", "--json", str(out),
                           "--prefix", "ptbench", "--profile", str(profile)],
                          capture_output=True, text=True, check=False, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| N | phase" in proc.stdout and "no existing worker contacted" in proc.stdout, proc.stdout

    data = json.loads(out.read_text())
    assert data["machine"]["cpus"] >= 1 and data["machine"]["memory_mib"] > 0
    [size] = data["sizes"]
    assert size["nodes"] == 1 and size["layout"].startswith("all-in-one") and not size["error"]
    phases = {p["name"]: p for p in size["phases"]}
    assert list(phases) == ["cold", "noop", "add"]
    assert size["floor"]["ok"] and size["floor"]["seconds"] > 0, size["floor"]
    assert 0 < size["converge_seconds"] < phases["cold"]["seconds"]
    assert size["target_seconds"] == round(1.3 * size["floor"]["seconds"] + 10, 1)
    assert "| 1 | floor" in proc.stdout
    node = "ptbench1-cp1"
    for name, p in phases.items():
        assert p["ok"], p["error"]
        assert p["seconds"] > 0
        assert p["tasks_total"] == sum(p["tasks"].values()) and p["tasks_per_host_max"] >= p["tasks_per_host_mean"]
        assert p["ssh_total"] == sum(p["ssh"].values()) >= 1, f"{name}: no SSH login counted"
    assert set(phases["cold"]["tasks"]) == {node} and phases["cold"]["changed"] > 0
    assert phases["cold"]["steps"] and all(s["seconds"] >= 0 for s in phases["cold"]["steps"])
    assert phases["noop"]["changed"] == 0, phases["noop"]
    assert all(s["outcome"] in ("done", "ok, 0 change(s)") for s in phases["noop"]["steps"]), phases["noop"]["steps"]
    add = phases["add"]
    assert add["contacted_existing_workers"] == []  # all-in-one has no worker: the check is trivially empty here
    assert "ptbench1-w1" in add["tasks"] and add["ssh"].get("ptbench1-w1", 0) >= 1
    assert add["changed"] > 0

    # --profile kept the cold run's job events; bench/profile.py reads them into one line per task
    [cold_run] = sorted(profile.glob("N1-cold-*"))
    listing = subprocess.run([sys.executable, str(ROOT / "bench" / "profile.py"), str(cold_run), "--min", "0"],
                             capture_output=True, text=True, check=True).stdout
    assert "Prepare the OS: Install the packages kubeadm needs" in listing, listing
    assert "Kubernetes packages: Unpack the archive at the node's /" in listing, listing

    left = docker_out("ps", "-a", "--filter", "name=ptbench1", "--format", "{{.Names}}").split()
    assert left == [], f"the benchmark left nodes behind: {left}"


def test_cpu_summary_groups_by_command_and_the_parent_alive_at_its_start() -> None:
    """bench/cpu.py: PIDs are reused, so a process's parent is the one of that PID alive when it started."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import cpu
    finally:
        sys.path.pop(0)

    def line(cmd: str, cpu_ticks: int, elapsed: int, pid: int, ppid: int, start: str, flags: str = "") -> str:
        return (f"{cmd:<16}|v3|{cpu_ticks:9.2f}|     0.00|{elapsed:9.2f}|     0|     0|  1000.00|     0.00|"
                f"{pid:8d}|{ppid:8d}|{flags:<5}|       0|__      |Tue Dec  1 {start} 2026")
    text = "\n".join([
        line("sshd", 10, 100000, 50, 1, "20:00:00"),
        line("sh", 5, 500, 60, 50, "20:00:10"),
        line("python3", 300, 400, 61, 60, "20:00:11"),
        line("bash", 5, 500, 60, 1, "20:30:00"),  # pid 60 again, half an hour later
        line("python3", 100, 400, 62, 60, "20:30:01"),
        line("ansible-playboo", 200, 300, 70, 1, "20:40:00", "F"),
    ])
    lines = cpu.summary(cpu.parse(text), top=10, depth=2)
    assert lines[0].startswith("0.1 CPU-minutes in 6 processes")
    rows = {row.split(None, 3)[3]: float(row.split()[0]) for row in lines[2:]}
    assert rows["python3 < sh < sshd"] == 0.05 and rows["python3 < bash"] == round(100 / 100 / 60, 2)
    assert "ansible-playboo*" in rows

"""Faults in the middle of `provision up`, on real nodes: a node killed while a step runs, and Ctrl-C.

A 3-node single-master cluster with the kubeadm/kubectl/kubelet TEST DOUBLES (tests/doubles/; no real binaries
can be had here). The first `up` loses a worker (its container is killed) while containerd is being set up: it
must fail with one error naming that node and the step. The second `up` (which starts the node again) is
interrupted with SIGINT, as Ctrl-C does, while it installs Kubernetes: it must stop at once with exit 130, leave
no Ansible process behind, and say how to continue. The third `up` finishes: kubeadm init ran once and every
node joined once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NODE_CONTAINERD, docker_out
from tests.doubles.artifacts import build as build_artifacts

pytestmark = pytest.mark.nodes
NAME = "pt-fault"
CP1, W1, W2 = f"{NAME}-cp1", f"{NAME}-w1", f"{NAME}-w2"


def records(node: str) -> list[dict[str, Any]]:
    proc = subprocess.run(["/usr/bin/docker", "exec", node, "cat", "/var/log/provision-doubles/kubeadm.jsonl"],
                          capture_output=True, text=True, check=False)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def up_until(args: list[str], marker: str, action: Any, timeout: float = 900) -> tuple[int, str]:
    """Start `provision up`, run `action(proc)` once `marker` shows on its stderr, and return (exit, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "provision", "up", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    fired = False
    for line in proc.stderr:
        lines.append(line)
        if not fired and marker in line:
            action(proc)
            fired = True
        if time.monotonic() > deadline:
            proc.kill()
            break
    proc.wait(timeout=120)
    assert fired, f"never saw {marker!r}:\n{''.join(lines)[-3000:]}"
    return proc.returncode, "".join(lines)


def ansible_processes(state: Path) -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "ansible-playbook" in line and str(state) in line]


def test_killed_node_then_ctrl_c_then_a_rerun_finishes(need_nodes: None, tmp_path: Path) -> None:
    artifacts = build_artifacts(tmp_path / "artifacts", "1.37.2")
    path = tmp_path / "c.yaml"
    path.write_text(f"apiVersion: provision.dev/v1alpha1\nkind: Cluster\nname: {NAME}\ntopology: single-master\n"
                    "nodes: {controlPlanes: 1, workers: 2}\ndashboard: {type: none}\n" + NODE_CONTAINERD +
                    f"artifacts: {{mode: offline, dir: {artifacts}}}\n")
    state = tmp_path / "state"
    args = ["-f", str(path), "--state-dir", str(state), "--skip", "cni", "--skip", "verify"]
    try:
        # 1. a worker dies while containerd is set up: one clear error naming it and the step
        rc, err = up_until(args, "containerd (systemd cgroup driver)",
                           lambda _: docker_out("kill", W2))
        assert rc == 1, err[-3000:]
        error = err[err.index("error: "):]
        assert "step 'containerd (systemd cgroup driver)' failed" in error, error
        assert W2 in error and "unreachable" in error, error
        assert CP1 not in error.split("failed:", 1)[1], error  # only the node that died is named
        assert f"provision logs -f {path}" in error, error  # where to look next
        assert not ansible_processes(state)

        # 2. Ctrl-C (SIGINT to the process group, as a terminal sends it) while Kubernetes is installed
        rc, err = up_until(args, "kubeadm, kubelet, kubectl",
                           lambda p: (time.sleep(2), os.killpg(p.pid, signal.SIGINT)))
        assert rc == 130, err[-3000:]
        assert "interrupted" in err and "run the command again" in err, err[-2000:]
        assert "Traceback" not in err, err[-3000:]
        time.sleep(2)
        assert not ansible_processes(state), "an Ansible run outlived Ctrl-C"

        # 3. the next run picks up: init once, every node joined once, 0 changes on a further run
        done = subprocess.run([sys.executable, "-m", "provision", "up", *args], capture_output=True, text=True,
                              check=False, timeout=1500)
        assert done.returncode == 0, done.stderr[-3000:]
        assert [r["argv"][0] for r in records(CP1) if r.get("result") == "initialized"] == ["init"]
        for worker in (W1, W2):
            assert len([r for r in records(worker) if r.get("result") == "joined"]) == 1, worker
    finally:
        subprocess.run([sys.executable, "-m", "provision", "destroy", "-f", str(path), "--state-dir", str(state)],
                       capture_output=True, check=False, timeout=600)

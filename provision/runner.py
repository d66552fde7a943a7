"""Runner: run one playbook against the rendered inventory with ansible-runner, and report as it goes.

Ansible is tuned here, once, for every playbook: pipelining, SSH ControlPersist, pinned host keys
(StrictHostKeyChecking=yes against the state dir's known_hosts), a fact cache, forks sized to the node count,
and a fixed Python interpreter so no discovery round trip is made.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from provision.inventory import Connection
from provision.paths import PLAYBOOKS, ROLES


@dataclass
class HostFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False

    def line(self) -> str:
        kind = "unreachable" if self.unreachable else "failed"
        return f"{self.host}: {kind} at task '{self.task}': {self.message}"


@dataclass
class RunResult:
    playbook: str
    ok: bool
    status: str
    failures: list[HostFailure] = field(default_factory=list)
    changed: dict[str, int] = field(default_factory=dict)  # changed tasks per host, from Ansible's own stats
    tasks: dict[str, int] = field(default_factory=dict)  # tasks executed per host (ok + changed + failed)
    changed_tasks: list[tuple[str, str]] = field(default_factory=list)  # (host, task)
    failed_hosts: set[str] = field(default_factory=set)


Progress = Callable[[str, dict[str, Any]], None]


def ssh_args(known_hosts: Path, jump: Connection | None = None) -> str:
    args = [
        "-o", "ControlMaster=auto", "-o", "ControlPersist=120s",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
        "-o", "ConnectTimeout=15",
    ]
    if jump is not None:
        inner = ["ssh", "-W", "%h:%p", "-p", str(jump.port), "-o", f"UserKnownHostsFile={known_hosts}",
                 "-o", "StrictHostKeyChecking=yes"]
        if jump.key:
            inner += ["-i", jump.key, "-o", "IdentitiesOnly=yes"]
        inner.append(f"{jump.user}@{jump.host}")
        args += ["-o", "ProxyCommand=" + " ".join(shlex.quote(a) for a in inner)]
    return " ".join(shlex.quote(a) for a in args)


def environment(state_dir: Path, nodes: int, jump: Connection | None = None) -> dict[str, str]:
    return {
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": ssh_args(state_dir / "known_hosts", jump),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(max(5, min(50, nodes))),
        "ANSIBLE_GATHERING": "smart",
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(state_dir / "facts"),
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_TIMEOUT": "30",
    }


def run_playbook(state_dir: Path, playbook: str, nodes: int, progress: Progress | None = None,
                 extravars: dict[str, Any] | None = None, limit: str | None = None,
                 jump: Connection | None = None) -> RunResult:
    """Run playbooks/<playbook> against <state>/inventory and collect what happened per host."""
    result = RunResult(playbook=playbook, ok=False, status="")

    def on_event(event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host = data.get("host", "")
        task = data.get("task", "")
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            result.tasks[host] = result.tasks.get(host, 0) + 1
        if kind == "runner_on_ok" and data.get("res", {}).get("changed"):
            result.changed_tasks.append((host, task))  # no_log results hide `changed`: stats below count all
        if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res", {})
            msg = res.get("msg") or res.get("stderr") or res.get("reason") or "no message"
            if "censored" in str(res):
                msg = "hidden (no_log); re-run with the task's secret-free check to see more"
            result.failures.append(HostFailure(host, task, " ".join(str(msg).split())[:400],
                                               kind == "runner_on_unreachable"))
        if kind == "playbook_on_stats":
            result.failed_hosts |= set(data.get("failures", {})) | set(data.get("dark", {}))
            result.changed = {h: int(n) for h, n in (data.get("changed") or {}).items() if n}
        if progress is not None:
            progress(kind, data)
        return True

    private = state_dir / "runner"
    private.mkdir(parents=True, exist_ok=True)
    os.chmod(private, 0o700)
    env = environment(state_dir, nodes, jump)
    r = ansible_runner.run(
        private_data_dir=str(private),
        project_dir=str(PLAYBOOKS),
        playbook=str(PLAYBOOKS / playbook),
        inventory=str(state_dir / "inventory" / "hosts.yml"),
        envvars=env,
        extravars=extravars or {},
        limit=limit,
        event_handler=on_event,
        quiet=True,
        rotate_artifacts=3,
        suppress_env_files=True,
    )
    result.status = r.status
    # A failure a block's rescue handled is not the host's failure; of a host's failures the last says most.
    last: dict[str, HostFailure] = {}
    for failure in result.failures:
        if failure.host in result.failed_hosts:
            last[failure.host] = failure
    result.failures = list(last.values())
    result.ok = r.status == "successful" and not result.failures
    if r.status != "successful" and not result.failures:
        tail = (r.stdout.read() if r.stdout else "").strip().splitlines()[-5:]
        result.failures.append(HostFailure("localhost", playbook, " | ".join(tail) or r.status))
    return result

"""Runner: run one playbook against the rendered inventory with ansible-runner, and report as it goes.

Ansible is tuned here, once, for every playbook: pipelining, SSH ControlPersist, pinned host keys
(StrictHostKeyChecking=yes against the state dir's known_hosts), a fact cache kept in the state dir across runs
(a machine made anew has its facts dropped: `forget_facts`), forks sized to the node count, and a fixed Python
interpreter so no discovery round trip is made.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
import yaml

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
    unreached: set[str] = field(default_factory=set)  # hosts a task could not reach (ignore_unreachable included)

    def failure_lines(self) -> str:
        """One indented line per failed host, for an error message."""
        return "\n  ".join(f.line() for f in self.failures)


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


def control_dir(state_dir: Path) -> Path:
    """Where this cluster's SSH master connections live: one directory per cluster (short, as socket paths are
    limited to about 100 bytes), so closing one cluster's connections never touches another's."""
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return Path.home() / ".ansible" / "cp" / digest


def close_connections(state_dir: Path) -> int:
    """Close the cluster's persistent SSH connections (ControlPersist); returns how many were open."""
    closed = 0
    directory = control_dir(state_dir)
    for sock in directory.glob("*") if directory.is_dir() else []:
        proc = subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "provision-close"],
                              capture_output=True, check=False, timeout=10)
        closed += proc.returncode == 0
        sock.unlink(missing_ok=True)
    return closed


def facts_dir(state_dir: Path) -> Path:
    """Where Ansible's fact cache (jsonfile) keeps the nodes' facts between runs."""
    return state_dir / "facts"


def forget_facts(state_dir: Path, nodes: Iterable[str]) -> None:
    """Drop the cached facts of these nodes (a machine made anew, or one that left the cluster)."""
    cache = facts_dir(state_dir)
    names = set(nodes)
    if cache.is_dir():
        for path in cache.iterdir():  # ansible-core names each file by host, perhaps after a prefix and "_"
            if path.name in names or path.name.split("_", 1)[-1] in names:
                path.unlink(missing_ok=True)


def environment(state_dir: Path, nodes: int, jump: Connection | None = None) -> dict[str, str]:
    return {
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir(state_dir)),
        "ANSIBLE_ROLES_PATH": str(ROLES),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": ssh_args(state_dir / "known_hosts", jump),
        "ANSIBLE_PIPELINING": "True",
        # no terminal for `raw` reads: their stdout stays apart from stderr (pipelining already rules out
        # sudo's requiretty)
        "ANSIBLE_SSH_USETTY": "False",
        "ANSIBLE_FORKS": str(max(5, min(50, nodes))),
        "ANSIBLE_GATHERING": "smart",
        # facts only as ansible_facts.*: copying every fact to a top-level ansible_* variable costs each task on each
        # host a pass over the facts (clean_facts, 6 % of ansible-playbook's own time in a 30-node no-op); the roles
        # and playbooks read ansible_facts (tests/test_lint.py holds them to it)
        "ANSIBLE_INJECT_FACT_VARS": "False",
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_TIMEOUT": "30",
    }


class _Collector:
    """Turns ansible-runner events into RunResults: one per step when marker plays split the run."""

    def __init__(self, first: str, progress: Progress | None, began: Callable[[str], None] | None = None) -> None:
        self.results: dict[str, RunResult] = {}
        self.order: list[str] = []
        self.current = self._start(first)
        self.progress = progress
        self.began = began
        self.last: dict[str, tuple[str, HostFailure | None]] = {}  # host -> (step, failure of its last task)
        self.last_failure: dict[str, tuple[str, HostFailure]] = {}  # host -> (step, its latest failure)
        self.stats_failed: set[str] | None = None  # failed or unreachable hosts, from Ansible's closing stats
        self.begun: set[str] = set()
        self.censored_items_changed: set[tuple[str, str]] = set()  # (host, task uuid) of no_log loops

    def _start(self, name: str) -> RunResult:
        result = RunResult(playbook=name, ok=False, status="")
        self.results[name] = result
        self.order.append(name)
        return result

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host = data.get("host", "")
        task = str(data.get("task", ""))
        play = str(data.get("play", ""))
        self._restore_censored_changed(kind, data, str(event.get("stdout", "")))
        if play.startswith(MARKER):  # the step boundaries themselves: neither work nor progress
            step = play[len(MARKER):]
            if kind == "runner_on_ok" and task.endswith(MARKER_BEGINS) and step not in self.begun:
                self.begun.add(step)
                self.current = self.results.get(step) or self._start(step)
                if self.began is not None:
                    self.began(step)
            return True
        result = self.current
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"):
            if kind != "runner_on_skipped":
                result.tasks[host] = result.tasks.get(host, 0) + 1
            if kind == "runner_on_unreachable":
                result.unreached.add(host)
            failure = None
            if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                res = data.get("res", {})
                msg = res.get("msg") or res.get("stderr") or res.get("reason") or "no message"
                if msg == "non-zero return code" and (res.get("stderr") or res.get("stdout")):
                    msg = f"exit {res.get('rc')}: " + (res.get("stderr") or res.get("stdout") or "").strip()[-300:]
                if "censored" in str(res):
                    msg = "hidden (no_log); re-run with the task's secret-free check to see more"
                failure = HostFailure(host, task, " ".join(str(msg).split())[:400], kind == "runner_on_unreachable")
                result.failures.append(failure)
                self.last_failure[host] = (result.playbook, failure)
            self.last[host] = (result.playbook, failure)
        if kind == "runner_on_ok" and data.get("res", {}).get("changed"):
            result.changed_tasks.append((host, task))
            result.changed[host] = result.changed.get(host, 0) + 1
        if kind == "playbook_on_stats":
            self.stats_failed = set(data.get("failures", {})) | set(data.get("dark", {}))
        if self.progress is not None:
            self.progress(kind, data)
        return True

    def _restore_censored_changed(self, kind: str, data: dict[str, Any], stdout: str) -> None:
        """ansible-runner's event callback replaces a no_log task's whole result with {"censored": ...}, dropping
        the `changed` Ansible keeps (ansible_runner/display_callback/callback/awx_display.py, capture_event_data);
        Ansible's own display line for the event still says it: `changed: [host]`, per item in a loop."""
        res = data.get("res")
        if not isinstance(res, dict) or "censored" not in res or "changed" in res:
            return
        key = (str(data.get("host", "")), str(data.get("task_uuid", "")))
        said = ANSI.sub("", stdout).lstrip().startswith("changed:")
        if kind == "runner_item_on_ok" and said:
            self.censored_items_changed.add(key)
        elif kind == "runner_on_ok":
            res["changed"] = said or key in self.censored_items_changed

    def finish(self, status: str, stdout_tail: str) -> list[RunResult]:
        # A host whose failure a block's rescue handled goes on running tasks, and so does one whose failure is
        # followed by the block's `always` tasks: Ansible's closing stats say which hosts failed, and a failed
        # host's failure is its latest one. Without stats (the run was cut short), a failure counts only when it
        # was the host's last task.
        for result in self.results.values():
            result.status = status
            if self.stats_failed is not None:
                result.failures = [f for f in result.failures if f.host in self.stats_failed
                                   and self.last_failure.get(f.host) == (result.playbook, f)]
            else:
                result.failures = [f for f in result.failures
                                   if self.last.get(f.host, ("", None)) == (result.playbook, f)]
            result.failed_hosts = {f.host for f in result.failures}
            result.ok = not result.failures
        failed_any = any(r.failures for r in self.results.values())
        if status != "successful" and not failed_any:
            last = self.results[self.order[-1]]
            last.failures.append(HostFailure("localhost", last.playbook, stdout_tail or status))
            last.ok = False
        return [self.results[n] for n in self.order]


MARKER = "provision step "
MARKER_BEGINS = ": begins"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def steps_playbook(steps: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """One playbook for several steps: before each step's playbook a marker play of one local check (run once)
    that says where the run is (its events carry the step's id) and stops the whole run when an earlier step
    lost a host (a failed run_once task fails every host of the play, and Ansible ends a run once no host is
    left), as separate runs would."""
    plays: list[dict[str, Any]] = []
    for step_id, playbook in steps:
        plays.append({
            "name": MARKER + step_id, "hosts": "all:localhost", "gather_facts": False, "become": False,
            "tasks": [
                {"name": MARKER + step_id + MARKER_BEGINS,
                 "ansible.builtin.assert": {
                     "that": "ansible_play_hosts | length == ansible_play_hosts_all | length",
                     "fail_msg": "an earlier step failed on a host: stopping", "quiet": True},
                 # one check, not one per host (a failed run_once task ends the run for every host)
                 "run_once": True},
            ]})
        plays.append({"ansible.builtin.import_playbook": str(PLAYBOOKS / playbook)})
    return plays


class _Interrupt:
    """Ctrl-C (SIGINT) or SIGTERM while Ansible runs. Ansible runs in a session of its own (ansible-runner spawns
    it so), so a terminal's Ctrl-C never reaches it: pass the SIGINT on, which lets Ansible stop its workers and
    exit; should it not within GRACE seconds, ansible-runner kills it (`cancel`). Ansible's workers sit in
    sessions of their own too, so any left after a kill are found by their command line and killed (`reap`)."""

    GRACE = 10.0

    def __init__(self, inventory: str) -> None:
        self.inventory = inventory
        self.requested_at: float | None = None

    def handler(self, signum: int, frame: object) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
            for pid in self._ansible(children_only=True):
                _signal(pid, signal.SIGINT)

    def cancel(self) -> bool:
        return self.requested_at is not None and time.monotonic() - self.requested_at > self.GRACE

    def reap(self) -> None:
        for pid in self._ansible(children_only=False):
            _signal(pid, signal.SIGKILL)

    def _ansible(self, children_only: bool) -> list[int]:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            text = [a.decode(errors="replace") for a in args]
            if not any(a.endswith("ansible-playbook") for a in text) or self.inventory not in text:
                continue
            if not children_only or ppid == os.getpid():
                found.append(int(proc.name))
        return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _run(state_dir: Path, playbook: Path, collector: _Collector, nodes: int, extravars: dict[str, Any] | None,
         limit: str | None, jump: Connection | None) -> tuple[str, str]:
    private = state_dir / "runner"
    private.mkdir(parents=True, exist_ok=True)
    os.chmod(private, 0o700)
    env = environment(state_dir, nodes, jump)
    inventory = state_dir / "inventory" / "hosts.yml"
    interrupt = _Interrupt(str(inventory))
    previous = {sig: signal.signal(sig, interrupt.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        r = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(PLAYBOOKS),
            playbook=str(playbook),
            inventory=str(inventory),
            envvars=env,
            extravars=extravars or {},
            limit=limit,
            event_handler=collector,
            cancel_callback=interrupt.cancel,
            quiet=True,
            rotate_artifacts=3,
            # ansible-runner points the fact cache into each run's artifacts by default (so every run gathered
            # facts again): keep it in the state dir, where the next run finds it (an absolute path wins)
            fact_cache=str(facts_dir(state_dir)),
            fact_cache_type="jsonfile",
            suppress_env_files=True,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if interrupt.requested_at is not None:
        interrupt.reap()
        raise KeyboardInterrupt
    tail = (r.stdout.read() if r.stdout else "").strip().splitlines()[-5:]
    return str(r.status), " | ".join(tail)


def run_steps(state_dir: Path, steps: list[tuple[str, str]], nodes: int, progress: Progress | None = None,
              began: Callable[[str], None] | None = None, jump: Connection | None = None,
              limit: str | None = None, extravars: dict[str, Any] | None = None) -> list[RunResult]:
    """Run several steps' playbooks (step id, playbook) in ONE ansible-playbook run, which saves the start of
    Ansible per step. Returns one RunResult per step that began (its `playbook` is the step id); `began(step)`
    is called as each step starts, once every earlier step has finished on every host. `limit` restricts every
    step to those hosts, as Ansible's --limit."""
    if not steps:
        return []
    combined = state_dir / "runner" / "up-steps.yml"
    combined.parent.mkdir(parents=True, exist_ok=True)
    combined.write_text(yaml.safe_dump(steps_playbook(steps), sort_keys=False))
    collector = _Collector(steps[0][0], progress, began)
    status, tail = _run(state_dir, combined, collector, nodes, extravars, limit, jump)
    return collector.finish(status, tail)


def run_playbook(state_dir: Path, playbook: str, nodes: int, progress: Progress | None = None,
                 extravars: dict[str, Any] | None = None, limit: str | None = None,
                 jump: Connection | None = None) -> RunResult:
    """Run playbooks/<playbook> against <state>/inventory and collect what happened per host."""
    collector = _Collector(playbook, progress)
    status, tail = _run(state_dir, PLAYBOOKS / playbook, collector, nodes, extravars, limit, jump)
    return collector.finish(status, tail)[0]

"""Live progress of `provision up` from ansible-runner events: the task, how many hosts are done, what changed.

One line per finished task (`    Install haproxy  2/2 hosts, 1 changed`), failures and warnings as they happen,
and the messages a playbook addresses to the user (tasks named "Dashboard access" or "Warning ...") kept for
the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Print = Callable[[str, str], None]  # (text, style)

USER_TASKS = ("Dashboard access",)


@dataclass
class TaskProgress:
    emit: Print
    task: str = ""
    started: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    changed: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        host = str(data.get("host", ""))
        if kind in ("playbook_on_task_start", "playbook_on_play_start", "playbook_on_stats"):
            self._finish_task()
            if kind == "playbook_on_task_start":
                self.task = str(data.get("task", ""))
        elif kind == "runner_on_start":
            self.started.add(host)
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"):
            self.done.add(host)
            res = data.get("res", {}) or {}
            if kind == "runner_on_skipped":
                self.skipped += 1
            elif kind == "runner_on_ok":
                self.changed += bool(res.get("changed"))
                self._user_message(str(data.get("task", "")), res)
            elif not data.get("ignore_errors"):
                what = "unreachable" if kind == "runner_on_unreachable" else "failed"
                self.emit(f"    ! {host}: {what} at '{data.get('task', '')}'", "red")

    def _user_message(self, task: str, res: dict[str, Any]) -> None:
        msg = res.get("msg")
        if not isinstance(msg, str) or not msg:
            return
        if task.startswith("Warning"):
            if msg not in self.warnings:
                self.warnings.append(msg)
                self.emit(f"    warning: {msg}", "yellow")
        elif task in USER_TASKS and msg not in self.notes:
            self.notes.append(msg)

    def _finish_task(self) -> None:
        if self.task and self.task != "Gathering Facts" and self.done and self.skipped < len(self.done):
            hosts = len(self.done)
            changed = f", {self.changed} changed" if self.changed else ""
            self.emit(f"    {self.task}  {hosts}/{max(hosts, len(self.started))} hosts{changed}", "dim")
        self.task, self.changed, self.skipped = "", 0, 0
        self.started, self.done = set(), set()

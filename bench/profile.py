"""Where an Ansible run's time went, per task, from ansible-runner's job events.

    python bench/profile.py ARTIFACTS_DIR [--min SECONDS]

ARTIFACTS_DIR is one run's directory under a state dir's runner/artifacts/ (or a copy: bench/cluster.py
--profile DIR keeps one per phase). Prints one line per task that took at least --min seconds (default 0.5):
when it started (seconds from the run's start), how long from its first host starting to its last host ending,
how many hosts ran it, its play and its name. Under the free strategy each include makes a task of its own per
host group, so a task can appear more than once.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class TaskTime:
    name: str
    play: str
    start: float
    end: float = 0.0
    hosts: int = 0

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start) if self.end else 0.0


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def events(artifacts: Path) -> list[dict[str, Any]]:
    out = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
    return sorted(out, key=lambda e: e.get("counter", 0))


def task_times(evs: list[dict[str, Any]]) -> tuple[float, float, list[TaskTime]]:
    """The run's start, its length, and each task's span over the hosts that ran it (not the skipped ones)."""
    tasks: dict[str, TaskTime] = {}
    start = next((_stamp(e["created"]) for e in evs if e["event"] == "playbook_on_start"), 0.0)
    end = next((_stamp(e["created"]) for e in evs if e["event"] == "playbook_on_stats"), start)
    for e in evs:
        data = e.get("event_data", {})
        if e["event"] == "playbook_on_task_start":
            tasks.setdefault(data["task_uuid"], TaskTime(data.get("task", ""), data.get("play", ""),
                                                         _stamp(e["created"])))
        elif e["event"] in ("runner_on_ok", "runner_on_failed") and data.get("end") and "task_uuid" in data:
            task = tasks.setdefault(data["task_uuid"], TaskTime(data.get("task", ""), data.get("play", ""),
                                                                _stamp(data["start"])))
            task.end = max(task.end, _stamp(data["end"]))
            task.hosts += 1
    return start, end - start, sorted(tasks.values(), key=lambda t: t.start)


def report(artifacts: Path, minimum: float = 0.5) -> str:
    start, length, tasks = task_times(events(artifacts))
    lines = [f"{artifacts}: {length:.1f} s, {len(tasks)} task(s); those of at least {minimum} s:",
             f"{'start':>7} {'seconds':>7} {'hosts':>5}  play: task"]
    for t in tasks:
        if t.seconds >= minimum:
            lines.append(f"{t.start - start:7.1f} {t.seconds:7.1f} {t.hosts:5d}  {t.play[:30]}: {t.name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("artifacts", type=Path, help="one run's directory under <state dir>/runner/artifacts/")
    parser.add_argument("--min", type=float, default=0.5, help="the shortest task to list, in seconds")
    args = parser.parse_args(argv)
    if not (args.artifacts / "job_events").is_dir():
        print(f"{args.artifacts} has no job_events/: give one run's directory under <state dir>/runner/artifacts/",
              file=sys.stderr)
        return 2
    print(report(args.artifacts, args.min))
    return 0


if __name__ == "__main__":
    sys.exit(main())

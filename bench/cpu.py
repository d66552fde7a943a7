"""Where a whole run's CPU went, per command and the commands that started it, from the kernel's process accounting.

    accton /tmp/pacct; bash .ci/run; accton off
    python bench/cpu.py /tmp/pacct [--top N] [--depth D]

The kernel writes one record per process that exits, in every PID namespace (a container node's processes too),
with its command (15 characters), CPU time, start time and parent: `dump-acct` (Debian's `acct` package) prints
them. This groups the CPU by command and its first D ancestors (`python3 < sh < sshd` is a module Ansible ran on
a node over SSH; a `*` marks a process that forked but never exec'd, such as Ansible's workers) and prints the N
largest. Processes still running when accounting stops (dockerd, an open VM) are not counted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

TICKS = 100.0  # dump-acct prints times in clock ticks (AHZ)


@dataclass(frozen=True)
class Proc:
    command: str
    cpu: float  # seconds, user + system
    elapsed: float
    pid: int
    ppid: int
    start: float  # epoch seconds
    forked: bool  # forked, never exec'd


def parse(text: str) -> list[Proc]:
    """dump-acct's lines: command|version|utime|stime|etime|uid|gid|mem|io|pid|ppid|flags|exit|tty|start."""
    procs = []
    for line in text.splitlines():
        f = [x.strip() for x in line.split("|")]
        if len(f) < 15 or f[1] != "v3":
            continue
        start = datetime.strptime(f[14], "%a %b %d %H:%M:%S %Y").timestamp()
        procs.append(Proc(f[0], (float(f[2]) + float(f[3])) / TICKS, float(f[4]) / TICKS, int(f[9]), int(f[10]),
                          start, "F" in f[11]))
    return procs


def ancestry(procs: list[Proc], depth: int) -> dict[Proc, list[str]]:
    """Each process's first `depth` ancestors that exited while accounting ran (PIDs are reused: the parent is
    the process of that PID alive when the child started)."""
    by_pid: dict[int, list[Proc]] = defaultdict(list)
    for p in procs:
        by_pid[p.pid].append(p)

    def parent(p: Proc) -> Proc | None:
        alive = [q for q in by_pid.get(p.ppid, []) if q.start <= p.start + 1 and q.start + q.elapsed >= p.start - 1]
        return alive[-1] if alive else None

    out = {}
    for p in procs:
        names, q = [], parent(p)
        while q is not None and len(names) < depth:
            names.append(q.command + "*" * q.forked)
            q = parent(q)
        out[p] = names
    return out


def summary(procs: list[Proc], top: int, depth: int) -> list[str]:
    chains = ancestry(procs, depth)
    cpu: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for p in procs:
        key = " < ".join([p.command + "*" * p.forked, *chains[p]])
        cpu[key] += p.cpu
        count[key] += 1
    total = sum(p.cpu for p in procs)
    lines = [f"{total / 60:.1f} CPU-minutes in {len(procs)} processes that exited",
             f"{'CPU-min':>8} {'share':>6} {'count':>7}  command < its parent < ..."]
    for key, seconds in cpu.most_common(top):
        lines.append(f"{seconds / 60:8.2f} {100 * seconds / total:5.1f}% {count[key]:7d}  {key}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pacct", help="the accounting file accton wrote")
    ap.add_argument("--top", type=int, default=30, help="lines to print (default 30)")
    ap.add_argument("--depth", type=int, default=3, help="ancestors per line (default 3)")
    args = ap.parse_args(argv)
    try:
        text = subprocess.run(["dump-acct", args.pacct], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        print("cpu.py: dump-acct not found: install Debian's acct package", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"cpu.py: dump-acct {args.pacct}: {exc.stderr.strip() or exc}", file=sys.stderr)
        return 2
    procs = parse(text)
    if not procs:
        print(f"cpu.py: no process records in {args.pacct}: was accounting on (accton FILE)?", file=sys.stderr)
        return 2
    print("\n".join(summary(procs, args.top, args.depth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

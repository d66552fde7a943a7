"""Benchmark: validate a spec and render the inventory for a large cluster. Prints figures; asserts nothing.

    python bench/render.py [--workers 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import time

from provision import inventory, spec, topology

SPEC = """\
apiVersion: provision.dev/v1alpha1
kind: Cluster
name: big
topology: ha
networking:
  nodeCIDR: 10.250.0.0/16
nodes:
  controlPlanes: 3
  etcd: 3
  workers: {workers}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    text = SPEC.format(workers=args.workers)
    timings = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        cluster = spec.load_text(text, "bench")
        topo = topology.build(cluster)
        files = inventory.render(topo)
        timings.append(time.perf_counter() - t0)
    nodes = len(topo.nodes)
    best = min(timings)
    size = sum(len(v) for v in files.values())
    print(f"render: {nodes} nodes, best {best * 1000:.1f} ms of {args.repeat} "
          f"(median {sorted(timings)[len(timings) // 2] * 1000:.1f} ms), {size / 1024:.0f} KiB of inventory, "
          f"{best / 1.0 * 100:.1f}% of the 1 s budget")
    print(json.dumps({"bench": "render", "nodes": nodes, "best_s": round(best, 4),
                      "budget_s": 1.0, "ratio_to_budget": round(best / 1.0, 4)}))


if __name__ == "__main__":
    main()

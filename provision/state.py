"""What provision knows about a running cluster, beyond its spec: `<state dir>/state.json`.

The spec says what the cluster should be; the state says what it is, so day-2 verbs can act without
contacting every node:
- `members`: nodes a successful `up` or `add-node` brought into the cluster;
- `init_node`: the control plane holding the cluster's admin credentials (where `kubeadm init` ran, or the
  control plane that took over when that one was removed). `up` never runs `kubeadm init` on another node
  once this is set: a control plane found without Kubernetes joins instead;
- `kubernetes_version`: the version the cluster runs (set by `up`, moved by `upgrade`);
- `removed`: nodes `remove-node` took out while the spec still lists them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from provision.errors import UserError

FILE = "state.json"


@dataclass
class ClusterState:
    name: str = ""
    provider: str = ""
    source: str = ""
    members: list[str] = field(default_factory=list)
    init_node: str | None = None
    kubernetes_version: str | None = None
    removed: list[str] = field(default_factory=list)

    @property
    def initialized(self) -> bool:
        return self.init_node is not None


def load(state_dir: Path) -> ClusterState:
    path = state_dir / FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return ClusterState()
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}; fix or remove the file") from None
    known = ClusterState.__dataclass_fields__
    return ClusterState(**{k: v for k, v in raw.items() if k in known})


def save(state_dir: Path, st: ClusterState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(st), indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)  # a Ctrl-C never leaves half a file

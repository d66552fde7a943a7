"""The cluster spec: what a person writes, read strictly and checked whole before anything runs.

`load_spec(path)` returns a resolved `Cluster` (topology preset defaults filled in) or raises `SpecError`
carrying one `Problem` per mistake. Each problem renders as one line:
``cluster.yaml:12: networking.cni: 'weeve' is not a known CNI; use one of: calico, flannel, cilium, weave``.

Made of, in reading order: `models` (the schema), `presets` (what a topology fills in), `reading` (YAML with
lines, schema errors in the spec's words), `rules` (one module per section, one function per refusal) and
`cluster` (the resolved cluster and its warnings).
"""

from provision.spec.cluster import Cluster, warnings_for
from provision.spec.models import (
                                       API_SERVER_PORT,
                                       API_VERSION,
                                       CNIS,
                                       LEGACY_CNIS,
                                       NODE_ROLES,
                                       TOPOLOGIES,
                                       ClusterSpec,
                                       ManagementNetworkSpec,
                                       VagrantSpec,
                                       default_node_cidr,
                                       vagrant_backend,
)
from provision.spec.presets import PRESETS, apply_preset
from provision.spec.problems import Problem, SpecError, printable, shown
from provision.spec.reading import field_name, load_spec, load_text, parse_yaml
from provision.spec.rules import check, containerd_source, role_counts

__all__ = ["API_SERVER_PORT", "API_VERSION", "CNIS", "LEGACY_CNIS", "NODE_ROLES", "PRESETS", "TOPOLOGIES", "Cluster",
           "ClusterSpec", "ManagementNetworkSpec", "Problem", "SpecError", "VagrantSpec", "apply_preset", "check", "containerd_source",
           "default_node_cidr", "field_name", "load_spec", "load_text", "parse_yaml", "printable", "role_counts",
           "shown", "vagrant_backend", "warnings_for"]

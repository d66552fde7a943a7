"""The topology presets: what each topology fills in where the spec is silent. The spec wins wherever it speaks."""

from __future__ import annotations

import copy
from typing import Any

# What each topology preset fills in where the spec is silent. The spec wins wherever it speaks.
PRESETS: dict[str, dict[str, Any]] = {
    "all-in-one": {
        "nodes": {"controlPlanes": 1, "workers": 0, "etcd": 0, "loadBalancers": 0},
        "etcd": {"mode": "stacked"},
        "endpoint": {"type": "none"},
    },
    "single-master": {
        "nodes": {"controlPlanes": 1, "workers": 2, "etcd": 0, "loadBalancers": 0},
        "etcd": {"mode": "stacked"},
        "endpoint": {"type": "none"},
    },
    "multi-master": {
        "nodes": {"controlPlanes": 2, "workers": 2, "etcd": 1, "loadBalancers": 2},
        "etcd": {"mode": "external"},
        "endpoint": {"type": "vip"},
    },
    "ha": {
        "nodes": {"controlPlanes": 3, "workers": 2, "etcd": 3, "loadBalancers": 2},
        "etcd": {"mode": "external"},
        "endpoint": {"type": "vip"},
    },
}


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill the topology preset's defaults into the raw mapping (before strict validation)."""
    topology = raw.get("topology")
    if not isinstance(topology, str) or topology not in PRESETS:
        return raw
    preset = copy.deepcopy(PRESETS[topology])
    given_etcd = raw.get("etcd")
    given_nodes = raw.get("nodes")
    stacked = isinstance(given_etcd, dict) and given_etcd.get("mode") == "stacked"
    if stacked:
        preset["nodes"]["etcd"] = 0
    given_endpoint = raw.get("endpoint")
    if isinstance(given_endpoint, dict) and given_endpoint.get("type") not in (None, "vip"):
        preset["nodes"]["loadBalancers"] = 0
    provider = raw.get("provider")
    if isinstance(provider, dict) and provider.get("type") == "static" or "hosts" in raw:
        del preset["nodes"]  # the hosts list says which machine does what
    elif isinstance(given_nodes, dict) and given_nodes.get("etcd", 0) and "etcd" not in raw:
        preset["etcd"] = {"mode": "external"}
    return _merge(preset, raw)


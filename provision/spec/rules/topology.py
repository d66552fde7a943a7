"""Nodes and topology: the node counts each topology preset stands for."""

from __future__ import annotations

from provision.spec.problems import Problem
from provision.spec.rules.base import MACHINES, Add, Judged, rule


@rule(*MACHINES)
def refuse_a_cluster_without_a_control_plane(j: Judged, add: Add) -> None:
    if j.counts["control-plane"] == 0:
        add(Problem(j.count_field("controlPlanes"), "no control plane", "add at least one control-plane node"))


@rule("topology", "etcd", *MACHINES)
def refuse_more_than_one_node_for_all_in_one(j: Judged, add: Add) -> None:
    if j.spec.topology != "all-in-one":
        return
    c = j.counts
    if c["control-plane"] != 1 or c["worker"] or c["etcd"] or c["loadbalancer"]:
        add(Problem(j.nodes_field, "all-in-one is exactly one node (control plane, etcd and workloads)",
                    "remove the other nodes, or pick topology single-master"))
    if j.external:
        add(Problem("etcd.mode", "all-in-one runs etcd stacked on its one node", "set etcd.mode: stacked"))


@rule("topology", "etcd", *MACHINES)
def refuse_a_single_master_of_another_shape(j: Judged, add: Add) -> None:
    if j.spec.topology != "single-master":
        return
    cps, etcds = j.counts["control-plane"], j.counts["etcd"]
    if cps != 1:
        add(Problem(j.nodes_field, f"single-master has one control plane, got {cps}",
                    "set one control plane, or pick multi-master or ha"))
    if j.counts["worker"] == 0:
        add(Problem(j.nodes_field, "single-master needs at least one worker",
                    "add workers, or pick topology all-in-one"))
    if j.external and etcds > 1:
        add(Problem(j.nodes_field, f"single-master has one etcd member, got {etcds}",
                    "use 1 etcd node, or pick topology ha"))


@rule("topology", "etcd", *MACHINES)
def refuse_a_multi_master_of_another_shape(j: Judged, add: Add) -> None:
    if j.spec.topology != "multi-master":
        return
    cps, etcds = j.counts["control-plane"], j.counts["etcd"]
    if cps < 2:
        add(Problem(j.nodes_field, f"multi-master needs 2 or more control planes, got {cps}",
                    "add control planes, or pick single-master"))
    if not j.external:
        add(Problem("etcd.mode", "multi-master uses one external etcd node",
                    "set etcd.mode: external, or pick topology ha for stacked etcd"))
    elif etcds > 1:
        add(Problem(j.nodes_field, f"multi-master has one etcd member, got {etcds}",
                    "use 1 etcd node, or pick topology ha"))


@rule("topology", "etcd", *MACHINES)
def refuse_an_ha_without_a_quorum(j: Judged, add: Add) -> None:
    if j.spec.topology != "ha":
        return
    cps, etcds = j.counts["control-plane"], j.counts["etcd"]
    if cps < 3:
        add(Problem(j.nodes_field, f"ha needs 3 or more control planes, got {cps}",
                    "add control planes, or pick multi-master"))
    if j.external and etcds and etcds % 2 and etcds < 3:
        add(Problem(j.nodes_field, f"ha needs 3 or 5 etcd members, got {etcds}",
                    "use 3 or 5, or pick multi-master"))
    if not j.external and cps % 2 == 0 and cps >= 2:
        add(Problem(j.nodes_field, f"stacked etcd on {cps} control planes is an even member count",
                    "use an odd number of control planes (3, 5)"))

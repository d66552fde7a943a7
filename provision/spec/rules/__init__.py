"""The spec's rules: what depends on several fields, one small function per refusal, grouped by section.

`check(spec)` runs them in order. When the machines do not fit the provider (counts for a static provider, a
hosts list for one that creates machines), the rules after that one would only mislead, so they do not run. `check(spec, skip=...)` leaves out the rules
reading a section that failed the schema (see `reading.load_text`).
"""

from __future__ import annotations

from collections.abc import Iterable

from provision.spec.models import ClusterSpec
from provision.spec.problems import Problem
from provision.spec.rules import (
    artifacts,
    dashboard,
    endpoint,
    etcd,
    machines,
    names,
    networking,
    runtime,
    topology,
)
from provision.spec.rules.base import Judged, Rule, role_counts
from provision.spec.rules.runtime import below_floor_text, containerd_below_floor, containerd_source

__all__ = [
    "FIRST_RULES",
    "MACHINES_FIT",
    "RULES_ON_FITTING_MACHINES",
    "below_floor_text",
    "check",
    "containerd_below_floor",
    "containerd_source",
    "role_counts",
]

FIRST_RULES: tuple[Rule, ...] = (
    names.refuse_an_invalid_cluster_name,
    runtime.refuse_an_unsupported_kubernetes_version,
    etcd.refuse_a_malformed_etcd_version,
    runtime.refuse_a_malformed_containerd_version,
    runtime.refuse_a_malformed_preflight_check_name,
    names.refuse_templates_in_paths,
)

# Any problem here stops the rules after it.
MACHINES_FIT = machines.refuse_machines_the_provider_cannot_use

RULES_ON_FITTING_MACHINES: tuple[Rule, ...] = (
    machines.refuse_an_unusable_bastion,
    machines.refuse_an_invalid_host_entry,
    machines.refuse_two_hosts_with_one_name_or_address,
    machines.refuse_load_balancer_on_api_server_port,
    machines.refuse_libvirt_settings_on_another_backend,
    machines.refuse_an_unusable_management_network,
    topology.refuse_a_cluster_without_a_control_plane,
    etcd.refuse_an_external_etcd_without_an_odd_member_count,
    etcd.refuse_etcd_nodes_for_stacked_etcd,
    topology.refuse_more_than_one_node_for_all_in_one,
    topology.refuse_a_single_master_of_another_shape,
    topology.refuse_a_multi_master_of_another_shape,
    topology.refuse_an_ha_without_a_quorum,
    endpoint.refuse_several_control_planes_without_an_endpoint,
    endpoint.refuse_an_endpoint_address_that_does_not_fit_its_type,
    endpoint.refuse_a_vip_without_load_balancers_or_an_ipv4_address,
    endpoint.refuse_load_balancers_without_a_vip,
    networking.refuse_a_malformed_network,
    networking.refuse_overlapping_networks,
    networking.refuse_pod_or_service_ranges_too_small,
    networking.refuse_ranges_overlapping_the_default_node_network,
    networking.refuse_a_node_network_too_small_for_the_workers,
    networking.refuse_more_nodes_of_a_role_than_the_address_plan_holds,
    networking.refuse_hosts_inside_the_cluster_ranges,
    networking.refuse_an_unknown_or_unacknowledged_legacy_cni,
    artifacts.refuse_offline_mode_without_a_directory,
    dashboard.refuse_access_without_a_dashboard,
    runtime.refuse_containerd_below_the_floor,
    artifacts.refuse_installing_from_artifacts_online,
    artifacts.refuse_a_registry_mirror_outside_offline_mode,
    artifacts.refuse_a_registry_that_is_not_host_and_port,
)


def check(spec: ClusterSpec, skip: Iterable[str] = ()) -> list[Problem]:
    """Every problem the rules find; rules reading a section in `skip` are left out."""
    skipped = frozenset(skip)
    judged = Judged(spec)
    problems: list[Problem] = []
    for rule in FIRST_RULES:
        if not rule.reads & skipped:
            rule(judged, problems.append)
    misfits: list[Problem] = []
    if not MACHINES_FIT.reads & skipped:  # when skipped, so is every rule that counts the machines
        MACHINES_FIT(judged, misfits.append)
    if misfits:
        return problems + misfits
    for rule in RULES_ON_FITTING_MACHINES:
        if not rule.reads & skipped:
            rule(judged, problems.append)
    return problems

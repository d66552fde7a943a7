"""etcd: its version, and a member count that can hold a quorum."""

from __future__ import annotations

from provision.spec.problems import Problem, shown
from provision.spec.rules.base import MACHINES, PATCH_VERSION, Add, Judged, rule


@rule("etcd")
def refuse_a_malformed_etcd_version(j: Judged, add: Add) -> None:
    version = j.spec.etcd.version
    if version is not None and not PATCH_VERSION.match(version):
        add(Problem("etcd.version", f"{shown(version)} is not a version", "write it like \"3.6.5\""))


@rule("etcd", *MACHINES)
def refuse_an_external_etcd_without_an_odd_member_count(j: Judged, add: Add) -> None:
    etcds = j.counts["etcd"]
    if not j.external:
        return
    if etcds == 0:
        add(Problem(j.count_field("etcd"), "external etcd needs members, got 0",
                    "set 1, 3 or 5 etcd members, or etcd.mode: stacked"))
    elif etcds % 2 == 0:
        add(Problem(j.count_field("etcd"),
                    f"{etcds} etcd members: an even count adds no fault tolerance and risks split votes",
                    "use an odd count: 1, 3 or 5"))


@rule("etcd", *MACHINES)
def refuse_etcd_nodes_for_stacked_etcd(j: Judged, add: Add) -> None:
    etcds = j.counts["etcd"]
    if not j.external and etcds:
        add(Problem(j.count_field("etcd"),
                    f"{etcds} etcd nodes but etcd.mode is stacked (etcd runs on the control planes)",
                    "set etcd.mode: external, or remove the etcd nodes"))

"""Artifacts: offline mode needs its directory, and installing from it needs offline mode."""

from __future__ import annotations

import re

from provision.spec.problems import Problem, shown
from provision.spec.rules.base import Add, Judged, is_address, rule

REGISTRY = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[^/:\s]+)(:(?P<port>[0-9]{1,5}))?\Z")


@rule("artifacts")
def refuse_offline_mode_without_a_directory(j: Judged, add: Add) -> None:
    if j.spec.artifacts.mode == "offline" and not j.spec.artifacts.dir:
        add(Problem("artifacts.dir", "offline mode needs the artifacts directory",
                    "set artifacts.dir (build it with `provision artifacts`)"))


@rule("artifacts", "containerRuntime", "etcd")
def refuse_installing_from_artifacts_online(j: Judged, add: Add) -> None:
    for field, source in (("containerRuntime.source", j.spec.container_runtime.source),
                          ("etcd.source", j.spec.etcd.source)):
        if source == "artifacts" and j.spec.artifacts.mode != "offline":
            add(Problem(field, "installs from artifacts, but artifacts.mode is online",
                        "set artifacts.mode: offline and artifacts.dir"))


@rule("artifacts")
def refuse_a_registry_mirror_outside_offline_mode(j: Judged, add: Add) -> None:
    art = j.spec.artifacts
    if art.registry is not None and art.mode != "offline":
        add(Problem("artifacts.registry", "a registry mirror is for offline mode",
                    "set artifacts.mode: offline (with artifacts.dir), or remove artifacts.registry"))
    if art.ca_file is not None and art.registry is None:
        add(Problem("artifacts.caFile", "a CA file without a registry mirror",
                    "set artifacts.registry, or remove artifacts.caFile"))
    if art.auth_file is not None and art.registry is None:
        add(Problem("artifacts.authFile", "credentials without a registry mirror",
                    "set artifacts.registry, or remove artifacts.authFile"))


@rule("artifacts")
def refuse_a_registry_that_is_not_host_and_port(j: Judged, add: Add) -> None:
    registry = j.spec.artifacts.registry
    if registry is None:
        return
    m = REGISTRY.match(registry)
    if not m or not is_address(m.group("host").strip("[]")) or int(m.group("port") or 443) > 65535:
        add(Problem("artifacts.registry", f"{shown(registry)} is not a registry address",
                    "write host:port, e.g. registry.example.com:5000 (no https://, no path)"))

"""Artifacts: offline mode needs its directory, and installing from it needs offline mode."""

from __future__ import annotations

from provision.spec.problems import Problem
from provision.spec.rules.base import Add, Judged, rule


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

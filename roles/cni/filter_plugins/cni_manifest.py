"""Filter of the cni role: set an environment variable in one container of a workload in a YAML manifest."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError


def _objects(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if str(doc.get("kind", "")).endswith("List"):
        return [item for item in doc.get("items") or [] if isinstance(item, dict)]
    return [doc]


def cni_set_container_env(text: str, kind: str, name: str, container: str, env_name: str, value: str) -> str:
    """Return the manifest (YAML text, one or more documents, List kinds too) with env_name=value in the container.

    An existing variable of that name is replaced, otherwise it is appended. A manifest without that workload or
    container is an error naming what is missing.
    """
    try:
        docs = [d for d in yaml.safe_load_all(str(text)) if d]
    except yaml.YAMLError as exc:
        raise AnsibleFilterError(f"cni_set_container_env: the manifest is not valid YAML: {exc}") from exc
    docs = copy.deepcopy(docs)
    found = False
    for doc in docs:
        for obj in _objects(doc):
            if obj.get("kind") != kind or (obj.get("metadata") or {}).get("name") != name:
                continue
            spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in spec.get("containers") or []:
                if c.get("name") != container:
                    continue
                env = [e for e in c.get("env") or [] if e.get("name") != env_name]
                c["env"] = env + [{"name": env_name, "value": str(value)}]
                found = True
    if not found:
        raise AnsibleFilterError(f"cni_set_container_env: no container {container!r} in {kind} {name!r} "
                                 "in the manifest: is it the expected upstream file?")
    return "---\n".join(yaml.safe_dump(d, default_flow_style=False, sort_keys=False) for d in docs)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"cni_set_container_env": cni_set_container_env}

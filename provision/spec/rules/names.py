"""Names and paths: the cluster's name, and the values passed on to Ansible as they are."""

from __future__ import annotations

from provision.spec.problems import Problem, shown
from provision.spec.rules.base import DNS_LABEL, TEMPLATE_MARK, Add, Judged, rule


@rule("name")
def refuse_an_invalid_cluster_name(j: Judged, add: Add) -> None:
    name = j.spec.name
    if not DNS_LABEL.match(name) or len(name) > 40:
        add(Problem("name", f"{shown(name)} is not a valid cluster name",
                    "use lowercase letters, digits and '-', at most 40 characters, e.g. 'demo'"))


@rule("artifacts", "provider", "hosts")
def refuse_templates_in_paths(j: Judged, add: Add) -> None:
    """Paths and names passed on as they are: Ansible would evaluate '{{ ... }}' in its inventory."""
    spec = j.spec
    bastion = spec.provider.static.bastion if spec.provider.static else None
    for field, value in (("artifacts.dir", spec.artifacts.dir),
                         ("provider.vagrant.box", spec.provider.vagrant.box if spec.provider.vagrant else None),
                         ("provider.static.bastion.key", bastion.key if bastion else None),
                         *((f"hosts[{i}].key", h.key) for i, h in enumerate(spec.hosts or []))):
        if value is not None and (not value.strip() or not value.isprintable() or TEMPLATE_MARK.search(value)):
            add(Problem(field, f"{shown(value)} is empty, or holds control characters or template markers",
                        "write a plain path or name, without '{{', '{%', '{#' or control characters"))

"""The add-on roles: cni (pod network) and dashboard.

Their molecule scenarios run on a real systemd node with the kubectl TEST DOUBLE and the add-on STAND-INS of
tests/doubles/addons.py. What needs a real helm (Cilium's chart, the legacy kubernetes-dashboard chart) cannot run
here: its templates and `helm template` arguments are rendered and checked below, and every task file passes
ansible-playbook's syntax check.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nativetypes
import pytest
import yaml

from provision import addon_files as fetched_files
from provision import versions
from tests.doubles.addons import addon_files

ROOT = Path(__file__).resolve().parent.parent
ROLES = ROOT / "roles"


# --- rendering the roles' templates and variables without Ansible -------------------------------------------------

def _bool(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _regex_replace(value: Any, pattern: str, repl: str = "") -> str:
    return re.sub(pattern, repl, str(value))


# Templates render to text; variables to native values, as Ansible's templating does.
ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
VARS_ENV = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
for _env in (ENV, VARS_ENV):
    _env.filters.update(bool=_bool, regex_replace=_regex_replace)
    _env.globals["undef"] = lambda hint=None: jinja2.StrictUndefined(hint=hint)  # Ansible's required-variable default


def _render(value: Any, ctx: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        out = VARS_ENV.from_string(value).render(ctx)
        if isinstance(out, jinja2.Undefined):  # a native render returns an undefined instead of raising
            raise jinja2.UndefinedError(value)
        return out
    if isinstance(value, list):
        return [_render(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, ctx) for k, v in value.items()}
    return value


def role_vars(role: str, **given: Any) -> dict[str, Any]:
    """The role's defaults and vars, resolved like Ansible would for the given inventory variables."""
    raw: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        path = ROLES / role / part / "main.yml"
        raw.update((yaml.safe_load(path.read_text()) if path.exists() else None) or {})
    out: dict[str, Any] = dict(given)
    pending = {k: v for k, v in raw.items() if k not in out}
    for _ in range(len(pending) + 1):
        progressed = False
        for key, value in list(pending.items()):
            try:
                out[key] = _render(value, out)
            except jinja2.UndefinedError:
                continue
            except jinja2.TemplateAssertionError:  # an Ansible filter or lookup this environment lacks: not asked
                del pending[key]
                continue
            del pending[key]
            progressed = True
        if not progressed:
            break
    return out


def render_template(role: str, name: str, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = ENV.from_string((ROLES / role / "templates" / name).read_text()).render(ctx)
    return [d for d in yaml.safe_load_all(text) if d]


FACTS = {"ansible_facts": {"architecture": "x86_64"}}


# --- cni ----------------------------------------------------------------------------------------------------------

PIN = re.compile(r"(?<![\w.])v?\d+\.\d+\.\d+(?![\w.]*\d*/)(?![\d.])")


def test_no_role_pins_a_version_every_pin_is_in_provision_versions() -> None:
    """Roles take their versions from provision's group_vars (provision/versions.py): no x.y.z in a role's
    defaults or vars, outside comments."""
    found = []
    for path in sorted(ROLES.glob("*/defaults/main.yml")) + sorted(ROLES.glob("*/vars/main.yml")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
            if PIN.search(code):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []


@pytest.mark.parametrize("cidr", ["10.42.0.0/16", "192.168.0.0/17"])
def test_calico_custom_resources_carry_the_pod_cidr(cidr: str) -> None:
    ctx = role_vars("cni", cni="calico", cni_version="v3.31.7", pod_cidr=cidr, **FACTS)
    docs = render_template("cni", "calico-custom-resources.yaml.j2", ctx)
    assert [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("operator.tigera.io/v1", "Installation", "default"), ("operator.tigera.io/v1", "APIServer", "default")]
    assert docs[0]["spec"]["calicoNetwork"]["ipPools"] == [{
        "name": "default-ipv4-ippool", "cidr": cidr, "blockSize": 26, "encapsulation": "VXLANCrossSubnet",
        "natOutgoing": "Enabled", "nodeSelector": "all()"}]


def test_calico_options() -> None:
    ctx = role_vars("cni", cni="calico", cni_version="v3.31.7", pod_cidr="fd00:10::/56", cni_calico_encapsulation="VXLAN",
                    cni_calico_observability="true", **FACTS)
    docs = render_template("cni", "calico-custom-resources.yaml.j2", ctx)
    assert [d["kind"] for d in docs] == ["Installation", "APIServer", "Goldmane", "Whisker"]
    pool = docs[0]["spec"]["calicoNetwork"]["ipPools"][0]
    assert (pool["name"], pool["cidr"], pool["encapsulation"]) == ("default-ipv6-ippool", "fd00:10::/56", "VXLAN")


def test_calico_urls_are_the_pinned_release_crds_first() -> None:
    ctx = role_vars("cni", cni="calico", cni_version="v3.31.0", **FACTS)
    base = "https://raw.githubusercontent.com/projectcalico/calico/v3.31.0/manifests"
    assert ctx["cni_upstream_files"]["calico"] == [
        {"name": "operator-crds.yaml", "url": f"{base}/operator-crds.yaml"},
        {"name": "tigera-operator.yaml", "url": f"{base}/tigera-operator.yaml"}]
    assert ctx["cni_dir"] == "/var/cache/provision/manifests/calico/v3.31.0"


def test_calico_standins_split_the_crds_like_upstream() -> None:
    """Since Calico 3.30 operator-crds.yaml holds every CRD and tigera-operator.yaml none: an install that applies
    only the operator's manifest must find no CRD to wait for (the kubectl double then fails with NotFound)."""
    files = addon_files()
    crds = [d for d in yaml.safe_load_all(files["manifests/calico/operator-crds.yaml"]) if d]
    operator = [d for d in yaml.safe_load_all(files["manifests/calico/tigera-operator.yaml"]) if d]
    assert {d["kind"] for d in crds} == {"CustomResourceDefinition"}
    assert {"installations.operator.tigera.io", "apiservers.operator.tigera.io", "goldmanes.operator.tigera.io",
            "whiskers.operator.tigera.io"} <= {d["metadata"]["name"] for d in crds}
    assert "CustomResourceDefinition" not in {d["kind"] for d in operator}


@pytest.mark.parametrize(("mode", "dataplane"), [("nftables", "Nftables"), ("iptables", "Iptables")])
def test_calico_dataplane_follows_kube_proxy_and_nodes_use_their_internal_ip(mode: str, dataplane: str) -> None:
    ctx = role_vars("cni", cni="calico", cni_version="v3.31.7", kube_proxy_mode=mode, **FACTS)
    network = render_template("cni", "calico-custom-resources.yaml.j2", ctx)[0]["spec"]["calicoNetwork"]
    assert network["linuxDataplane"] == dataplane
    assert network["nodeAddressAutodetectionV4"] == {"kubernetes": "NodeInternalIP"}


def test_kube_proxy_mode_is_one_setting_for_kubeadm_and_the_cni() -> None:
    """kubeadm's KubeProxyConfiguration and Calico's data plane read the same group_vars value."""
    group_vars = (ROOT / "templates/group_vars/all.yml.j2").read_text()
    assert re.search(r"(?m)^kube_proxy_mode: nftables$", group_vars)
    for role, key in (("kubeadm_init", "kubeadm_init_kube_proxy_mode"), ("cni", "cni_kube_proxy_mode")):
        assert role_vars(role, kube_proxy_mode="iptables", **FACTS).get(key) == "iptables", role


def test_cilium_values_and_helm_template_arguments() -> None:
    ctx = role_vars("cni", cni="cilium", cni_version="1.18.3", pod_cidr="10.42.0.0/16",
                    kubernetes_version="1.37.2", helm_version="v3.19.2", **FACTS)
    assert render_template("cni", "cilium-values.yaml.j2", ctx) == [{"ipam": {
        "mode": "cluster-pool",
        "operator": {"clusterPoolIPv4PodCIDRList": ["10.42.0.0/16"], "clusterPoolIPv4MaskSize": 24}}}]
    d = "/var/cache/provision/manifests/cilium/v1.18.3"
    assert ctx["cni_cilium_helm_argv"] == [
        "/usr/local/lib/provision/helm-v3.19.2/helm", "template", "cilium", f"{d}/upstream/cilium-1.18.3.tgz",
        "--namespace", "kube-system", "--kube-version", "1.37.2",
        "--values", f"{d}/cilium-values.yaml", "--values", f"{d}/cilium-extra-values.yaml"]
    assert ctx["cni_upstream_files"]["cilium"] == [
        {"name": "cilium-1.18.3.tgz", "url": "https://helm.cilium.io/cilium-1.18.3.tgz"}]
    assert ctx["cni_helm_url"] == "https://get.helm.sh/helm-v3.19.2-linux-amd64.tar.gz"


def test_flannel_and_weave_urls_are_the_pinned_releases() -> None:
    flannel = role_vars("cni", cni="flannel", cni_version="v0.27.4", **FACTS)
    assert flannel["cni_upstream_files"]["flannel"] == [{
        "name": "kube-flannel.yml",
        "url": "https://raw.githubusercontent.com/flannel-io/flannel/v0.27.4/Documentation/kube-flannel.yml"}]
    weave = role_vars("cni", cni="weave", cni_version="v2.8.10", **FACTS)
    assert weave["cni_upstream_files"]["weave"] == [{
        "name": "weave-daemonset-k8s-1.11.yaml",
        "url": "https://github.com/rajch/weave/releases/download/v2.8.10/weave-daemonset-k8s-1.11.yaml"}]


@pytest.mark.parametrize("cni", sorted(versions.CNI_VERSIONS))
def test_the_role_downloads_what_provision_artifacts_fetches(cni: str) -> None:
    """Online the role fetches its defaults' URLs; offline it reads what `provision artifacts` fetched from
    provision/addon_files.py: the same files under the same names, and the pins provision passes cover them."""
    ctx = role_vars("cni", cni=cni, cni_version=versions.CNI_VERSIONS[cni], kubernetes_version="1.37.2",
                    helm_version=versions.HELM_VERSION, **FACTS)
    fetched = fetched_files.cni_files(cni)
    assert ctx["cni_upstream_files"][cni] == [
        {"name": f.path.removeprefix(f"manifests/{cni}/"), "url": f.url} for f in fetched]
    assert set(fetched_files.download_checksums(cni)) <= {f["name"] for f in ctx["cni_upstream_files"][cni]}
    helm = fetched_files.helm_release(cni, "none", "amd64")
    assert (helm.url if helm else None) == (ctx["cni_helm_url"] if cni == "cilium" else None)


def test_the_legacy_dashboard_chart_is_what_provision_artifacts_fetches() -> None:
    ctx = role_vars("dashboard", dashboard="kubernetes-dashboard",
                    dashboard_version=versions.DASHBOARD_VERSIONS["kubernetes-dashboard"],
                    kubernetes_version="1.37.2", helm_version=versions.HELM_VERSION, **FACTS)
    (chart,) = fetched_files.dashboard_files("kubernetes-dashboard")
    assert chart.url == ctx["dashboard_k8s_dashboard_chart_url"]
    assert chart.path == f"manifests/kubernetes-dashboard/{ctx['dashboard_k8s_dashboard_chart']}"
    helm = fetched_files.helm_release("calico", "kubernetes-dashboard", "amd64")
    assert helm is not None and helm.url == ctx["dashboard_helm_url"]
    assert fetched_files.dashboard_files("headlamp") == []


def test_addon_standins_cover_the_offline_paths_the_role_reads() -> None:
    files = addon_files()
    for cni in ("calico", "flannel", "weave"):
        ctx = role_vars("cni", cni=cni, cni_version=versions.CNI_VERSIONS[cni], **FACTS)
        for f in ctx["cni_upstream_files"][cni]:
            assert f"manifests/{cni}/{f['name']}" in files
    for rel, data in files.items():
        assert b"STAND-IN" in data, rel
        assert all(d.get("kind") for d in yaml.safe_load_all(data) if d), rel
    assert b'"Network": "10.244.0.0/16"' in files["manifests/flannel/kube-flannel.yml"]


# --- dashboard ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("access", "role"), [("read-only", "view"), ("admin", "cluster-admin")])
def test_headlamp_manifests(access: str, role: str) -> None:
    ctx = role_vars("dashboard", dashboard="headlamp", dashboard_version="0.38.0", dashboard_access=access, **FACTS)
    docs = [d for t in ("namespace.yaml.j2", "headlamp.yaml.j2", "viewer.yaml.j2")
            for d in render_template("dashboard", t, ctx)]
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deploy = kinds[("Deployment", "headlamp")]["spec"]["template"]["spec"]
    container = deploy["containers"][0]
    assert container["image"] == "ghcr.io/headlamp-k8s/headlamp:v0.38.0"
    assert "-in-cluster" in container["args"]
    assert not [a for a in container["args"] if "skip-login" in a or "service-account-token" in a]
    assert container["ports"] == [{"name": "http", "containerPort": 4466, "protocol": "TCP"}]
    svc = kinds[("Service", "headlamp")]["spec"]
    assert (svc["type"], svc["ports"][0]["port"], svc["ports"][0]["targetPort"]) == ("ClusterIP", 80, 4466)
    binding = kinds[("ClusterRoleBinding", f"headlamp-viewer-{role}")]
    assert binding["roleRef"]["name"] == role
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "headlamp-viewer", "namespace": "headlamp"}]
    secret = kinds[("Secret", "headlamp-viewer-token")]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "headlamp-viewer"}
    assert "data" not in secret
    assert ctx["dashboard_other_bindings"] == [f"headlamp-viewer-{'cluster-admin' if role == 'view' else 'view'}"]
    assert all(d["metadata"].get("namespace", "headlamp") == "headlamp" for d in docs)


def test_legacy_kubernetes_dashboard_chart_and_helm_template_arguments() -> None:
    ctx = role_vars("dashboard", dashboard="kubernetes-dashboard", dashboard_version="7.14.0",
                    kubernetes_version="1.37.2", helm_version="v3.19.2", **FACTS)
    assert ctx["dashboard_k8s_dashboard_chart_url"] == ("https://github.com/kubernetes-retired/dashboard/releases/"
                                                         "download/kubernetes-dashboard-7.14.0/"
                                                         "kubernetes-dashboard-7.14.0.tgz")
    d = "/var/cache/provision/manifests/kubernetes-dashboard/v7.14.0"
    assert ctx["dashboard_k8s_dashboard_helm_argv"] == [
        "/usr/local/lib/provision/helm-v3.19.2/helm", "template", "kubernetes-dashboard",
        f"{d}/upstream/kubernetes-dashboard-7.14.0.tgz", "--namespace", "kubernetes-dashboard",
        "--kube-version", "1.37.2", "--values", f"{d}/values.yaml"]
    assert (ctx["dashboard_viewer"], ctx["dashboard_binding"]) == \
        ("kubernetes-dashboard-viewer", "kubernetes-dashboard-viewer-view")
    assert ctx["dashboard_service"]["name"] == "kubernetes-dashboard-kong-proxy"


# --- syntax -------------------------------------------------------------------------------------------------------

def _ansible_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_ROLES_PATH=str(ROLES), ANSIBLE_LOCALHOST_WARNING="False",
                ANSIBLE_INVENTORY_UNPARSED_WARNING="False")


def test_playbooks_syntax() -> None:
    for playbook in ("cni.yml", "dashboard.yml"):
        r = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "localhost,", f"playbooks/{playbook}"],
                           cwd=ROOT, env=_ansible_env(), capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stdout + r.stderr


def test_every_task_file_syntax(tmp_path: Path) -> None:
    """Every task file of both roles, imported statically (include_tasks would hide cilium's and the legacy
    dashboard's from the syntax check)."""
    plays = []
    for role in ("cni", "dashboard"):
        for tasks in sorted((ROLES / role / "tasks").glob("*.yml")):
            plays.append({"name": f"{role} {tasks.name}", "hosts": "all", "gather_facts": False,
                          "tasks": [{"ansible.builtin.import_role": {"name": role, "tasks_from": tasks.name}}]})
    playbook = tmp_path / "all-tasks.yml"
    playbook.write_text(yaml.safe_dump(plays))
    r = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "localhost,", str(playbook)],
                       cwd=ROOT, env=_ansible_env(), capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


# --- molecule -----------------------------------------------------------------------------------------------------


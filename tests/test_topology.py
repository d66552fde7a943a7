"""Each sample topology: its groups, its inventory (rendered, parsed by Ansible itself) and `plan`."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from provision import inventory, spec, steps, topology
from provision.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "inventories"


def build(name: str) -> topology.Topology:
    return topology.build(spec.load_spec(SAMPLES / f"{name}.yaml"))


def test_all_in_one_groups() -> None:
    t = build("all-in-one")
    g = t.groups
    assert g["control_plane"] == g["first_control_plane"] == ["all-in-one-cp1"]
    assert g["etcd"] == ["all-in-one-cp1"] and g["external_etcd"] == []
    assert g["workers"] == [] and g["loadbalancer"] == []
    assert "workloads" in t.roles_of("all-in-one-cp1")
    assert t.endpoint_host == t.node("all-in-one-cp1").address


def test_single_master_groups() -> None:
    g = build("single-master").groups
    assert g["control_plane"] == ["single-master-cp1"]
    assert g["workers"] == ["single-master-w1", "single-master-w2"]
    assert g["etcd"] == ["single-master-cp1"] and g["external_etcd"] == []
    assert g["loadbalancer"] == []


def test_multi_master_groups() -> None:
    t = build("multi-master")
    g = t.groups
    assert g["control_plane"] == ["multi-master-cp1", "multi-master-cp2"]
    assert g["first_control_plane"] == ["multi-master-cp1"]
    assert g["etcd"] == g["external_etcd"] == ["multi-master-etcd1"]
    assert g["loadbalancer"] == ["multi-master-lb1", "multi-master-lb2"]
    assert t.endpoint_host.endswith(".5") and t.endpoint_port == 6443


def test_ha_groups() -> None:
    g = build("ha").groups
    assert len(g["control_plane"]) == 3 and len(g["external_etcd"]) == 3
    assert set(g["k8s_cluster"]) == set(g["control_plane"]) | set(g["workers"])
    assert not set(g["etcd"]) & set(g["control_plane"])


def test_stacked_ha_groups() -> None:
    t = build("ha-stacked")
    assert t.groups["etcd"] == t.groups["control_plane"]
    assert t.groups["external_etcd"] == []
    assert all("etcd (stacked)" in t.roles_of(n) for n in t.groups["control_plane"])


def test_local_proxy_endpoint_moves_off_6443(tmp_path: Path) -> None:
    text = (SAMPLES / "multi-master.yaml").read_text().replace("type: vip", "type: local-proxy")
    text = text.replace("  loadBalancers: 2", "")
    t = topology.build(spec.load_text(text))
    assert (t.endpoint_host, t.endpoint_port) == ("127.0.0.1", 7443)
    assert t.groups["loadbalancer"] == []


def test_static_hosts_keep_their_names_and_ssh() -> None:
    text = """
apiVersion: provision.dev/v1alpha1
kind: Cluster
name: metal
topology: single-master
provider: {type: static}
hosts:
  - {name: cp1, address: 192.0.2.10, roles: [control-plane], user: debian, port: 2222, key: keys/id}
  - {name: w1, address: node-w1.example.net, roles: [worker]}
"""
    t = topology.build(spec.load_text(text, base_dir=Path("/srv/specs")))
    files = inventory.render(t)
    hosts = yaml.safe_load(files["inventory/hosts.yml"])["all"]["hosts"]
    assert hosts["cp1"]["ansible_port"] == 2222 and hosts["cp1"]["ansible_user"] == "debian"
    assert hosts["cp1"]["ansible_ssh_private_key_file"] == "/srv/specs/keys/id"
    assert hosts["w1"]["ansible_host"] == "node-w1.example.net"
    assert steps.steps_for(t)[0].id == "machines" and "existing" in steps.steps_for(t)[0].title


@pytest.mark.parametrize("sample", sorted(p.stem for p in SAMPLES.glob("*.yaml")))
def test_render_is_deterministic_and_parses_in_ansible(sample: str, tmp_path: Path) -> None:
    t = build(sample)
    first = inventory.render(t)
    assert first == inventory.render(build(sample))
    inventory.write(first, tmp_path)
    assert oct((tmp_path).stat().st_mode & 0o777) == "0o700"
    binary = shutil.which("ansible-inventory")
    if binary is None:
        pytest.skip("ansible-core is not installed")
    proc = subprocess.run([binary, "-i", str(tmp_path / "inventory" / "hosts.yml"), "--list"],
                          capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    for group, members in t.groups.items():
        assert sorted(data.get(group, {}).get("hosts", [])) == sorted(members), group
    some = t.nodes[0].name
    hostvars = data["_meta"]["hostvars"][some]
    assert hostvars["kubernetes_version"] == t.cluster.kubernetes_version
    assert hostvars["node_ip"] == t.nodes[0].address
    # os_prep's /etc/hosts lines, listed once: what the role reads from every host's node_ip when not given
    every = data["_meta"]["hostvars"]
    assert hostvars["os_prep_etc_hosts_entries"] == [f"{every[n.name]['node_ip']} {n.name}" for n in t.nodes]
    assert len(every) == len(t.nodes)


@pytest.mark.parametrize("sample", sorted(p.stem for p in SAMPLES.glob("*.yaml")))
def test_plan_prints_groups_and_steps(sample: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "-f", str(SAMPLES / f"{sample}.yaml")]) == 0
    text = capsys.readouterr().out
    assert "first_control_plane:" in text and "kubeadm init" in text
    order = [m.group(1) for m in re.finditer(r"^\s+\d+\. (.*)$", text, re.MULTILINE)]
    titles = [s.title for s in steps.steps_for(build(sample))]
    assert len(order) == len(titles)
    assert all(o.startswith(t) for o, t in zip(order, titles)), order
    joined = "\n".join(order)
    assert joined.index("kubeadm init") < joined.index("CNI")


@pytest.mark.parametrize("topo", spec.TOPOLOGIES)
def test_init_writes_a_spec_that_plans(topo: str, tmp_path: Path) -> None:
    target = tmp_path / "c.yaml"
    assert main(["init", "--topology", topo, "-o", str(target)]) == 0
    assert main(["plan", "-f", str(target)]) == 0
    assert main(["init", "--topology", topo, "-o", str(target)]) == 1  # no silent overwrite


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and "provision 0." in capsys.readouterr().out
    for verb in ("init", "plan"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert "usage: provision " + verb in capsys.readouterr().out


def test_virtualbox_clusters_get_a_host_only_range() -> None:
    text = (SAMPLES / "single-master.yaml").read_text().replace(
        "  type: docker ", "  type: vagrant\n  vagrant: {backend: virtualbox}\n  # ")
    t = topology.build(spec.load_text(text))
    assert t.node_cidr is not None and ipaddress.IPv4Network(t.node_cidr).subnet_of(
        ipaddress.IPv4Network("192.168.56.0/21"))

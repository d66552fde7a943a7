"""The Ansible roles and playbooks: rendered templates, playbook syntax, and each role's molecule scenario.

The molecule scenarios run real systemd nodes (the docker provider's node image) and are skipped, with the
reason, only where Docker or the node image is missing (PROVISION_REQUIRE_NODES=1 turns that into a failure).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest
import yaml

from provision import versions
from provision.providers import docker_engine

ROOT = Path(__file__).resolve().parent.parent
ROLES = ROOT / "roles"
PLAYBOOKS = ROOT / "playbooks"
# Every role has a molecule scenario; each one runs here (a role without one fails test_every_role_has_molecule).
MOLECULE_ROLES = sorted(p.parent.parent.parent.name for p in ROLES.glob("*/molecule/default/molecule.yml"))


# ---------------------------------------------------------------- role variables, resolved like Ansible would


def _version_test(value: Any, other: str, op: str = "==") -> bool:
    def key(v: Any) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", str(v))[:3])

    a, b = key(value), key(other)
    return {"<": a < b, "<=": a <= b, "==": a == b, "!=": a != b, ">=": a >= b, ">": a > b}[op]


def _bool_filter(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True)
    env.filters["bool"] = _bool_filter
    env.tests["version"] = _version_test
    env.globals["undef"] = _undef  # Ansible's: a required variable's default
    return env


def _undef(hint: str | None = None) -> jinja2.Undefined:
    return jinja2.StrictUndefined(hint=hint)


class RoleVars:
    """A role's defaults (and vars) over the group/host vars given, each templated on demand."""

    def __init__(self, role: str, given: dict[str, Any]) -> None:
        self.env = environment()
        self.raw: dict[str, Any] = {}
        for part in ("defaults", "vars"):
            path = ROLES / role / part / "main.yml"
            if path.exists():
                self.raw.update(yaml.safe_load(path.read_text()) or {})
        self.raw.update(given)  # group vars override role defaults (role vars/ are internal here)

    def __getitem__(self, name: str) -> Any:
        value = self.raw[name]
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            return self.env.from_string(value).render(self.context_for(value))
        return value

    def context_for(self, source: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
        names = jinja2.meta.find_undeclared_variables(self.env.parse(source))
        return {n: self[n] for n in names if n in self.raw and n not in (given or {})}

    def render_template(self, role: str, template: str, **extra: Any) -> str:
        """The template with `extra` as set_fact or a registered result would set it (over the role's vars)."""
        source = (ROLES / role / "templates" / template).read_text()
        return self.env.from_string(source).render({**self.context_for(source, extra), **extra})


# ---------------------------------------------------------------- kube_packages: the pkgs.k8s.io repository line


@pytest.mark.parametrize(("group_vars", "minor"), [
    ({"kubernetes_version": "1.36.6", "kubernetes_minor": "1.36"}, "1.36"),
    ({"kubernetes_version": "1.35.10"}, "1.35"),
    ({"kubernetes_version": "v1.37.2"}, "1.37"),
])
def test_repository_file_names_the_minor_and_the_keyring(group_vars: dict[str, str], minor: str) -> None:
    role = RoleVars("kube_packages", group_vars)
    text = role.render_template("kube_packages", "kubernetes.list.j2")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    expected = ("deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
                f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/ /")
    assert lines == [expected]
    assert role["kube_packages_repo_key_url"] == f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/Release.key"
    assert role["kube_packages_sources_file"] == "/etc/apt/sources.list.d/kubernetes.list"


@pytest.mark.parametrize(("mode", "source"), [("online", "repo"), ("offline", "artifacts"), (None, "repo")])
def test_artifacts_mode_picks_the_package_source(mode: str | None, source: str) -> None:
    given = {"artifacts_mode": mode} if mode is not None else {}
    assert RoleVars("kube_packages", given)["kube_packages_source"] == source


# ---------------------------------------------------------------- containerd: config.toml per major version


def containerd_config(version: str, oom_scores: str = "lowerable", **group_vars: Any) -> dict[str, Any]:
    """The config the role writes; `oom_scores` is what the node probe says of CAP_SYS_RESOURCE."""
    group_vars.setdefault("containerd_probe", {"stdout_lines": [f"oom-scores {oom_scores}"]})
    role = RoleVars("containerd", group_vars)
    text = role.render_template("containerd", "config.toml.j2", containerd_installed_version=version)
    return tomllib.loads(text)


@pytest.mark.parametrize("version", ["1.6.20", "1.7.28"])
def test_containerd_1x_config_is_version_2(version: str) -> None:
    cfg = containerd_config(version, pause_image="registry.k8s.io/pause:3.10.1")
    assert cfg["version"] == 2
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"
    assert cri["containerd"]["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["cni"]["bin_dir"] == "/opt/cni/bin"
    assert cfg["required_plugins"] == ["io.containerd.grpc.v1.cri"]


@pytest.mark.parametrize(("version", "cni_key"), [("2.0.5", "bin_dir"), ("2.1.4", "bin_dirs"), ("2.2.1", "bin_dirs")])
def test_containerd_2x_config_is_version_3(version: str, cni_key: str) -> None:
    cfg = containerd_config(version, pause_image="registry.k8s.io/pause:3.10.1")
    assert cfg["version"] == 3
    runtime = cfg["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert runtime["containerd"]["default_runtime_name"] == "runc"
    images = cfg["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10.1"
    assert "io.containerd.grpc.v1.cri" not in cfg["plugins"]  # no 1.x keys left over
    assert runtime["restrict_oom_score_adj"] is False
    assert cni_key in runtime["cni"]
    assert "sandbox_image" not in str(cfg)


@pytest.mark.parametrize(("version", "section"), [("1.7.28", "io.containerd.grpc.v1.cri"),
                                                  ("2.1.4", "io.containerd.cri.v1.runtime")])
def test_containerd_keeps_oom_scores_where_the_node_cannot_lower_them(version: str, section: str) -> None:
    """The kubelet asks -998 for sandboxes; without CAP_SYS_RESOURCE runc cannot set it and every sandbox fails."""
    pause = {"pause_image": "registry.k8s.io/pause:3.10.1"}
    assert containerd_config(version, "fixed", **pause)["plugins"][section]["restrict_oom_score_adj"] is True
    assert containerd_config(version, "lowerable", **pause)["plugins"][section]["restrict_oom_score_adj"] is False
    forced = containerd_config(version, "lowerable", containerd_restrict_oom_score_adj=True, **pause)
    assert forced["plugins"][section]["restrict_oom_score_adj"] is True


@pytest.mark.parametrize(("version", "section"), [("1.7.28", "io.containerd.grpc.v1.cri"),
                                                  ("2.1.4", "io.containerd.cri.v1.images")])
def test_containerd_logs_in_to_the_mirror_from_config_toml_then_kept_0600(version: str, section: str) -> None:
    """hosts.toml has no place for credentials: the CRI reads registry.configs.<host the pull contacts>.auth
    (containerd internal/cri/server/images/image_pull.go), deprecated but read through 2.3."""
    given = {"pause_image": "registry.k8s.io/pause:3.10.1", "registry_mirror": "10.0.0.1:5000"}
    cfg = containerd_config(version, registry_mirror_auth="c2l0ZTpwdw==", **given)
    assert cfg["plugins"][section]["registry"]["configs"] == {"10.0.0.1:5000": {"auth": {"auth": "c2l0ZTpwdw=="}}}
    assert "configs" not in containerd_config(version, **given)["plugins"][section]["registry"]
    with_auth = RoleVars("containerd", {"registry_mirror_auth": "c2l0ZTpwdw=="})
    assert with_auth["containerd_config_mode"] == "0600"
    assert RoleVars("containerd", {})["containerd_config_mode"] == "0644"


def test_containerd_follows_the_group_vars() -> None:
    cfg = containerd_config("2.2.1", pause_image="registry.example/pause:9", cgroup_driver="cgroupfs")
    runtime = cfg["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cfg["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "registry.example/pause:9"
    with pytest.raises(jinja2.UndefinedError, match="pause_image"):  # no pin in the role: provision passes it
        containerd_config("1.6.20")


def test_containerd_release_url_is_templated_from_the_version() -> None:
    role = RoleVars("containerd", {"containerd_version": "2.2.7", "containerd_source": "release",
                                   "containerd_release_checksums": versions.CONTAINERD_SHA256})
    role.raw["containerd_arch"] = "amd64"
    assert " ".join(role["containerd_release_url"].split()) == (
        "https://github.com/containerd/containerd/releases/download/v2.2.7/containerd-2.2.7-linux-amd64.tar.gz")
    assert role["containerd_release_sha256"] == (  # kubespray's checksums.yml
        "91cd216ea26a1b8b512219d3f205375c967e7b7de4dae571bc3dd16bfacd34b5")
    unset = RoleVars("containerd", {"containerd_version": None})  # provision passes null for the distro's package
    with pytest.raises(jinja2.UndefinedError):  # a release install without a version: no pin in the role
        unset["containerd_release_version"]


# ---------------------------------------------------------------- playbooks


def ansible_env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}


@pytest.mark.parametrize(("version_line", "unpack"), [
    ("version containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7193e4e490e9fbdc236c0e811ccaba3376", False),
    ("version containerd github.com/containerd/containerd 2.1.4~ds1 2.1.4~ds1-1", False),
    ("version containerd github.com/containerd/containerd/v2 v2.1.40 0123abcd", True),
    ("version containerd github.com/containerd/containerd/v2 v2.2.1 0123abcd", True),
    ("version none", True),
])
def test_containerd_unpacks_a_release_only_when_the_probe_found_another_version(
        version_line: str, unpack: bool, tmp_path: Path) -> None:
    """installed-version.yml, run by Ansible on a probe's output: the release/artifacts paths unpack only when
    the version the probe read is not the wanted one."""
    play = tmp_path / "play.yml"
    out = tmp_path / "needs-unpack"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars_files": [str(ROLES / "containerd" / "vars" / "main.yml")],
        "vars": {"containerd_release_version": "2.1.4",
                 "containerd_probe": {"stdout_lines": ["package absent", version_line, "service none"]}},
        "tasks": [{"ansible.builtin.include_tasks": str(ROLES / "containerd" / "tasks" / "installed-version.yml")},
                  {"ansible.builtin.copy": {"content": "{{ containerd_needs_unpack | bool }}", "dest": str(out),
                                            "mode": "0644"}}]}]))
    proc = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(play)], capture_output=True, text=True, env=ansible_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text() == str(unpack)


FLOOR_1_35 = {"1.7": "1.7.28", "2.1": "2.1.5", "2.2": "2.2.0"}
FLOOR_1_37 = {"2.2": "2.2.0"}


@pytest.mark.parametrize(("probe", "floor", "allow", "refused"), [
    (["version containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1", "candidate 1.6.20~ds1-1+b1"],
     FLOOR_1_37, False, True),  # Debian 12's, installed
    (["version none", "candidate 1.7.24~ds1-6+b4"], FLOOR_1_35, False, True),  # Debian 13's, not installed yet
    (["version none", "candidate 1.7.28~ds1-1"], FLOOR_1_35, False, False),
    (["version none", "candidate 2.1.9~ds1-1"], FLOOR_1_37, False, True),
    (["version none", "candidate 2.3.1-1"], FLOOR_1_37, False, False),  # a line newer than every floor
    (["version none", "candidate (none)"], FLOOR_1_37, False, False),  # nothing known: apt decides
    (["version none", "candidate 1.6.20~ds1-1+b1"], FLOOR_1_37, True, False),  # allowUnsupportedVersion
    (["version none", "candidate 1.6.20~ds1-1+b1"], {}, False, False),  # the role on its own: no floor
])
def test_containerd_refuses_a_distribution_package_below_the_floor(
        probe: list[str], floor: dict[str, str], allow: bool, refused: bool, tmp_path: Path) -> None:
    """distro-floor.yml, run by Ansible on a probe's output, before apt installs anything."""
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "vars_files": [str(ROLES / "containerd" / "vars" / "main.yml")],
        "vars": {"containerd_source": "distro", "containerd_floor": floor, "kubernetes_minor": "1.37",
                 "containerd_allow_unsupported_version": allow,
                 "containerd_probe": {"stdout_lines": ["package absent", *probe, "service none"]}},
        "tasks": [{"ansible.builtin.include_tasks": str(ROLES / "containerd" / "tasks" / "distro-floor.yml")}]}]))
    proc = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(play)], capture_output=True,
                          text=True, env=ansible_env(), timeout=120, check=False)
    assert (proc.returncode != 0) == refused, proc.stdout + proc.stderr
    if refused:
        assert "below what Kubernetes 1.37 supports" in proc.stdout and "remove containerRuntime.source" in proc.stdout


def run_preflight(extra_vars: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """preflight.yml on this machine (localhost, a local connection), with these extra variables."""
    args = {"ansible_python_interpreter": sys.executable, **extra_vars}
    return subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", "localhost,", "-c", "local",
                           "-e", yaml.safe_dump(args, default_flow_style=True), str(PLAYBOOKS / "preflight.yml")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize(("extra", "refused"), [
    ({}, []),
    ({"preflight_architectures": ["s390x"], "preflight_minimums": {"control-plane": {"cpus": 64, "memory_mib": 1},
                                                                   "worker": {"cpus": 1, "memory_mib": 1}}},
     ["is x86_64; supported: s390x", "(control-plane) has", "needs 64 CPU(s)"]),
    # the spec's kubernetes.ignorePreflightErrors: NumCPU lifts the CPU minimum (any case), Mem does not
    ({"preflight_minimums": {"control-plane": {"cpus": 64, "memory_mib": 1}, "worker": {"cpus": 1, "memory_mib": 1}},
      "kubeadm_ignore_preflight_errors": ["numcpu"]}, []),
    ({"preflight_minimums": {"control-plane": {"cpus": 64, "memory_mib": 1}, "worker": {"cpus": 1, "memory_mib": 1}},
      "kubeadm_ignore_preflight_errors": ["Mem"]}, ["needs 64 CPU(s)"]),
])
def test_preflight_names_every_problem_of_a_host_in_one_check(extra: dict[str, Any], refused: list[str]) -> None:
    """preflight.yml on this machine (x86_64 Debian 12, 2 CPUs): one assert over every host, naming each problem."""
    if os.uname().machine != "x86_64":
        pytest.skip("the expected refusal names x86_64")
    proc = run_preflight({"node_roles": ["control-plane", "worker"], **extra}, ansible_env())
    assert (proc.returncode != 0) == bool(refused), proc.stdout + proc.stderr
    for text in refused:
        assert text in proc.stdout, proc.stdout


def test_preflight_gathers_what_a_partial_fact_cache_lacks(tmp_path: Path) -> None:
    """A fact cache filled by a setup of fewer subsets stops the play's smart gathering: preflight's one run_once
    task gathers, for the hosts whose cached facts lack what the checks read, the rest (delegate_facts)."""
    env = {**ansible_env(), "ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_GATHERING": "smart",
           "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts")}
    assert run_preflight({"node_roles": ["worker"]}, env).returncode == 0
    (cached,) = (tmp_path / "facts").iterdir()
    entry = json.loads(cached.read_text())
    facts = json.loads(entry["__payload__"])  # ansible-core 2.19 keeps the facts as one serialized payload
    entry["__payload__"] = json.dumps({k: v for k, v in facts.items()
                                       if not k.startswith(("ansible_processor", "ansible_memtotal"))})
    cached.write_text(json.dumps(entry))
    proc = run_preflight({"node_roles": ["worker"]}, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: [localhost] => (item=localhost)" in proc.stdout, proc.stdout


@pytest.mark.parametrize("playbook", sorted(p.name for p in PLAYBOOKS.glob("*.yml")))
def test_playbook_syntax(playbook: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "--syntax-check", "-i", "localhost,",
                           str(PLAYBOOKS / playbook)],
                          capture_output=True, text=True, env=ansible_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# each leaves out the nodes where the survey found nothing to do (playbooks/survey.yml)
@pytest.mark.parametrize(("playbook", "hosts", "role"), [
    ("os.yml", "all:!provision_converged", "os_prep"), ("containerd.yml", "k8s_cluster:!provision_converged", "containerd"),
    ("kubernetes.yml", "k8s_cluster:!provision_converged", "kube_packages"),
])
def test_playbooks_target_the_inventory_groups(playbook: str, hosts: str, role: str) -> None:
    (play,) = yaml.safe_load((PLAYBOOKS / playbook).read_text())
    assert play["hosts"] == hosts
    assert [r["role"] if isinstance(r, dict) else r for r in play["roles"]] == [role]
    assert "!all" in play["gather_subset"]  # facts are gathered minimally


def run_tasks_locally(tmp_path: Path, host: str, tasks: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run a play of these tasks on this machine under a host name (the roles' refusals only read it); returns the
    process and its output on one line."""
    playbook = tmp_path / "refusal.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n" + tasks)
    proc = subprocess.run([sys.executable, "-m", "ansible.cli.playbook", "-i", f"{host},", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
                          capture_output=True, text=True, env=ansible_env(), timeout=120, check=False)
    return proc, " ".join(proc.stdout.split())


def test_os_prep_refuses_other_systems_by_name(tmp_path: Path) -> None:
    """The OS check runs before any change: a CentOS host is refused with the host, the OS and the fix."""
    proc, out = run_tasks_locally(
        tmp_path, "centos-node",
        "    - ansible.builtin.set_fact: {distribution: CentOS, distribution_version: '9', os_family: RedHat,"
        " virtualization_type: kvm, cacheable: true}\n"
        "    - ansible.builtin.include_role: {name: os_prep}\n")
    assert proc.returncode == 2, out
    assert "centos-node runs CentOS 9 (OS family RedHat)" in out
    assert "os_prep supports Debian and Ubuntu only" in out
    assert "changed=0" in out


@pytest.mark.parametrize(("role", "fact", "subset"), [
    ("os_prep", "distribution", "distribution"),
    ("containerd", "architecture", "platform"),
    ("kube_packages", "architecture", "platform"),
    ("etcd", "architecture", "platform"),
])
def test_a_play_that_gathered_no_facts_gets_one_line_naming_the_fact(tmp_path: Path, role: str, fact: str,
                                                                      subset: str) -> None:
    """The roles read facts the play gathers (provision's step plays gather one subset for all of them, so a
    re-run pays no per-host fallback task): a play without them is told which fact and how, before any change."""
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  other\n")  # a directory, so the roles get as far as the fact
    variables = {"containerd": f"{{containerd_source: artifacts, containerd_version: 2.1.9, artifacts_dir: {tmp_path}}}",
                 "kube_packages": f"{{kube_packages_source: artifacts, kubernetes_version: 1.37.2, "
                                  f"artifacts_dir: {tmp_path}}}",
                 "etcd": f"{{etcd_source: artifacts, etcd_version: 3.6.5, etcd_artifacts_dir: {tmp_path}}}",
                 "os_prep": "{}"}[role]
    tasks_from = ", tasks_from: install-artifacts" if role == "etcd" else ""  # its install, after the PKI's
    proc, out = run_tasks_locally(
        tmp_path, "bare-node",
        f"    - ansible.builtin.include_role: {{name: {role}{tasks_from}}}\n      vars: {variables}\n")
    assert proc.returncode == 2, out
    assert f"{role} reads the {fact} fact: gather facts in the play (gather_facts: true, or gather_subset with " \
           f"{subset})" in out, out
    assert "changed=0" in out


def test_a_failed_kubeadm_is_explained_by_its_last_words_without_secrets(tmp_path: Path) -> None:
    """kubeadm prints its error last, on stderr after any warnings: the explanation keeps the end of it (a head
    of warnings hid the cause), and neither the bootstrap token nor the certificate key reaches it. Run here on
    init's task file, which touches nothing before kubeadm (join's writes /etc/kubernetes first): join explains
    its failure with the same expression."""
    role, tasks = "kubeadm_init", "init"
    explain = re.compile(r"(?ms)^        kubeadm_(?:init|join)_output: >-\n(.*?}})$")
    [init_expr] = explain.findall((ROLES / "kubeadm_init/tasks/init.yml").read_text())
    [join_expr] = explain.findall((ROLES / "kubeadm_join/tasks/join.yml").read_text())
    assert join_expr == init_expr.replace("kubeadm_init_", "kubeadm_join_")
    fake = tmp_path / "bin" / "kubeadm"
    fake.parent.mkdir()
    token, key = "abcdef.0123456789abcdef", "f" * 64
    fake.write_text("#!/bin/sh\necho 'your join command: kubeadm join --token " + token + "'\n"
                    "for i in $(seq 40); do echo \"W1201 warning number $i of a noisy preflight\" >&2; done\n"
                    f"echo 'error execution phase preflight: the cause, after token {token} and key {key}' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    proc, out = run_tasks_locally(
        tmp_path, "cp1",
        f"    - ansible.builtin.include_role:\n        name: {role}\n        tasks_from: {tasks}\n"
        f"        apply: {{environment: {{PATH: \"{fake.parent}:/usr/bin:/bin\"}}}}\n"
        f"      vars: {{kubeadm_init_config_file: {tmp_path}/c.yaml}}\n")
    assert proc.returncode == 2, out
    assert f"kubeadm {tasks} failed on cp1 (exit 1): ..." in out, out
    assert "error execution phase preflight: the cause, after token <token> and key <key>" in out, out
    assert token not in out and key not in out


@pytest.mark.parametrize(("role", "variable", "expected"), [
    ("containerd", "containerd_source", "use distro, release or artifacts"),
    ("kube_packages", "kube_packages_source", "use repo or artifacts"),
])
def test_an_unknown_source_is_refused_by_name_before_any_change(tmp_path: Path, role: str, variable: str,
                                                                 expected: str) -> None:
    """The refusal sits inside the role's one include (a re-run pays per task): it must still come before any
    change, name the host and the value, and say what to use."""
    proc, out = run_tasks_locally(
        tmp_path, "odd-node", f"    - ansible.builtin.include_role: {{name: {role}}}\n      vars: {{{variable}: tarball}}\n")
    assert proc.returncode == 2, out
    assert f"odd-node: {variable} is 'tarball'; {expected}" in out
    assert "changed=0" in out


# ---------------------------------------------------------------- molecule


def nodes_missing() -> str | None:
    if not docker_engine.engine_running():
        return "Docker is not installed or its engine is not running"
    if not docker_engine.image_exists():
        return f"the node image {docker_engine.NODE_IMAGE} is missing (provision image build)"
    return None


ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Scenarios run this many at a time: each waits mostly on apt, dpkg and Docker, so two overlap well on 2 cores.
MOLECULE_PARALLEL = int(os.environ.get("PROVISION_MOLECULE_PARALLEL", "2"))


def run_molecule(role: str) -> subprocess.CompletedProcess[str]:
    # Debian's docker client first (a newer CLI elsewhere in PATH may not talk to this engine), and exactly the
    # node image checked above (the scenarios default to its stable alias).
    env = {**os.environ, "PATH": "/usr/bin:" + os.environ.get("PATH", ""), "ANSIBLE_NOCOLOR": "1",
           "PY_COLORS": "0", "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1",
           "PROVISION_NODE_IMAGE": docker_engine.NODE_IMAGE}
    return subprocess.run([sys.executable, "-m", "molecule", "test"], cwd=ROLES / role, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def molecule_runs(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """The selected roles' `molecule test`, started together MOLECULE_PARALLEL at a time (each scenario has its
    own containers and network, mol-<name>); each test below waits for its own."""
    why = nodes_missing()
    if why:
        if os.environ.get("PROVISION_REQUIRE_NODES"):
            pytest.fail(f"real nodes are required here but {why}")
        pytest.skip(why)
    with ThreadPoolExecutor(max_workers=MOLECULE_PARALLEL) as pool:
        selected = [item.callspec.params["role"] for item in request.session.items
                    if getattr(item, "originalname", "") == "test_molecule"]
        yield {role: pool.submit(run_molecule, role) for role in selected}


@pytest.mark.nodes
@pytest.mark.slow
@pytest.mark.parametrize("role", MOLECULE_ROLES)
def test_molecule(role: str, molecule_runs: dict[str, Future[subprocess.CompletedProcess[str]]]) -> None:
    proc = molecule_runs[role].result()
    if proc.returncode != 0:
        tail = "\n".join(ANSI.sub("", proc.stdout + proc.stderr).splitlines()[-120:])
        print(tail)
        pytest.fail(f"molecule test of {role} failed (exit {proc.returncode}); the output's tail is above")


def test_every_role_has_molecule() -> None:
    roles = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists())
    assert roles == MOLECULE_ROLES

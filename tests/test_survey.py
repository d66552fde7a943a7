"""The survey step (playbooks/survey.yml) without nodes: how it splits its one round trip, and that it judges with
the roles' own templates. On real nodes: tests/test_bootstrap.py (check_survey_skips_and_mends)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = ROOT / "playbooks"
SURVEYED = ("os_prep", "haproxy", "containerd", "kube_packages")  # the roles whose conditions survey.yml reads


def survey_sections():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("survey_filter", PLAYBOOKS / "filter_plugins" / "survey.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.survey_sections


def test_sections_are_each_roles_probe_result_and_a_block_cut_short_is_left_out() -> None:
    out = survey_sections()("### survey os_prep\nmodule overlay ok\nswaps 0\n### survey-rc 0\n"
                            "### survey kubeadm_join\n### survey-rc 0\n"
                            "### survey containerd\npackage installed\n### survey-rc 1\n"
                            "### survey haproxy\npackage installed\n")
    assert out == {
        "os_prep": {"stdout": "module overlay ok\nswaps 0", "stdout_lines": ["module overlay ok", "swaps 0"], "rc": 0},
        "kubeadm_join": {"stdout": "", "stdout_lines": [], "rc": 0},
        "containerd": {"stdout": "package installed", "stdout_lines": ["package installed"], "rc": 1},
    }


def test_the_survey_renders_each_template_from_the_role_that_owns_it() -> None:
    """A role's condition that renders a template (lookup('template', NAME)) finds it in the role when the role
    runs; in the survey's play it finds playbooks/templates/NAME, which must be that very file."""
    lookup = re.compile(r"lookup\('ansible\.builtin\.template', '([^']+)'")
    wanted = {}
    for role in SURVEYED:
        for name in lookup.findall((ROOT / "roles" / role / "vars" / "main.yml").read_text()):
            wanted[name] = ROOT / "roles" / role / "templates" / name
    assert wanted, "no template lookups found: the pattern no longer matches the roles' vars"
    for name, source in wanted.items():
        link = PLAYBOOKS / "templates" / name
        assert link.is_file() and link.resolve() == source.resolve(), f"playbooks/templates/{name} -> {source}"


def test_every_read_of_the_survey_is_the_script_its_owner_runs() -> None:
    """Each name in provision_survey_names is a NAME_probe_script defined once (a role's vars, or playbooks/vars);
    the survey loads that file, and the owner's own task runs the same variable: no copy of a probe to drift."""
    survey = (PLAYBOOKS / "survey.yml").read_text()
    block = re.search(r"provision_survey_names: >-\n((?:\s{6,}.*\n)+)", survey)
    assert block, "provision_survey_names not found in survey.yml"
    names = re.findall(r"'([a-z_]+)'", block.group(1))
    names = [n for n in names if n != "api_proxy"]  # a group name, not a read
    assert "kubeadm_join" in names and "os_prep" in names, names
    sources = list(ROOT.glob("roles/*/vars/main.yml")) + list(PLAYBOOKS.glob("vars/*.yml"))
    for name in names:
        owners = [p for p in sources if re.search(rf"^{name}_probe_script:", p.read_text(), re.MULTILINE)]
        assert len(owners) == 1, f"{name}_probe_script defined in {owners}"
        owner = owners[0]
        use = "{{ " + name + "_probe_script }}"
        if owner.parent.name == "vars" and owner.parent.parent.name != "playbooks":
            role = owner.parent.parent
            assert re.search(rf"name: {role.name}\n\s+tasks_from: ", survey), f"survey.yml imports {role.name}"
            runners = [t for t in (role / "tasks").glob("*.yml") if use in t.read_text()]
        else:
            assert f"- vars/{owner.name}" in survey, f"survey.yml loads vars/{owner.name}"
            runners = [p for p in PLAYBOOKS.glob("*.yml") if p.name != "survey.yml" and use in p.read_text()]
        assert runners, f"nothing but the survey runs {name}_probe_script"

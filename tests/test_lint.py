"""ansible-lint, production profile, over every role and playbook (configuration: .ansible-lint, offline)."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Excluded while their roles are in progress elsewhere; everything else must be linted.
IN_PROGRESS = {"roles/cni/", "roles/dashboard/", "playbooks/cni.yml", "playbooks/dashboard.yml"}


def test_lint_covers_every_finished_role_and_playbook() -> None:
    config = yaml.safe_load((ROOT / ".ansible-lint").read_text())
    assert config["profile"] == "production" and config["offline"] is True
    excluded = [p for p in config["exclude_paths"] if p not in IN_PROGRESS]
    targets = [f"roles/{p.name}/tasks/main.yml" for p in (ROOT / "roles").iterdir()] + [
        f"playbooks/{p.name}" for p in (ROOT / "playbooks").glob("*.yml")]
    for target in targets:
        if not any(target.startswith(p) for p in IN_PROGRESS):
            assert not any(fnmatch.fnmatch(target, p + "*") for p in excluded), target


def test_roles_and_playbooks_pass_the_production_profile() -> None:
    binary = shutil.which("ansible-lint")
    if binary is None:
        pytest.skip("ansible-lint is not installed (pip install -e '.[test]')")
    proc = subprocess.run([binary, "--profile", "production", "--offline", "--nocolor", "--format", "pep8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _imports_of(path: Path, package: Path) -> set[str]:
    """The provision modules a module imports (at any level, lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("provision"):
            if node.module != _module_name(path, package):  # a package's __init__ importing its own modules
                found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("provision"))
    modules = {_module_name(p, package) for p in package.rglob("*.py")}
    return {m for m in found if m in modules}


def _module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_package_has_no_import_circles() -> None:
    """The package reads top-down: no module imports, directly or through others, a module that imports it."""
    package = ROOT / "provision"
    graph = {_module_name(p, package): _imports_of(p, package) for p in package.rglob("*.py")}
    for start, imported in graph.items():
        todo, seen = list(imported), set()
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            seen.add(module)
            todo.extend(graph.get(module, ()))
        # a package's __init__ may re-export its own modules; they must not import it back
        assert start not in seen, f"{start} imports itself through {sorted(seen)}"


def _fact_gathers(path: Path) -> Iterator[tuple[str, list[str] | None]]:
    """Each place a playbook gathers facts (a play's own gathering, a setup task), with the subset it asks for."""
    for play in yaml.safe_load(path.read_text()) or []:
        if play.get("gather_facts"):
            yield f"{path.name}: play {play['name']!r}", play.get("gather_subset")
        for task in play.get("pre_tasks", []) + play.get("tasks", []):
            if "ansible.builtin.setup" in task:
                yield f"{path.name}: task {task['name']!r}", (task["ansible.builtin.setup"] or {}).get("gather_subset")


def test_every_playbook_gathers_the_same_facts() -> None:
    """With smart gathering the first play of a run fills the fact cache and later plays read it without
    gathering: a play asking for a narrower or different subset would leave the next step's facts undefined."""
    gathers = [g for p in sorted((ROOT / "playbooks").glob("*.yml")) for g in _fact_gathers(p)]
    assert len(gathers) >= 10, gathers
    reference = dict(gathers)["os.yml: play 'Prepare the OS'"]
    assert reference and "!all" in reference, reference
    odd = [f"{where}: {subset}" for where, subset in gathers if subset != reference]
    assert not odd, f"every fact gathering asks for {reference}; these differ: {odd}"


def test_roles_and_playbooks_read_facts_only_through_ansible_facts() -> None:
    """provision runs Ansible with INJECT_FACT_VARS off (provision/runner.py): a fact read as a top-level ansible_*
    variable would be undefined there. The names are those this machine's own facts carry."""
    proc = subprocess.run([sys.executable, "-m", "ansible.cli.adhoc", "-i", "localhost,", "-c", "local", "-m", "setup",
                           "-a", "gather_subset=all", "-e", f"ansible_python_interpreter={sys.executable}",
                           "--one-line", "localhost"], capture_output=True, text=True, timeout=120, check=True)
    facts = json.loads(proc.stdout.split("=>", 1)[1])["ansible_facts"]
    names = {k for k in facts if k.startswith("ansible_") and k != "ansible_local"} | {"ansible_default_ipv4"}
    pattern = re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b")
    found = [f"{path.relative_to(ROOT)}:{n}: {m.group(1)}"
             for top in ("roles", "playbooks", "templates")
             for path in sorted((ROOT / top).rglob("*")) if path.is_file() and "molecule" not in path.parts
             and path.suffix in (".yml", ".yaml", ".j2")
             for n, line in enumerate(path.read_text().splitlines(), 1) for m in [pattern.search(line)] if m]
    assert not found, "read these as ansible_facts.<name> (without the ansible_ prefix):\n" + "\n".join(found)

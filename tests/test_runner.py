"""The runner's batching of several steps into one ansible-playbook run, on three local hosts (Ansible's local
connection: no nodes needed). A host lost in one step must stop every later step on every host, as separate
runs did."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from provision import runner


def test_a_failed_host_stops_every_later_step(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "inventory").mkdir(parents=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (state / "inventory" / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {h: dict(local) for h in ("a", "b", "c")}}}))
    first, second = tmp_path / "first.yml", tmp_path / "second.yml"
    first.write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "Fail on b", "ansible.builtin.fail": {"msg": "b broke"},
                   "when": "inventory_hostname == 'b'"}]}]))
    second.write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "Leave a trace", "ansible.builtin.file": {
            "path": str(tmp_path) + "/ran-{{ inventory_hostname }}", "state": "touch", "mode": "0644"}}]}]))

    results = runner.run_steps(state, [("first", str(first)), ("second", str(second))], 3)

    assert [r.playbook for r in results] == ["first"], "the second step began after a host failed"
    assert [(f.host, f.task) for f in results[0].failures] == [("b", "Fail on b")]
    assert not list(tmp_path.glob("ran-*")), "the second step ran on the hosts that were left"


def test_steps_run_in_order_on_every_host_when_none_fails(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "inventory").mkdir(parents=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (state / "inventory" / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {h: dict(local) for h in ("a", "b")}}}))
    steps = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump([{
            "hosts": "all", "gather_facts": False,
            "tasks": [{"name": "Leave a trace", "ansible.builtin.file": {
                "path": f"{tmp_path}/{name}-{{{{ inventory_hostname }}}}", "state": "touch", "mode": "0644"}}]}]))
        steps.append((name, str(path)))

    results = runner.run_steps(state, steps, 2)

    assert [r.playbook for r in results] == ["one", "two"]
    assert all(r.ok and sorted(r.tasks) == ["a", "b"] for r in results)
    assert sorted(p.name for p in tmp_path.glob("*-?")) == ["one-a", "one-b", "two-a", "two-b"]


def test_a_failure_is_reported_after_a_rescue_and_always_tasks(tmp_path: Path) -> None:
    """The roles explain a failure in a block's rescue and clean up in its `always` (kubeadm_join removes the join
    configuration, which carries the token): the explanation is the host's failure, though a task ran after it.
    A failure the rescue handled is no failure."""
    state = tmp_path / "state"
    (state / "inventory").mkdir(parents=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (state / "inventory" / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {h: dict(local) for h in ("a", "b")}}}))
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"block": [{"name": "Break", "ansible.builtin.fail": {"msg": "raw failure"}}],
                   "rescue": [{"name": "Explain", "ansible.builtin.fail": {"msg": "explained on b"},
                               "when": "inventory_hostname == 'b'"}],
                   "always": [{"name": "Clean up", "ansible.builtin.file": {
                       "path": str(tmp_path) + "/cleaned-{{ inventory_hostname }}", "state": "touch",
                       "mode": "0644"}}]}]}]))

    results = runner.run_steps(state, [("play", str(play))], 2)

    assert [(f.host, f.task, f.message) for f in results[0].failures] == [("b", "Explain", "explained on b")]
    assert sorted(p.name for p in tmp_path.glob("cleaned-*")) == ["cleaned-a", "cleaned-b"]


def test_a_change_under_no_log_is_counted(tmp_path: Path) -> None:
    """ansible-runner hides a no_log task's whole result, `changed` too: the count of changes (what a second run's
    "0 changes" rests on) must still see it, per task and per loop, and not count the no_log task that changed
    nothing."""
    state = tmp_path / "state"
    (state / "inventory").mkdir(parents=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (state / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"a": dict(local)}}}))
    play = tmp_path / "play.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "all", "gather_facts": False,
        "tasks": [
            {"name": "Change, hidden", "ansible.builtin.command": "true", "no_log": True},
            {"name": "Change one item, hidden", "ansible.builtin.command": "true", "no_log": True,
             "loop": [1, 2], "changed_when": "item == 2"},
            {"name": "Change nothing, hidden", "ansible.builtin.command": "true", "no_log": True,
             "changed_when": False},
            {"name": "Change nothing in a loop, hidden", "ansible.builtin.command": "true", "no_log": True,
             "loop": [1, 2], "changed_when": False},
        ]}]))

    results = runner.run_steps(state, [("play", str(play))], 1)

    assert results[0].ok
    assert results[0].changed_tasks == [("a", "Change, hidden"), ("a", "Change one item, hidden")]
    assert results[0].changed == {"a": 2}

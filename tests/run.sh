#!/usr/bin/env bash
# The project's one test command (README "Tests"; CI runs exactly this).
# On a fresh machine it installs what the tests need: the Python package with its test extras, and, as root,
# Vagrant, the Docker engine and the node image (see provision/providers/docker_engine.py), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'

# Real test nodes: the Docker engine (installed and started here when run as root) and the node image,
# built once and cached by Docker. After this, a missing engine fails the node tests instead of skipping them.
if [ "$(id -u)" = 0 ]; then
  # Vagrant's docker provider is tested for real; skopeo copies images, against Debian's distribution registry
  if ! command -v vagrant >/dev/null || ! command -v skopeo >/dev/null || ! [ -x /usr/bin/docker-registry ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q vagrant vagrant-libvirt \
      skopeo docker-registry >/dev/null
  fi
  provision image build --install-engine
  # systemd in each node holds about 10 inotify instances: the 10-node samples (and the 30-node benchmark) need
  # more than Debian's default 128, and the docker provider refuses to boot nodes that would hang
  if [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -lt 1024 ]; then
    sysctl -q -w fs.inotify.max_user_instances=1024
  fi
  # One real VM (tests/test_vm.py): libvirt and QEMU installed, libvirtd and virtlogd started where no init system
  # runs them, and the box built from Debian's packages (cached by its recipe's digest)
  provision image build --vm --install-engine
  export PROVISION_REQUIRE_VMS=1
else
  provision image build
fi
export PROVISION_REQUIRE_NODES=1
# nodes and the VM an interrupted earlier run left (only what the tests made: tests/leftovers.py)
python3 -m tests.leftovers

python3 -m ruff check provision tests bench
python3 -m mypy

# The VM lane runs alongside the others when the whole suite runs: QEMU's emulation keeps one core busy for
# 8-25 minutes while the lane itself waits on it (measured alone: 18 min of wall time, 3.5 min of the test's own CPU).
# Both lanes fill the Debian test cache (tests/cri/debian.py) under its file lock.
# -rP: the passing VM test prints the first full up's step times into the log (what the VM costs, step by step).
vm_pid=""
not_vm=()
niced=()
if [ "$#" = 0 ] && [ -n "${PROVISION_REQUIRE_VMS:-}" ]; then
  vm_log=$(mktemp)
  python3 -m pytest -q -rP -p no:cacheprovider --durations=5 --basetemp=/tmp/provision-vm-lane -m vm \
    tests/test_vm.py >"$vm_log" 2>&1 &
  vm_pid=$!
  trap 'kill "$vm_pid" 2>/dev/null || true' INT TERM
  not_vm=(-m "not vm")
  # the VM is the lane that waits on time (SSH and Ansible's timeouts); the others only on work: theirs yields
  niced=(nice -n 10)
fi
# Two workers: alone, the suite keeps one core of two busy (Ansible's controller, then the nodes, in turn); each
# worker takes a whole module at a time (tests/conftest.py: xdist groups), so a module's cluster is made once
rc=0
# (pytest-benchmark, where some other package brought it, would only warn that xdist disables it: we do not use it)
"${niced[@]}" python3 -m pytest -q -p no:cacheprovider -p no:benchmark --durations=40 -n "${PROVISION_TEST_WORKERS:-2}" \
  --dist loadgroup --no-loadscope-reorder \
  "${not_vm[@]}" "$@" || rc=$?
if [ -n "$vm_pid" ]; then
  echo "--- the VM lane (tests/test_vm.py, run alongside) ---"
  wait "$vm_pid" || rc=$((rc ? rc : 1))
  cat "$vm_log"
fi
[ "$rc" = 0 ] || exit "$rc"
python3 bench/render.py --repeat 3

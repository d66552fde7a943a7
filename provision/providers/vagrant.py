"""Provider `vagrant`: the machines come from the repo's Vagrantfile, driven through python-vagrant.

Each cluster has its own Vagrant working dir, `<state>/vagrant`: the machine list rendered from the topology
(`machines.json`, from templates/vagrant-machines.json.j2), Vagrant's dotfile dir (`.vagrant`) and the logs of
every Vagrant command (`vagrant.log`, `vagrant.err`). Vagrant runs with VAGRANT_VAGRANTFILE pointing at the
repo's Vagrantfile and PROVISION_MACHINES at the machine list, so one Vagrantfile serves every cluster.

Backends: libvirt (KVM, the default), virtualbox, and docker (Vagrant's docker provider with our systemd node
image: no VM needed). Ansible logs in as root with the cluster's own key (`<state>/ssh/id_ed25519`) at the
address and port `vagrant ssh-config` reports (docker: a port forwarded on 127.0.0.1; libvirt: the management
network's address; VirtualBox: a forwarded port), while the nodes talk to each other on the topology's fixed
addresses. Each node's host key is read through a channel that needs no SSH trust (`docker exec`, or
`vagrant ssh`, which uses Vagrant's own key) and pinned in `<state>/known_hosts` for that address and port.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import jinja2
import vagrant

from provision import paths, ssh
from provision.errors import UserError
from provision.inventory import Connection
from provision.providers.docker_engine import NODE_IMAGE, docker, docker_binary, require_engine, require_image
from provision.providers.vm_box import LIBVIRT_SOCKET, libvirt_running
from provision.spec import ManagementNetworkSpec, VagrantSpec
from provision.topology import Topology

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
DOCKER_LABEL = "provision.vagrant"  # set by the Vagrantfile on docker-backend nodes
NOT_CREATED = ("not_created", "not created")

T = TypeVar("T")

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(paths.TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


class VagrantProvider:
    def __init__(self, topo: Topology, state_dir: Path) -> None:
        self.topo = topo
        self.name = topo.cluster.name
        self.state_dir = state_dir
        self.settings = topo.cluster.spec.provider.vagrant or VagrantSpec()
        self.backend = self.settings.backend
        self.workdir = state_dir / "vagrant"
        self.machines_file = self.workdir / "machines.json"
        self.dotfile = self.workdir / ".vagrant"
        self.log = self.workdir / "vagrant.log"
        self.err_log = self.workdir / "vagrant.err"
        self.key = state_dir / "ssh" / "id_ed25519"
        self.known_hosts = state_dir / "known_hosts"
        self._conns: dict[str, Connection] | None = None

    # ------------------------------------------------------------ create

    def create(self) -> dict[str, Connection]:
        ssh.ensure_key(self.key)
        self.render()
        self._require_backend()
        v = self._vagrant()
        self._call("up", lambda: v.up(provider=self.backend))
        self._conns = None
        conns = self.connections()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda name: self._pin(v, name, conns[name]), conns))
        return conns

    def connections(self) -> dict[str, Connection]:
        """Address and port from `vagrant ssh-config`; user root with the cluster key on every backend."""
        if self._conns is not None:
            return self._conns
        self._require_vagrant()
        self.render()
        v = self._vagrant()
        names = [n.name for n in self.topo.nodes]
        if self._retired():
            # a stopped retired machine makes the all-machines form fail: ask node by node
            blocks = {n: self._ssh_config(v, n) for n in names}
        else:
            blocks = _split_ssh_config(self._ssh_config(v, None))
        out = {}
        for name in names:
            if name not in blocks:
                raise UserError(f"vagrant ssh-config says nothing about {name}; is it running? "
                                f"(`provision status`, logs in {self.err_log})")
            conf = v.conf(ssh_config=blocks[name], vm_name=name)
            out[name] = Connection(str(conf["HostName"]), int(conf.get("Port", 22)), "root", str(self.key))
        self._conns = out
        return out

    def _ssh_config(self, v: Any, name: str | None) -> str:
        text: str = self._call("ssh-config", lambda: v.ssh_config(vm_name=name))
        return text

    def _pin(self, v: Any, name: str, conn: Connection) -> None:
        """Record the node's host key for the address and port Ansible uses."""
        if self.backend == "docker":
            proc = docker("exec", name, "cat", HOST_KEY, check=False, timeout=60)
            host_key = proc.stdout if proc.returncode == 0 else ""
        else:
            host_key = self._call("ssh", lambda: v.ssh(vm_name=name, command=f"cat {HOST_KEY}"))
        if not host_key.strip().startswith("ssh-ed25519 "):
            raise UserError(f"cannot read the SSH host key of {name} ({HOST_KEY}); see {self.err_log}")
        ssh.pin_host_key(self.known_hosts, conn.host, conn.port, host_key.strip().splitlines()[-1])

    # ------------------------------------------------------------ status / destroy

    def status(self) -> dict[str, str]:
        if not self._created_any():
            return {n.name: "missing" for n in self.topo.nodes}
        self._require_vagrant()
        self.render()
        v = self._vagrant()
        have = {s.name: str(s.state) for s in self._call("status", lambda: v.status())}
        out = {}
        for n in self.topo.nodes:
            state = have.pop(n.name, "missing")
            out[n.name] = "missing" if state in NOT_CREATED else state
        out.update({name: f"{state} (not in the spec)" for name, state in have.items() if state not in NOT_CREATED})
        return out

    def destroy(self) -> None:
        if self._created_any():
            self._require_vagrant()
            self.render()
            v = self._vagrant()
            self._call("destroy", lambda: v.destroy())
        if self.backend == "docker" and docker_binary() is not None:
            # belt and braces: a node container Vagrant lost track of (dotfile dir removed by hand)
            left = docker("ps", "-aq", "--filter", f"label={DOCKER_LABEL}={self.name}", check=False).stdout.split()
            if left:
                docker("rm", "-f", "-v", *left, timeout=600)
        self._conns = None

    # ------------------------------------------------------------ the machine list

    def render(self) -> Path:
        """Write machines.json (0600), rewriting it only when it changed."""
        text = render_machines(self.topo, self.key, self._retired())
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        if not self.machines_file.exists() or self.machines_file.read_text() != text:
            tmp = self.machines_file.with_suffix(".tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o600)
            tmp.replace(self.machines_file)
        return self.machines_file

    def _created(self) -> set[str]:
        """Machines Vagrant has made here (and not destroyed): each has an id file in the dotfile dir."""
        machines = self.dotfile / "machines"
        if not machines.is_dir():
            return set()
        return {d.name for d in machines.iterdir() if any(d.glob("*/id"))}

    def _created_any(self) -> bool:
        return bool(self._created())

    def _retired(self) -> list[str]:
        """Machines that still exist but are no longer in the spec."""
        return sorted(self._created() - {n.name for n in self.topo.nodes})

    # ------------------------------------------------------------ running Vagrant

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "VAGRANT_VAGRANTFILE": str(paths.VAGRANTFILE),
            "VAGRANT_DOTFILE_PATH": str(self.dotfile),
            "PROVISION_MACHINES": str(self.machines_file),
            "VAGRANT_DEFAULT_PROVIDER": self.backend,
            "VAGRANT_CHECKPOINT_DISABLE": "1",  # no version check against HashiCorp's servers
            "VAGRANT_NO_COLOR": "1",
        })
        if self.backend == "docker":
            # Vagrant's docker provider runs `docker` from PATH: Debian's client first, not a newer CLI
            # (e.g. /usr/local/bin/docker) that the engine may not speak to.
            binary = docker_binary()
            if binary is not None:
                env["PATH"] = os.pathsep.join([str(Path(binary).parent), env.get("PATH", os.defpath)])
        return env

    def _vagrant(self) -> Any:
        self.workdir.mkdir(parents=True, exist_ok=True)
        make: Any = vagrant.Vagrant  # python-vagrant has no type hints
        return make(root=str(self.workdir), env=self._env(),
                    out_cm=_append_cm(self.log), err_cm=_append_cm(self.err_log))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Vagrant command; a failure becomes one line saying why (the full text stays in the logs)."""
        start = self.err_log.stat().st_size if self.err_log.exists() else 0
        try:
            return fn()
        except subprocess.CalledProcessError:
            with self.err_log.open("rb") as f:
                f.seek(start)
                err = f.read().decode(errors="replace")
            raise UserError(f"vagrant {what} failed: {_first_paragraph(err)} "
                            f"(full output: {self.err_log}, {self.log})") from None
        except (FileNotFoundError, RuntimeError):  # python-vagrant: RuntimeError when it finds no vagrant
            if shutil.which("vagrant") is None:
                raise UserError(_NO_VAGRANT) from None
            raise

    def _require_vagrant(self) -> None:
        if shutil.which("vagrant") is None:
            raise UserError(_NO_VAGRANT)

    def _require_backend(self) -> None:
        """One clear line when the chosen backend cannot work here, before Vagrant says it at length."""
        self._require_vagrant()
        if self.backend == "docker":
            require_engine()
            require_image()
        elif self.backend == "libvirt":
            plugins = self._call("plugin list", lambda: self._vagrant().plugin_list())
            if not any(p.name == "vagrant-libvirt" for p in plugins):
                raise UserError("Vagrant's libvirt provider is missing: apt-get install vagrant-libvirt "
                                "(or use provider.vagrant.backend: virtualbox or docker)")
            if not libvirt_running():
                raise UserError(f"libvirt is not running (nothing answers on {LIBVIRT_SOCKET}): start it "
                                "(systemctl start libvirtd; without an init system: provision image build --vm "
                                "--install-engine), or use provider.vagrant.backend: docker")
            if self.settings.driver == "kvm" and (found := kvm_problem()):
                raise UserError(f"provider.vagrant.driver is kvm, but {found}: set provider.vagrant.driver: qemu "
                                "(QEMU emulates the CPU: 3-30x slower), or use provider.vagrant.backend: docker")
        elif shutil.which("VBoxManage") is None:
            raise UserError("VirtualBox is not installed (no VBoxManage): install it, "
                            "or use provider.vagrant.backend: libvirt or docker")


def kvm_problem(dev: str = "/dev/kvm", cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """Why KVM cannot run a guest here, or None. /dev/kvm alone is not enough: a sandbox may offer it without the
    CPU's virtualization extensions (vmx, svm), where a Linux guest hangs at boot (seen on this project's
    development machine)."""
    if not os.path.exists(dev):
        return f"{dev} is missing (virtualization off in the firmware, or the kvm module not loaded)"
    if not os.access(dev, os.R_OK | os.W_OK):
        return f"{dev} is not readable and writable by this user (join group kvm)"
    try:
        with open(cpuinfo) as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split(":", 1)[1].split()}
    except OSError:
        return None  # nothing to judge by: let libvirt say
    if not flags & {"vmx", "svm"}:
        return f"the CPU lists neither vmx nor svm in {cpuinfo}, so {dev} cannot boot a guest"
    return None


_NO_VAGRANT = ("vagrant is not installed: apt-get install vagrant (Debian/Ubuntu), "
               "or use provider docker or static")


def render_machines(topo: Topology, key: Path, retired: list[str] | None = None) -> str:
    """The machine list for the Vagrantfile: same topology, same bytes."""
    spec = topo.cluster.spec
    settings = spec.provider.vagrant or VagrantSpec()
    assert topo.node_cidr is not None, "the vagrant provider makes its machines: the topology has a node CIDR"
    net = ipaddress.IPv4Network(topo.node_cidr)
    nodes: list[dict[str, Any]] = [
        {"name": n.name, "roles": n.roles, "address": n.address, "retired": False} for n in topo.nodes
    ]
    # a retired machine is never started again: it needs no address (nor a place in the network)
    nodes += [{"name": name, "roles": [], "address": None, "retired": True} for name in retired or []]
    return _ENV.get_template("vagrant-machines.json.j2").render(
        cluster_name=topo.cluster.name,
        backend=settings.backend,
        box=settings.box,
        driver=settings.driver,
        disk_gib=settings.disk_gib,
        management_network=(settings.management_network or ManagementNetworkSpec()).model_dump(),
        node_image=NODE_IMAGE,
        network_name=f"provision-{topo.cluster.name}",
        node_cidr=str(net),
        prefix=net.prefixlen,
        netmask=str(net.netmask),
        public_key=str(key.with_suffix(".pub")),
        private_key=str(key),
        nodes=nodes,
        cpus=settings.cpus,
        memory=settings.memory_mib,
    )


def _split_ssh_config(text: str) -> dict[str, str]:
    """`vagrant ssh-config` for several machines -> {machine: its own `Host` block}."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("Host "):
            current = blocks.setdefault(line.split(None, 1)[1].strip(), [])
        if current is not None:
            current.append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in blocks.items()}


def _first_paragraph(text: str, limit: int = 400) -> str:
    """Vagrant's errors are paragraphs; the first says what went wrong. Collapse it onto one line."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    para: list[str] = []
    for ln in lines:
        if not ln and para:
            break
        if ln:
            para.append(ln)
    one = " ".join(para) or "no error output"
    return one if len(one) <= limit else one[: limit - 3] + "..."


def _append_cm(path: Path) -> Callable[[], Any]:
    """A context manager factory for python-vagrant's out_cm/err_cm: append to a log file."""

    @contextmanager
    def cm() -> Iterator[IO[bytes]]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as f:
            yield f

    return cm

"""The libvirt box, built here from Debian's packages: `provision image build --vm`.

Where Vagrant Cloud answers, the spec's default box (debian/bookworm64) is the one to use. Where it does not (an
offline site, this project's test machines), `vm-box.sh` builds an equivalent box from Debian's mirror and this
module adds it to Vagrant as `provision/bookworm`: set `provider.vagrant.box: provision/bookworm`. The box is
built once and rebuilt only when its recipe changes: the digest of vm-box.sh and its inputs is kept beside
Vagrant's boxes.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from provision.errors import UserError
from provision.providers.docker_engine import apt_install

SCRIPT = Path(__file__).resolve().parent / "vm-box.sh"
BOX = "provision/bookworm"
DISK_GIB = 20  # the box's virtual size; provider.vagrant.diskGiB grows a VM's disk beyond it
GRUB_BIOS = Path("/usr/lib/grub/i386-pc")
# tool -> the Debian package that has it
TOOLS = {"mmdebstrap": "mmdebstrap", "sfdisk": "fdisk", "mke2fs": "e2fsprogs", "grub-mkimage": "grub-common",
         "qemu-img": "qemu-utils", "vagrant": "vagrant"}


def vagrant_public_keys() -> str:
    """Vagrant's own public key(s), as the Debian package ships them: Vagrant's first login into a new box."""
    found = sorted(glob.glob("/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub*")
                   + glob.glob("/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub*"))
    if not found:
        raise UserError("Vagrant's public key (keys/vagrant.pub) was not found: install Vagrant (apt-get install vagrant)")
    return "".join(Path(p).read_text().strip() + "\n" for p in found)


def recipe_digest(keys: str) -> str:
    return hashlib.sha256(SCRIPT.read_bytes() + keys.encode() + str(DISK_GIB).encode()).hexdigest()[:10]


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")


def digest_file() -> Path:
    return vagrant_home() / "provision-box.digest"


def vagrant_box(*args: str) -> subprocess.CompletedProcess[str]:
    """`vagrant box ...` from a directory with no Vagrantfile above it (Vagrant would load the nearest one)."""
    return subprocess.run(["vagrant", "box", *args], capture_output=True, text=True, check=False, cwd="/",
                          env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"})


def box_listed() -> bool:
    return any(line.split()[:2] == [BOX, "(libvirt,"] for line in vagrant_box("list").stdout.splitlines())


def missing_tools() -> list[str]:
    packages = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not GRUB_BIOS.is_dir():
        packages.append("grub-pc-bin")
    return packages


def build_box(say: Callable[[str], None], force: bool = False, install_tools: bool = False) -> str:
    """Build and add the box once; return 'cached' or 'built'."""
    if os.geteuid() != 0:
        raise UserError("building the VM box needs root (mmdebstrap and chroot): run it as root")
    missing = missing_tools()
    if missing and not install_tools:
        raise UserError(f"building the VM box needs {', '.join(missing)}: apt-get install {' '.join(missing)}, "
                        "or pass --install-engine")
    if missing:
        apt_install(missing, say)
    keys = vagrant_public_keys()
    digest = recipe_digest(keys)
    if not force and box_listed() and digest_file().is_file() and digest_file().read_text().strip() == digest:
        return "cached"
    say(f"building the VM box {BOX} from Debian's packages (a few minutes)")
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="provision-box-") as work:
        key_file, out = Path(work, "vagrant.pub"), Path(work, "provision-bookworm.box")
        key_file.write_text(keys)
        run_script(say, [str(SCRIPT), work, str(out), str(key_file), str(DISK_GIB)])
        proc = vagrant_box("add", "--force", "--name", BOX, str(out))
        if proc.returncode != 0:
            raise UserError(f"vagrant box add failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    digest_file().parent.mkdir(parents=True, exist_ok=True)
    digest_file().write_text(digest + "\n")
    return "built"


def run_script(say: Callable[[str], None], cmd: list[str]) -> None:
    """vm-box.sh, its `vm-box:` progress lines passed on, its last lines in the one error line when it fails."""
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-3:]
            if line.startswith("vm-box: "):
                say(line.rstrip())
    if proc.returncode != 0:
        raise UserError(f"building the VM box failed (exit {proc.returncode}): {' | '.join(tail)}")


LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
LIBVIRT_PACKAGES = ["libvirt-daemon-system", "libvirt-clients", "libvirt-daemon-driver-qemu", "qemu-system-x86",
                    "dnsmasq-base", "iptables"]  # dnsmasq and iptables: the NAT networks vagrant-libvirt makes


def answers(path: Path) -> bool:
    """Whether a daemon accepts connections on this Unix socket. The file alone proves nothing: a daemon that died,
    or a machine restored from a snapshot, leaves it behind (seen on this project's CI: "Connection refused")."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def libvirt_running() -> bool:
    return answers(LIBVIRT_SOCKET)


def daemons_running() -> bool:
    """libvirtd and virtlogd both answer: QEMU's domains log through virtlogd, so libvirtd alone cannot start one."""
    return libvirt_running() and answers(VIRTLOGD_SOCKET)


def ensure_libvirt(say: Callable[[str], None]) -> None:
    """Install libvirt and QEMU where missing and start libvirtd and virtlogd where no init system does (root only).
    Only the daemons: the machine's own `default` network is left as it is."""
    if daemons_running():
        return
    if shutil.which("libvirtd") is None:
        apt_install(LIBVIRT_PACKAGES, say)
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "start", "virtlogd", "libvirtd"], capture_output=True, check=False)
    else:
        say("starting virtlogd and libvirtd (no init system runs them here)")
        for daemon, sock in (("/usr/sbin/virtlogd", VIRTLOGD_SOCKET), ("/usr/sbin/libvirtd", LIBVIRT_SOCKET)):
            if not answers(sock):  # a stale pid file or socket is taken over: each daemon checks its pid's lock
                subprocess.run([daemon, "-d"], capture_output=True, check=False)  # -d: daemonize; no -l (no TCP)
    for _ in range(60):
        if daemons_running():
            return
        time.sleep(0.5)
    raise UserError("libvirtd did not start: see /var/log/libvirt/ (or start it by hand: libvirtd -d)")

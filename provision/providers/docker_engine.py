"""The Docker engine and the node image: find them, and (on request, as root) install, start and build them.

`provision up` only checks: no engine is one clear line. `provision image build --install-engine` (what the
test command runs) installs Debian's docker.io where it is missing, starts dockerd where nothing runs it
(adding the runc wrapper where the capability bounding set lacks CAP_SYS_RESOURCE), and builds the node
image once: from a distro base image where a registry answers, otherwise from Debian's mirror with mmdebstrap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from provision.errors import UserError

HERE = Path(__file__).resolve().parent
WRAPPER = HERE / "runc-nosysres"
ENTRYPOINT = HERE / "node-entrypoint"  # the node's boot fixes (shared root mount, product_uuid, DNS for pods)
WRAPPER_INSTALLED = Path("/usr/local/libexec/provision/runc-nosysres")
DOCKERD_LOG = Path("/var/log/provision-dockerd.log")

# What every node has before any role runs: systemd, sshd, Python for Ansible, and apt's keyring tools.
NODE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-yaml", "sudo", "iproute2",
    "iputils-ping", "procps", "ca-certificates", "kmod", "gnupg", "curl",
    "iptables",  # the entrypoint rewrites Docker's embedded-DNS rules
]
# Units that make no sense in a container node.
MASKED_UNITS = [
    "getty@tty1.service", "console-getty.service", "systemd-udevd.service", "systemd-udev-trigger.service",
    "systemd-modules-load.service", "sys-kernel-config.mount", "sys-kernel-debug.mount",
    "systemd-remount-fs.service",
    "systemd-binfmt.service",  # binfmt_misc is kernel-global: a node would register formats for the whole host
]
# Host keys are made on the node's first boot, so every node has its own: ed25519 and ecdsa only, as in the VM box
# (`ssh-keygen -A` adds an RSA 3072 key, about 0.7 CPU-s per node on this 2-core machine; provision pins ed25519).
KEYGEN_UNIT = """[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key
[Install]
WantedBy=multi-user.target
"""


def _dockerfile_tail() -> str:
    masks = " ".join(MASKED_UNITS)
    return (
        "RUN rm -f /etc/ssh/ssh_host_* && : > /etc/machine-id && mkdir -p /root/.ssh && chmod 700 /root/.ssh \\\n"
        " && printf 'HostKey /etc/ssh/ssh_host_ed25519_key\\nHostKey /etc/ssh/ssh_host_ecdsa_key\\n'"
        " > /etc/ssh/sshd_config.d/provision-host-keys.conf \\\n"
        f" && for u in {masks}; do ln -sf /dev/null /etc/systemd/system/$u; done \\\n"
        " && systemctl enable ssh ssh-keygen-once\n"
        "COPY node-entrypoint /usr/local/bin/provision-node-entrypoint\n"
        "ENV container=docker\nSTOPSIGNAL SIGRTMIN+3\n"
        "ENTRYPOINT [\"/usr/local/bin/provision-node-entrypoint\"]\nCMD [\"/lib/systemd/systemd\"]\n"
    )


def _recipe_digest() -> str:
    """The image tag carries a digest of its recipe: a changed recipe builds a new image, never reuses a stale one."""
    recipe = json.dumps([NODE_PACKAGES, MASKED_UNITS, KEYGEN_UNIT, _dockerfile_tail(), ENTRYPOINT.read_text()])
    return hashlib.sha256(recipe.encode()).hexdigest()[:10]


# The tag provision uses, and a stable alias (`provision/node:bookworm`) that molecule scenarios name.
NODE_IMAGE_ALIAS = "provision/node:bookworm"
NODE_IMAGE = os.environ.get("PROVISION_NODE_IMAGE", f"provision/node:bookworm-{_recipe_digest()}")


def docker_binary() -> str | None:
    """$PROVISION_DOCKER, else Debian's client (an unrelated newer CLI may sit first in PATH), else PATH's."""
    if os.environ.get("PROVISION_DOCKER"):
        forced = os.environ["PROVISION_DOCKER"]
        return forced if os.access(forced, os.X_OK) else None
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def docker(*args: str, check: bool = True, timeout: float | None = 300,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = docker_binary()
    if binary is None:
        raise UserError("Docker is not installed: install it (Debian/Ubuntu: apt-get install docker.io), "
                        "or use provider vagrant or static")
    try:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, input=input,
                              check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"docker {args[0]} did not answer within {timeout:.0f}s; is the engine healthy?") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(f"docker {' '.join(args[:2])} failed: {detail[-1] if detail else 'exit ' + str(proc.returncode)}")
    return proc


def engine_running() -> bool:
    binary = docker_binary()
    if binary is None:
        return False
    try:
        return subprocess.run([binary, "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def require_engine() -> None:
    """For `up`/`destroy`/`status`: one clear line when there is no engine to talk to."""
    if docker_binary() is None:
        raise UserError("Docker is not installed: install it (Debian/Ubuntu: apt-get install docker.io) "
                        "or run `provision image build --install-engine` as root")
    if not engine_running():
        raise UserError("the Docker engine is not running or not reachable: start it (systemctl start docker), "
                        "or run `provision image build --install-engine` as root")


def require_image() -> None:
    if docker("image", "inspect", NODE_IMAGE, check=False).returncode != 0:
        raise UserError(f"the node image {NODE_IMAGE} is missing: build it once with `provision image build`")


def lacks_cap_sys_resource() -> bool:
    """CAP_SYS_RESOURCE is bit 24 of the capability bounding set."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return not (int(line.split()[1], 16) >> 24) & 1
    return False


def apt_install(packages: list[str], say: Callable[[str], None]) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise UserError(f"{', '.join(packages)} missing; install them (apt-get install {' '.join(packages)})")
    say(f"installing {' '.join(packages)} from the distribution")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"],
                ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", *packages]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise UserError(f"{' '.join(cmd[:3])} failed: {tail[0] if tail else proc.returncode}")


def ensure_engine(say: Callable[[str], None]) -> None:
    """Install and start the engine where needed (root only)."""
    if engine_running():
        return
    if shutil.which("dockerd") is None:
        apt_install(["docker.io"], say)
    if engine_running():
        return
    if os.geteuid() != 0:
        raise UserError("the Docker engine is not running; start it (systemctl start docker)")
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "start", "docker"], check=False, capture_output=True)
        if _wait_engine(30):
            return
    config_args: list[str] = []
    if lacks_cap_sys_resource():
        say("this host's capability bounding set lacks CAP_SYS_RESOURCE: using the runc wrapper")
        WRAPPER_INSTALLED.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(WRAPPER, WRAPPER_INSTALLED)
        WRAPPER_INSTALLED.chmod(0o755)
        config_args = ["--add-runtime", f"runc-nosysres={WRAPPER_INSTALLED}", "--default-runtime", "runc-nosysres"]
    _remove_stale_pid_file(say)
    say("starting dockerd")
    log = DOCKERD_LOG.open("ab")
    subprocess.Popen(["dockerd", *config_args], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                     start_new_session=True)
    if not _wait_engine(60):
        raise UserError(f"dockerd did not come up within 60s; see {DOCKERD_LOG}")


def _remove_stale_pid_file(say: Callable[[str], None], pid_file: Path = Path("/var/run/docker.pid")) -> None:
    """dockerd refuses to start beside a pid file, even one a dead dockerd left (a machine restarted without init)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if Path(f"/proc/{pid}").exists():
        return
    say(f"removing {pid_file}: its dockerd (pid {pid}) is not running")
    pid_file.unlink(missing_ok=True)


def _wait_engine(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if engine_running():
            return True
        time.sleep(0.5)
    return False


def image_exists(tag: str = NODE_IMAGE) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def build_image(say: Callable[[str], None], tag: str = NODE_IMAGE, force: bool = False,
                install_tools: bool = False) -> str:
    """Build the node image once; return how it was made ('cached', 'registry' or 'mmdebstrap')."""
    if image_exists(tag) and not force:
        docker("tag", tag, NODE_IMAGE_ALIAS)
        return "cached"
    if _registry_reachable():
        say("building the node image from debian:bookworm")
        _build_from_registry(tag)
        docker("tag", tag, NODE_IMAGE_ALIAS)
        return "registry"
    if shutil.which("mmdebstrap") is None:
        if not install_tools:
            raise UserError("no registry reachable and mmdebstrap is missing: install it (apt-get install "
                            "mmdebstrap) or pass --install-engine")
        apt_install(["mmdebstrap"], say)
    say("no registry reachable: building the node image from Debian's mirror with mmdebstrap (a few minutes)")
    _build_with_mmdebstrap(tag)
    docker("tag", tag, NODE_IMAGE_ALIAS)
    return "mmdebstrap"


def _registry_reachable() -> bool:
    if os.environ.get("PROVISION_IMAGE_FROM") == "mmdebstrap":
        return False
    if image_exists("debian:bookworm"):
        return True
    try:
        proc = docker("pull", "-q", "debian:bookworm", check=False, timeout=90)
    except UserError:
        return False
    return proc.returncode == 0


def _copy_entrypoint(ctx: Path) -> None:
    shutil.copy(ENTRYPOINT, ctx / "node-entrypoint")
    (ctx / "node-entrypoint").chmod(0o755)


def _build_from_registry(tag: str) -> None:
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "ssh-keygen-once.service").write_text(KEYGEN_UNIT)
        _copy_entrypoint(Path(ctx))
        Path(ctx, "Dockerfile").write_text(
            "FROM debian:bookworm\n"
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            + " ".join(NODE_PACKAGES) + " && rm -rf /var/lib/apt/lists/*\n"
            "COPY ssh-keygen-once.service /etc/systemd/system/\n" + _dockerfile_tail())
        docker("build", "-q", "-t", tag, ctx, timeout=1800)


def _build_with_mmdebstrap(tag: str) -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as work:
        rootfs = Path(work, "rootfs.tar")
        keygen = Path(work, "ssh-keygen-once.service")
        keygen.write_text(KEYGEN_UNIT)
        cmd = [
            "mmdebstrap", "--variant=apt", "--include=" + ",".join(NODE_PACKAGES),
            f'--customize-hook=copy-in {keygen} /etc/systemd/system/',
            "bookworm", str(rootfs),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            raise UserError(f"mmdebstrap failed: {' | '.join(tail)}")
        base = f"{tag}-rootfs"
        docker("import", str(rootfs), base, timeout=900)
        ctx = Path(work, "context")  # without the rootfs tarball in it
        ctx.mkdir()
        _copy_entrypoint(ctx)
        Path(ctx, "Dockerfile").write_text(f"FROM {base}\n" + _dockerfile_tail())
        env_build = ["build", "-q", "-t", tag, str(ctx)]
        proc2 = subprocess.run([docker_binary() or "docker", *env_build], capture_output=True, text=True,
                               env={**os.environ, "DOCKER_BUILDKIT": "0"}, check=False, timeout=900)
        if proc2.returncode != 0:
            raise UserError(f"docker build of the node image failed: {proc2.stderr.strip()[-300:]}")
        docker("rmi", base, check=False)
